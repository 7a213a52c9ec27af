// SPDX-License-Identifier: GPL-2.0
/*
 * hello.c - the smallest module that shows where a module lives.
 *
 * At init it prints three addresses of three kinds:
 *   - its own code (hello_init, in the module's .init.text) and its own string
 *     (hello_greeting, in its .rodata): both in the module area, where the loader
 *     copied the module (module_alloc: vmalloc space on i386, MODULES_VADDR on x86_64);
 *   - a kmalloc'd copy of the string: slab memory, in the direct map (lowmem).
 * At exit it prints the copy again and frees it.
 *
 * %lx with a cast is used for addresses: it prints the same in every era, whereas %p is
 * hashed from 4.15 on (lib/vsprintf.c); one %p is printed to show that.
 */
#include "mmemu_module.h"

static const char hello_greeting[] = "hello from a module";
static char *hello_copy;		/* .bss: zero until init runs */
static int hello_loads = 1;		/* .data */

static int __init hello_init(void)
{
	size_t len = strlen(hello_greeting);

	hello_copy = kmalloc(len + 1, GFP_KERNEL);
	if (!hello_copy) {
		printk(KERN_ERR "hello: kmalloc(%d) failed\n", (int)(len + 1));
		return -12;	/* -ENOMEM */
	}
	memcpy(hello_copy, hello_greeting, len + 1);

	printk(KERN_INFO "hello: %s (kernel %s, load %d)\n", hello_greeting, MMEMU_RELEASE,
	       hello_loads++);
	printk(KERN_INFO "hello: init code at %lx, its string at %lx (module area)\n",
	       (unsigned long)hello_init, (unsigned long)hello_greeting);
	printk(KERN_INFO "hello: kmalloc'd copy \"%s\" at %lx (direct map), as %%p: %p\n",
	       hello_copy, (unsigned long)hello_copy, hello_copy);
	return 0;
}

static void __exit hello_exit(void)
{
	printk(KERN_INFO "hello: goodbye, freeing \"%s\" at %lx\n", hello_copy,
	       (unsigned long)hello_copy);
	kfree(hello_copy);
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("mmemu");
MODULE_DESCRIPTION("Prints where a module's code, its data and a kmalloc'd object live");
