// SPDX-License-Identifier: GPL-2.0
/*
 * highpage.c - a HighMem page has no permanent kernel address: kmap gives it one.
 *
 * At init it allocates
 *   - one page from HighMem (alloc_pages(GFP_HIGHUSER, 0): the zone may be HighMem), which
 *     it kmap()s, fills with a pattern, and kunmap()s again: on i386 with HighMem the
 *     address is in the pkmap area (PKMAP_BASE, the "persistent kmap area"), a mapping
 *     that lasts until kunmap; on x86_64, which has no HighMem, kmap is page_address()
 *     and the address is in the direct map;
 *   - one lowmem page (__get_free_pages(GFP_KERNEL, 0)), whose address is its direct-map
 *     address at once, for comparison.
 * The HighMem page stays allocated (and unmapped) while the module is loaded. At exit it
 * is kmap()ed again (possibly at another pkmap address), its pattern checked, unmapped
 * and freed, and the lowmem page is freed.
 */
#include "mmemu_module.h"

#define HP_PAGE_SIZE	4096UL
#define HP_PATTERN	0x5a

static struct page *hp_page;		/* the HighMem page, kept until exit */
static unsigned long hp_lowmem;		/* the lowmem page's address */

static int __init highpage_init(void)
{
	unsigned char *vaddr;

	hp_page = alloc_pages(GFP_HIGHUSER, 0);
	if (!hp_page) {
		printk(KERN_ERR "highpage: alloc_pages(GFP_HIGHUSER, 0) failed\n");
		return -12;	/* -ENOMEM */
	}
	hp_lowmem = __get_free_pages(GFP_KERNEL, 0);
	if (!hp_lowmem) {
		__free_pages(hp_page, 0);
		printk(KERN_ERR "highpage: __get_free_pages(GFP_KERNEL, 0) failed\n");
		return -12;
	}

	vaddr = kmap(hp_page);
	memset(vaddr, HP_PATTERN, HP_PAGE_SIZE);
	printk(KERN_INFO "highpage: page %lx (gfp %x) kmapped at %lx, filled with %x\n",
	       (unsigned long)hp_page, (unsigned int)GFP_HIGHUSER, (unsigned long)vaddr,
	       HP_PATTERN);
	kunmap(hp_page);

	printk(KERN_INFO "highpage: lowmem page (gfp %x) at %lx needs no kmap\n",
	       (unsigned int)GFP_KERNEL, hp_lowmem);
	return 0;
}

static void __exit highpage_exit(void)
{
	unsigned char *vaddr = kmap(hp_page);
	unsigned long i;
	int bad = 0;

	for (i = 0; i < HP_PAGE_SIZE; i++)
		if (vaddr[i] != HP_PATTERN)
			bad++;
	printk(KERN_INFO "highpage: page kmapped again at %lx, %d bytes changed\n",
	       (unsigned long)vaddr, bad);
	kunmap(hp_page);
	__free_pages(hp_page, 0);
	free_pages(hp_lowmem, 0);
}

module_init(highpage_init);
module_exit(highpage_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("mmemu");
MODULE_DESCRIPTION("Allocate a HighMem page, kmap it, write it; kmap it again at exit");
