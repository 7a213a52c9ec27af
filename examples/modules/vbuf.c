// SPDX-License-Identifier: GPL-2.0
/*
 * vbuf.c - a vmalloc buffer: virtually contiguous, physically scattered.
 *
 * At init it vzalloc()s 5 pages, writes a different byte pattern into each page, and
 * prints for each page its virtual address and the page frame behind it
 * (vmalloc_to_pfn, which walks the kernel page tables). The virtual addresses are one
 * page apart; the pfns are whatever the page allocator handed out one page at a time,
 * usually not consecutive. It then reads the patterns back through the vmalloc mapping.
 * The buffer stays mapped while the module is loaded; exit vfree()s it (unmapping the
 * range and freeing the 5 pages).
 */
#include "mmemu_module.h"

#define VBUF_PAGES	5
#define VBUF_PAGE_SIZE	4096UL

static unsigned char *vbuf;

static int __init vbuf_init(void)
{
	unsigned long pfn, prev_pfn = 0;
	int i, scattered = 0, bad = 0;

	vbuf = vzalloc(VBUF_PAGES * VBUF_PAGE_SIZE);
	if (!vbuf) {
		printk(KERN_ERR "vbuf: vzalloc of %d pages failed\n", VBUF_PAGES);
		return -12;	/* -ENOMEM */
	}
	printk(KERN_INFO "vbuf: %d pages at %lx-%lx (vmalloc space)\n", VBUF_PAGES,
	       (unsigned long)vbuf, (unsigned long)vbuf + VBUF_PAGES * VBUF_PAGE_SIZE);

	for (i = 0; i < VBUF_PAGES; i++) {
		unsigned char *page = vbuf + i * VBUF_PAGE_SIZE;

		/* the first and the last byte of each page: 0xa0, 0xa1, ... */
		page[0] = (unsigned char)(0xa0 + i);
		page[VBUF_PAGE_SIZE - 1] = (unsigned char)(0xa0 + i);

		pfn = vmalloc_to_pfn(page);
		if (i > 0 && pfn != prev_pfn + 1)
			scattered++;
		printk(KERN_INFO "vbuf: page %d at %lx -> pfn %lx (phys %lx)\n", i,
		       (unsigned long)page, pfn, pfn * VBUF_PAGE_SIZE);
		prev_pfn = pfn;
	}

	for (i = 0; i < VBUF_PAGES; i++) {
		unsigned char *page = vbuf + i * VBUF_PAGE_SIZE;

		if (page[0] != 0xa0 + i || page[VBUF_PAGE_SIZE - 1] != 0xa0 + i || page[1] != 0)
			bad++;
	}
	printk(KERN_INFO "vbuf: %d of %d neighbouring pages are not physically adjacent, "
	       "%d pages read back wrong\n", scattered, VBUF_PAGES - 1, bad);
	return 0;
}

static void __exit vbuf_exit(void)
{
	printk(KERN_INFO "vbuf: vfree(%lx)\n", (unsigned long)vbuf);
	vfree(vbuf);
}

module_init(vbuf_init);
module_exit(vbuf_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("mmemu");
MODULE_DESCRIPTION("vzalloc 5 pages, show each page's pfn: contiguous virtually, not physically");
