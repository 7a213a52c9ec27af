/* SPDX-License-Identifier: GPL-2.0 */
/*
 * mmemu_module.h - the slice of the Linux kernel's module API that mmemu's example
 * modules use, written the way the kernel's own headers write it, so that the objects
 * gcc makes from the examples look like the objects kbuild makes from a real module
 * (same sections, same symbol names, same .modinfo strings, same calling convention).
 *
 * Nothing here comes from a real kernel tree: every module is freestanding and includes
 * this file only. Each block says which kernel header it mirrors.
 *
 * The Makefile passes
 *   MMEMU_ERA      the kernel the object is built "for": 310, 419, 510, 606 for
 *                  3.10, 4.19, 5.10, 6.6 (major * 100 + minor)
 *   MMEMU_RELEASE  UTS_RELEASE of that kernel, a string: "3.10.0", "6.6.0", ...
 *   KBUILD_MODNAME the module's name, a string, as kbuild passes it ("hello")
 *   MODULE         defined, as kbuild defines it for every object of a module
 */
#ifndef _MMEMU_MODULE_H
#define _MMEMU_MODULE_H

#ifndef MMEMU_ERA
#error "MMEMU_ERA must be defined (310, 419, 510 or 606)"
#endif
#ifndef MMEMU_RELEASE
#error "MMEMU_RELEASE must be defined (a string such as \"6.6.0\")"
#endif
#ifndef KBUILD_MODNAME
#error "KBUILD_MODNAME must be defined (a string such as \"hello\")"
#endif
#ifndef MODULE
#error "MODULE must be defined: these macros are the loadable-module variants"
#endif

/* ---------------------------------------------------------------------------------------
 * Types. include/linux/types.h, include/uapi/asm-generic/posix_types.h.
 * __SIZE_TYPE__ is what the kernel's __kernel_size_t is on both arches: unsigned int on
 * i386, unsigned long on x86_64.
 */
typedef __SIZE_TYPE__ size_t;
typedef unsigned int gfp_t;		/* typedef unsigned int __bitwise gfp_t; */
#define NULL	((void *)0)

struct page;				/* opaque: modules only ever hold a pointer */

/* ---------------------------------------------------------------------------------------
 * Compiler attributes. include/linux/compiler_attributes.h (5.x on; compiler-gcc.h before),
 * include/linux/compiler_types.h, include/linux/stringify.h.
 */
#define __used			__attribute__((__used__))
#define __cold			__attribute__((__cold__))
#define __aligned(x)		__attribute__((__aligned__(x)))
#define __section(s)		__attribute__((__section__(s)))
#define __maybe_unused		__attribute__((__unused__))
#define __printf(a, b)		__attribute__((__format__(printf, a, b)))
/* notrace: no call to __fentry__/mcount in this function (compiler_types.h) */
#define notrace			__attribute__((__no_instrument_function__))
/* __copy(sym): copy sym's attributes (section, cold...) to a declaration. module_init and
 * module_exit use it from 5.2 on so that gcc 9+ does not warn that init_module is
 * "less restrictive" than its target (-Wmissing-attributes); used here in every era,
 * since gcc 12 builds all of them. It changes no byte of the object: an alias is only a
 * second name for its target's address. */
#define __copy(symbol)		__attribute__((__copy__(symbol)))

#define ___PASTE(a, b)		a##b
#define __PASTE(a, b)		___PASTE(a, b)
#define __stringify_1(x...)	#x
#define __stringify(x...)	__stringify_1(x)
/* include/linux/compiler-gcc.h (3.x, 4.x), include/linux/compiler_types.h (5.x on) */
#define __UNIQUE_ID(prefix)	__PASTE(__PASTE(__UNIQUE_ID_, prefix), __COUNTER__)

/* arch/x86/include/asm/linkage.h: on i386 (built with -mregparm=3) asmlinkage functions
 * take all their arguments on the stack. printk is asmlinkage; every other function
 * declared below takes its first three arguments in %eax, %edx, %ecx on i386. */
#ifdef __i386__
#define asmlinkage		__attribute__((regparm(0)))
#else
#define asmlinkage
#endif

/* ---------------------------------------------------------------------------------------
 * Sections of init and exit code. include/linux/init.h.
 *   3.10:      #define __init __section(.init.text) __cold notrace
 *   4.19 on:   #define __init __section(.init.text) __cold __latent_entropy __noinitretpoline
 *              (notrace was dropped in 4.1x so that ftrace can trace init functions;
 *              __latent_entropy is empty without the gcc plugin, __noinitretpoline is
 *              empty for modules)
 *   all eras:  #define __exit __section(.exit.text) __exitused __cold notrace
 *              (__exitused is empty when MODULE is defined)
 * So a 6.6 x86_64 object calls __fentry__ from its init function but not from its exit.
 */
#if MMEMU_ERA >= 419
#define __init			__section(".init.text") __cold
#else
#define __init			__section(".init.text") __cold notrace
#endif
#define __exit			__section(".exit.text") __cold notrace

typedef int (*initcall_t)(void);
typedef void (*exitcall_t)(void);

/* ---------------------------------------------------------------------------------------
 * module_init / module_exit for a loadable module. include/linux/module.h (#ifdef MODULE):
 * the loader finds the symbols init_module and cleanup_module, aliases of the module's
 * own functions. __inittest/__exittest are only type checks (never emitted).
 * Newer kernels also add ___ADDRESSABLE(init_module, __initdata) (seen in 6.9; in 5.x
 * __CFI_ADDRESSABLE, empty without CONFIG_CFI_CLANG), a pointer in .init.data kept for
 * LTO/CFI; left out here, so that the objects have no .init.data (no loader reads it).
 */
#define module_init(initfn)						\
	static inline initcall_t __maybe_unused __inittest(void)	\
	{ return initfn; }						\
	int init_module(void) __copy(initfn) __attribute__((alias(#initfn)));

#define module_exit(exitfn)						\
	static inline exitcall_t __maybe_unused __exittest(void)	\
	{ return exitfn; }						\
	void cleanup_module(void) __copy(exitfn) __attribute__((alias(#exitfn)));

/* ---------------------------------------------------------------------------------------
 * .modinfo. include/linux/moduleparam.h (#ifdef MODULE) and include/linux/module.h:
 * one "tag=value" string a variable, in section .modinfo, aligned 1, so that the section
 * is the strings back to back, each with its NUL.
 */
#define __MODULE_INFO(tag, name, info)					\
static const char __UNIQUE_ID(name)[]					\
	__used __attribute__((section(".modinfo"), unused, aligned(1)))	\
	= __stringify(tag) "=" info

#define MODULE_INFO(tag, info)		__MODULE_INFO(tag, tag, info)
#define MODULE_LICENSE(_license)	MODULE_INFO(license, _license)
#define MODULE_AUTHOR(_author)		MODULE_INFO(author, _author)
#define MODULE_DESCRIPTION(_description) MODULE_INFO(description, _description)

/*
 * The vermagic string. include/linux/vermagic.h:
 *   VERMAGIC_STRING = UTS_RELEASE " " MODULE_VERMAGIC_SMP MODULE_VERMAGIC_PREEMPT
 *                     MODULE_VERMAGIC_MODULE_UNLOAD MODULE_VERMAGIC_MODVERSIONS
 *                     MODULE_ARCH_VERMAGIC
 * for a kernel with CONFIG_SMP=y, no preemption, CONFIG_MODULE_UNLOAD=y, no MODVERSIONS.
 * arch/riscv/include/asm/module.h (asm/vermagic.h from 5.8): MODULE_ARCH_VERMAGIC "riscv".
 * arch/x86/include/asm/module.h: on i386 MODULE_ARCH_VERMAGIC is MODULE_PROC_FAMILY,
 * "686 " for CONFIG_M686; x86_64 defines none. arch/arm64/include/asm/module.h
 * (asm/vermagic.h from 5.x): #define MODULE_ARCH_VERMAGIC "aarch64"; mmemu's arm64 kernels
 * are CONFIG_PREEMPT ones (MODULE_VERMAGIC_PREEMPT "preempt "), the x86 ones are not.
 */
#if defined(__i386__)
#define MODULE_PROC_FAMILY		"686 "
#define MODULE_ARCH_VERMAGIC		MODULE_PROC_FAMILY
#elif defined(__aarch64__)
#define MODULE_ARCH_VERMAGIC		"aarch64"
#elif defined(__riscv)
#define MODULE_ARCH_VERMAGIC		"riscv"
#else
#define MODULE_ARCH_VERMAGIC		""
#endif
#define UTS_RELEASE			MMEMU_RELEASE
#define MODULE_VERMAGIC_SMP		"SMP "
#ifdef __aarch64__
#define MODULE_VERMAGIC_PREEMPT		"preempt "
#else
#define MODULE_VERMAGIC_PREEMPT		""
#endif
#define MODULE_VERMAGIC_MODULE_UNLOAD	"mod_unload "
#define MODULE_VERMAGIC_MODVERSIONS	""
#define VERMAGIC_STRING							\
	UTS_RELEASE " "							\
	MODULE_VERMAGIC_SMP MODULE_VERMAGIC_PREEMPT			\
	MODULE_VERMAGIC_MODULE_UNLOAD MODULE_VERMAGIC_MODVERSIONS	\
	MODULE_ARCH_VERMAGIC

/*
 * In a real build these come from <module>.mod.c, which modpost writes and kbuild links
 * into the .ko (scripts/mod/modpost.c, add_header / add_depends):
 *   MODULE_INFO(vermagic, VERMAGIC_STRING);
 *   MODULE_INFO(name, KBUILD_MODNAME);   (seen in 4.19's modpost, Asyanx/kernel-whyred-4.19
 *                                         @261840c7; not checked for 3.10, left out there)
 *   "depends=" (add_depends; empty: these modules use no other module's symbols)
 * The examples are single objects with no modpost step, so this header emits them.
 * Not emitted: the .gnu.linkonce.this_module section (struct module), __versions.
 */
MODULE_INFO(vermagic, VERMAGIC_STRING);
#if MMEMU_ERA >= 419
MODULE_INFO(name, KBUILD_MODNAME);
#endif
MODULE_INFO(depends, "");

/* ---------------------------------------------------------------------------------------
 * Log levels. include/linux/kern_levels.h (3.6 on): KERN_SOH "\001" then a digit.
 */
#define KERN_SOH	"\001"
#define KERN_EMERG	KERN_SOH "0"
#define KERN_ALERT	KERN_SOH "1"
#define KERN_CRIT	KERN_SOH "2"
#define KERN_ERR	KERN_SOH "3"
#define KERN_WARNING	KERN_SOH "4"
#define KERN_NOTICE	KERN_SOH "5"
#define KERN_INFO	KERN_SOH "6"
#define KERN_DEBUG	KERN_SOH "7"
#define KERN_CONT	KERN_SOH "c"

/* ---------------------------------------------------------------------------------------
 * printk. include/linux/printk.h. From 5.15 the exported function is _printk and printk
 * is a macro around it (printk_index_wrap; with CONFIG_PRINTK_INDEX it also records the
 * format in a .printk_index section, which is left out here).
 */
#if MMEMU_ERA >= 515
asmlinkage __printf(1, 2) __cold int _printk(const char *fmt, ...);
#define printk(fmt, ...)	_printk(fmt, ##__VA_ARGS__)
#else
asmlinkage __printf(1, 2) __cold int printk(const char *fmt, ...);
#endif

/* ---------------------------------------------------------------------------------------
 * GFP flags. The values differ between eras; each block cites the file it was read from.
 * Only the flags these examples use, and what they are made of, for the four eras built.
 */
#if MMEMU_ERA == 310
/* include/linux/gfp.h of 3.10 (read from AndreiLux/ref-3.10 @147ee332 and
 * doitaljosh/linux-3.10.30-famhubv1 @605db27c, two 3.10 trees that agree on these bits):
 *   ___GFP_HIGHMEM 0x02u  ___GFP_WAIT 0x10u  ___GFP_IO 0x40u  ___GFP_FS 0x80u
 *   ___GFP_ZERO 0x8000u   ___GFP_HARDWALL 0x20000u
 *   GFP_KERNEL   (__GFP_WAIT | __GFP_IO | __GFP_FS)                   = 0xd0
 *   GFP_HIGHUSER (__GFP_WAIT | __GFP_IO | __GFP_FS | __GFP_HARDWALL |
 *                 __GFP_HIGHMEM)                                      = 0x200d2 */
#define __GFP_HIGHMEM	((gfp_t)0x02u)
#define __GFP_WAIT	((gfp_t)0x10u)
#define __GFP_IO	((gfp_t)0x40u)
#define __GFP_FS	((gfp_t)0x80u)
#define __GFP_ZERO	((gfp_t)0x8000u)
#define __GFP_HARDWALL	((gfp_t)0x20000u)
#define GFP_KERNEL	(__GFP_WAIT | __GFP_IO | __GFP_FS)
#define GFP_USER	(__GFP_WAIT | __GFP_IO | __GFP_FS | __GFP_HARDWALL)
#define GFP_HIGHUSER	(__GFP_WAIT | __GFP_IO | __GFP_FS | __GFP_HARDWALL | \
			 __GFP_HIGHMEM)
#elif MMEMU_ERA == 419
/* include/linux/gfp.h of 4.19 (read from 0x88888888/Linux-4.19 @d7e460ed): __GFP_WAIT is
 * gone (4.4), reclaim is two bits:
 *   ___GFP_HIGHMEM 0x02u  ___GFP_IO 0x40u  ___GFP_FS 0x80u  ___GFP_ZERO 0x8000u
 *   ___GFP_HARDWALL 0x20000u  ___GFP_DIRECT_RECLAIM 0x200000u  ___GFP_KSWAPD_RECLAIM 0x400000u
 *   GFP_KERNEL   (__GFP_RECLAIM | __GFP_IO | __GFP_FS)                = 0x6000c0
 *   GFP_HIGHUSER (GFP_USER | __GFP_HIGHMEM)                           = 0x6200c2 */
#define __GFP_HIGHMEM		((gfp_t)0x02u)
#define __GFP_IO		((gfp_t)0x40u)
#define __GFP_FS		((gfp_t)0x80u)
#define __GFP_ZERO		((gfp_t)0x8000u)
#define __GFP_HARDWALL		((gfp_t)0x20000u)
#define __GFP_DIRECT_RECLAIM	((gfp_t)0x200000u)
#define __GFP_KSWAPD_RECLAIM	((gfp_t)0x400000u)
#define __GFP_RECLAIM		((gfp_t)(0x200000u | 0x400000u))
#define GFP_KERNEL	(__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_USER	(__GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL)
#define GFP_HIGHUSER	(GFP_USER | __GFP_HIGHMEM)
#elif MMEMU_ERA == 510 || MMEMU_ERA == 606
/* include/linux/gfp.h of 5.10 (read from Rtoax/linux-5.10.13 @1c1bfde7) and
 * include/linux/gfp_types.h of 6.6 (read from eclipse-oniro-mirrors/kernel_linux_6.6
 * @06ade51e, and torvalds/linux @16f5dfbc, a 6.3-6.9 version): the bits were shuffled in
 * 5.0/5.1 ("mm: shuffle GFP_* flags", so GFP_KERNEL fits an arm immediate), same since:
 *   ___GFP_HIGHMEM 0x02u  ___GFP_IO 0x40u  ___GFP_FS 0x80u  ___GFP_ZERO 0x100u
 *   ___GFP_DIRECT_RECLAIM 0x400u  ___GFP_KSWAPD_RECLAIM 0x800u  ___GFP_HARDWALL 0x100000u
 *   GFP_KERNEL   (__GFP_RECLAIM | __GFP_IO | __GFP_FS)                = 0xcc0
 *   GFP_HIGHUSER (GFP_USER | __GFP_HIGHMEM)                           = 0x100cc2 */
#define __GFP_HIGHMEM		((gfp_t)0x02u)
#define __GFP_IO		((gfp_t)0x40u)
#define __GFP_FS		((gfp_t)0x80u)
#define __GFP_ZERO		((gfp_t)0x100u)
#define __GFP_DIRECT_RECLAIM	((gfp_t)0x400u)
#define __GFP_KSWAPD_RECLAIM	((gfp_t)0x800u)
#define __GFP_HARDWALL		((gfp_t)0x100000u)
#define __GFP_RECLAIM		((gfp_t)(0x400u | 0x800u))
#define GFP_KERNEL	(__GFP_RECLAIM | __GFP_IO | __GFP_FS)
#define GFP_USER	(__GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL)
#define GFP_HIGHUSER	(GFP_USER | __GFP_HIGHMEM)
#else
/* Other eras numbered the bits otherwise (4.4-4.14 for one): read that era's gfp.h. */
#error "no GFP values for this MMEMU_ERA"
#endif

/* ---------------------------------------------------------------------------------------
 * Memory allocation.
 *
 * include/linux/slab.h: in the kernel kmalloc is an inline that picks a kmalloc cache
 * (calling kmem_cache_alloc_trace/kmalloc_trace) or calls __kmalloc; here it is a plain
 * extern function, the symbol mmemu exports. kzalloc is the kernel's inline around it.
 */
extern void *kmalloc(size_t size, gfp_t flags);
extern void kfree(const void *objp);
static inline void *kzalloc(size_t size, gfp_t flags)
{
	return kmalloc(size, flags | __GFP_ZERO);
}

/* include/linux/vmalloc.h, mm/vmalloc.c (all exported in every era here) */
extern void *vmalloc(unsigned long size);
extern void *vzalloc(unsigned long size);
extern void vfree(const void *addr);
extern unsigned long vmalloc_to_pfn(const void *addr);

/* include/linux/gfp.h. alloc_pages: in 3.x-6.x x86 it is an inline around
 * alloc_pages_current (NUMA) or __alloc_pages_nodemask / __alloc_pages (!NUMA), and from
 * 6.10 a macro around alloc_pages_noprof; mmemu exports one function under the name
 * alloc_pages, declared here. The others are exported functions in every era here. */
extern struct page *alloc_pages(gfp_t gfp_mask, unsigned int order);
extern void __free_pages(struct page *page, unsigned int order);
extern unsigned long __get_free_pages(gfp_t gfp_mask, unsigned int order);
extern void free_pages(unsigned long addr, unsigned int order);
#define alloc_page(gfp_mask)		alloc_pages(gfp_mask, 0)
#define __free_page(page)		__free_pages((page), 0)

/* ---------------------------------------------------------------------------------------
 * Temporary mappings of pages. include/linux/highmem.h (highmem-internal.h from 5.11).
 *
 * kmap/kunmap: on i386 with CONFIG_HIGHMEM exported functions up to 5.10 (arch/x86/mm/
 * highmem_32.c), inlines around kmap_high/kunmap_high from 5.11; on x86_64 inlines around
 * page_address. Declared here as the functions mmemu exports.
 *
 * kmap_atomic: exported function up to 5.10 on i386; kunmap_atomic is, in every era, a
 * macro around __kunmap_atomic (the symbol a module really imports), kept as such.
 *
 * kmap_local_page (5.11 on): an inline around __kmap_local_page_prot in the kernel,
 * declared here as the function mmemu exports; kunmap_local is the kernel's macro around
 * __kunmap_local (an inline around kunmap_local_indexed in the kernel), and
 * __kunmap_local is what the objects import. Unmap local mappings in reverse order.
 */
extern void *kmap(struct page *page);
extern void kunmap(struct page *page);
extern void *kmap_atomic(struct page *page);
extern void __kunmap_atomic(void *addr);
#define kunmap_atomic(addr)		__kunmap_atomic(addr)
#if MMEMU_ERA >= 511
extern void *kmap_local_page(struct page *page);
extern void __kunmap_local(void *addr);
#define kunmap_local(addr)		__kunmap_local(addr)
#endif

/* ---------------------------------------------------------------------------------------
 * String functions. include/linux/string.h, arch/x86/include/asm/string_{32,64}.h:
 * exported by the kernel's arch/x86/lib. The examples are built with -fno-builtin, so gcc
 * calls these instead of expanding them inline.
 */
extern void *memset(void *s, int c, size_t n);
extern void *memcpy(void *to, const void *from, size_t n);
extern size_t strlen(const char *s);

/* ---------------------------------------------------------------------------------------
 * Per-cpu variables of an SMP kernel. include/linux/percpu-defs.h: DEFINE_PER_CPU puts the
 * variable in section ".data..percpu" (PER_CPU_BASE_SECTION; ".data.percpu" before 2.6.35),
 * which the loader gives a place in every CPU's per-cpu unit (percpu_modalloc) instead of
 * the module's memory; the variable's address is then a per-cpu pointer, not an address.
 * arch/x86/include/asm/percpu.h: this_cpu_read/this_cpu_add address it through the per-cpu
 * segment, %gs on x86_64 (zero-based: the pointer is the offset in the unit, reached
 * %rip-relative), %fs on i386 (the segment's base is __per_cpu_offset[cpu]).
 */
#if defined(__x86_64__)
#define __percpu_seg		"gs"
#elif defined(__i386__)
#define __percpu_seg		"fs"
#endif
#define DEFINE_PER_CPU(type, name)	__section(".data..percpu") __typeof__(type) name
#ifdef __percpu_seg
#define this_cpu_read_4(var) ({						\
	unsigned int __ret;						\
	asm volatile("movl %%" __percpu_seg ":%1, %0" : "=r" (__ret) : "m" (var)); \
	__ret; })
#define this_cpu_add_4(var, val)					\
	asm volatile("addl %1, %%" __percpu_seg ":%0" : "+m" (var) : "ri" ((unsigned int)(val)))
#endif

#endif /* _MMEMU_MODULE_H */
