// SPDX-License-Identifier: GPL-2.0
/*
 * rodata_oops.c - a module that writes into its own read-only data, and oopses.
 *
 * The loader maps a module's text and .rodata read-only once it is relocated, before
 * init runs (CONFIG_DEBUG_SET_MODULE_RONX, optional, in 3.x: set_section_ro_nx;
 * CONFIG_STRICT_MODULE_RWX from 4.11, always y on x86: module_enable_ro). At init this
 * module prints the address of a const string of its own, then stores a byte into it.
 * Where rodata is read-only the store is a write fault on a present, read-only kernel
 * page with no exception-table fixup, so the kernel oopses ("BUG: unable to handle kernel
 * paging request at ..." up to 4.19; "BUG: unable to handle page fault for address: ...",
 * "#PF: supervisor write access in kernel mode", "#PF: error_code(0x0003) - permissions
 * violation" from 4.20), with the faulting ip inside rodata_oops_init, and init never
 * returns. Where the page is still writable (no RONX), the store succeeds and the second
 * printk says so.
 *
 * The pointer variable is volatile (char *volatile): gcc must store it and load it back,
 * so it cannot see that it points at rodata_banner, and must emit the byte store (writing
 * to a const object is undefined in C; without the volatile gcc may assume it never
 * happens) and read the string back after it.
 */
#include "mmemu_module.h"

static const char rodata_banner[] = "this string is in the module's .rodata";

static int __init rodata_oops_init(void)
{
	char *volatile target = (char *)rodata_banner;

	printk(KERN_INFO "rodata_oops: banner \"%s\" at %lx, writing to it...\n",
	       rodata_banner, (unsigned long)rodata_banner);
	target[0] = 'T';	/* the write fault: .rodata is mapped read-only */
	printk(KERN_WARNING "rodata_oops: the write went through, banner now \"%s\": "
	       "module rodata is writable here\n", target);
	return 0;
}

static void __exit rodata_oops_exit(void)
{
	printk(KERN_INFO "rodata_oops: exit\n");
}

module_init(rodata_oops_init);
module_exit(rodata_oops_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("mmemu");
MODULE_DESCRIPTION("Writes into its own const data: oopses where module rodata is read-only");
