// SPDX-License-Identifier: GPL-2.0
/*
 * percpu.c - a per-cpu counter: one copy for each CPU, none in the module's own memory.
 *
 * pcpu_hits is a per-cpu variable (DEFINE_PER_CPU, section .data..percpu) with the initial
 * value 40. On an SMP kernel the loader allocates the section in the per-cpu first chunk's
 * reserved region (percpu_modalloc) and copies the initial image into every CPU's unit
 * (percpu_modcopy), so each CPU starts at 40. Init adds 1 to the copy of the CPU it runs
 * on, through the per-cpu segment (%gs / %fs), and reads it back: 41 there, 40 in every
 * other CPU's copy. &pcpu_hits is a per-cpu pointer (on x86_64 a small offset such as
 * 0x34000, not a kernel address); the copies are at that pointer + __per_cpu_offset[cpu].
 *
 * Meant for an SMP kernel: on a UP kernel (i386 with NR_CPUS=1, mmemu's default for one
 * CPU) the section is plain module data, and %fs holds the null selector (__KERNEL_PERCPU
 * is 0 without CONFIG_SMP): a real CPU faults on the access, Unicorn does not check.
 */
#include "mmemu_module.h"

static DEFINE_PER_CPU(int, pcpu_hits) = 40;

static int __init pcpu_init(void)
{
	this_cpu_add_4(pcpu_hits, 1);
	printk(KERN_INFO "percpu: pcpu_hits = %u on this CPU, per-cpu pointer %lx\n",
	       this_cpu_read_4(pcpu_hits), (unsigned long)&pcpu_hits);
	return 0;
}

static void __exit pcpu_exit(void)
{
	printk(KERN_INFO "percpu: pcpu_hits = %u at exit\n", this_cpu_read_4(pcpu_hits));
}

module_init(pcpu_init);
module_exit(pcpu_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a per-cpu counter in the per-cpu area");
