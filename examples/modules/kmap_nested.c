// SPDX-License-Identifier: GPL-2.0
/*
 * kmap_nested.c - three temporary mappings at once, a stack of them.
 *
 * Short-lived, CPU-local mappings of a page (kmap_local_page from 5.11, kmap_atomic
 * before) take a slot of the per-CPU kmap area of the fixmap (FIX_KMAP_BEGIN..END) on
 * i386 with HighMem: the first mapping gets one slot, a nested one the next slot (a
 * lower address: fixmap addresses grow down), and they must be undone in reverse order,
 * the slots being a stack. On x86_64 there is no HighMem and each address is the page's
 * direct-map address.
 *
 * At init it allocates three HighMem pages, maps them one inside the other, writes a
 * different byte through each mapping, prints each address, unmaps them in reverse
 * order, and frees the pages: nothing stays mapped or allocated after init.
 */
#include "mmemu_module.h"

#define KN_PAGES	3

#if MMEMU_ERA >= 511
#define kn_map(page)	kmap_local_page(page)
#define kn_unmap(addr)	kunmap_local(addr)
#define KN_HOW		"kmap_local_page"
#else
#define kn_map(page)	kmap_atomic(page)
#define kn_unmap(addr)	kunmap_atomic(addr)
#define KN_HOW		"kmap_atomic"
#endif

static int __init kmap_nested_init(void)
{
	struct page *pages[KN_PAGES];
	unsigned char *a, *b, *c;
	int i;

	for (i = 0; i < KN_PAGES; i++) {
		pages[i] = alloc_pages(GFP_HIGHUSER, 0);
		if (!pages[i]) {
			while (--i >= 0)
				__free_pages(pages[i], 0);
			printk(KERN_ERR "kmap_nested: alloc_pages failed\n");
			return -12;	/* -ENOMEM */
		}
	}

	a = kn_map(pages[0]);
	a[0] = 'A';
	printk(KERN_INFO "kmap_nested: %s #1: page %lx at %lx\n", KN_HOW,
	       (unsigned long)pages[0], (unsigned long)a);

	b = kn_map(pages[1]);
	b[0] = 'B';
	printk(KERN_INFO "kmap_nested: %s #2: page %lx at %lx\n", KN_HOW,
	       (unsigned long)pages[1], (unsigned long)b);

	c = kn_map(pages[2]);
	c[0] = 'C';
	printk(KERN_INFO "kmap_nested: %s #3: page %lx at %lx\n", KN_HOW,
	       (unsigned long)pages[2], (unsigned long)c);

	printk(KERN_INFO "kmap_nested: read back %c%c%c, unmapping #3, #2, #1\n",
	       a[0], b[0], c[0]);
	kn_unmap(c);
	kn_unmap(b);
	kn_unmap(a);

	for (i = 0; i < KN_PAGES; i++)
		__free_pages(pages[i], 0);
	return 0;
}

static void __exit kmap_nested_exit(void)
{
	printk(KERN_INFO "kmap_nested: exit (nothing left to unmap or free)\n");
}

module_init(kmap_nested_init);
module_exit(kmap_nested_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("mmemu");
MODULE_DESCRIPTION("Three nested temporary kmaps of three pages, undone in reverse order");
