"""x86 control-register bits and the kernel's GDT selectors, as plain numbers for the x86
CPU adapter (:class:`CpuSetup`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class CpuSetup:
    """How to put Unicorn's x86 CPU into the arch's paging mode."""

    bits: int  # 32 or 64: Unicorn mode
    cr0: int  # PE|PG|WP...
    cr4: int  # PSE, PAE, LA57...
    efer: int  # LME|LMA|NXE (64-bit, PAE+NX)
    #: GDT selectors as the kernel lays them out (asm/segment.h)
    kernel_cs: int
    kernel_ds: int
    user_cs: int
    user_ds: int
    gdt_entries: int  # GDT_ENTRIES
    #: the per-cpu data segment (__KERNEL_PERCPU, 32-bit: the kernel's %fs), 0 if none
    kernel_percpu: int = 0
    unicorn_arch: str = "x86"


X86_CR0_PE = 1 << 0
X86_CR0_WP = 1 << 16
X86_CR0_PG = 1 << 31
X86_CR4_PSE = 1 << 4
X86_CR4_PAE = 1 << 5
X86_CR4_PGE = 1 << 7
X86_CR4_LA57 = 1 << 12
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11

#: the kernel always runs with paging, write protection honoured in ring 0 (CR0.WP)
CR0_KERNEL = X86_CR0_PE | X86_CR0_WP | X86_CR0_PG

# arch/x86/include/asm/segment.h, 32-bit: GDT_ENTRY_KERNEL_CS 12, KERNEL_DS 13,
# DEFAULT_USER_CS 14, DEFAULT_USER_DS 15, GDT_ENTRY_PERCPU 27, GDT_ENTRIES 32; selector = entry*8 | RPL
SEGMENTS_32 = dict(kernel_cs=12 * 8, kernel_ds=13 * 8, user_cs=14 * 8 + 3, user_ds=15 * 8 + 3, gdt_entries=32,
                   kernel_percpu=27 * 8)
# 64-bit: GDT_ENTRY_KERNEL_CS 2, KERNEL_DS 3, DEFAULT_USER_DS 5, DEFAULT_USER_CS 6, GDT_ENTRIES 16
SEGMENTS_64 = dict(kernel_cs=2 * 8, kernel_ds=3 * 8, user_cs=6 * 8 + 3, user_ds=5 * 8 + 3, gdt_entries=16)
