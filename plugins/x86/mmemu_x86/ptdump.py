"""x86's kernel page-table dump: arch/x86/mm/dump_pagetables.c of each era
(mmemu_x86.ptdump_eras), on the core's walker (mmemu.render.ptdump)."""

from __future__ import annotations

from dataclasses import dataclass

from mmemu.errors import ConfigError
from mmemu.render.ptdump import PtdumpFormat, size_text

from .mm import X86_MM
from .pgtable_types import (
    _PAGE_GLOBAL,
    _PAGE_NX,
    _PAGE_PAT_LARGE,
    _PAGE_PCD,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_PWT,
    _PAGE_RW,
    _PAGE_USER,
)
from .ptdump_eras import X86_PTDUMP

#: arch/x86/include/asm/pgtable_types.h PTE_FLAGS_MASK: the bits that are not the frame
_ADDR_40 = ((1 << 40) - 1) & ~0xFFF


@dataclass
class X86PtdumpFormat(PtdumpFormat):
    """arch/x86/mm/dump_pagetables.c of an era (mmemu_x86.ptdump_eras): ``printk_prot``
    columns and, from 4.17, effective_prot. The defaults are the 6.x text."""

    #: printk_prot's flag block: "pse_slot" (until 3.18), "pat_lower" (3.19), "pat_upper" (4.3)
    flag_block: str = "pat_upper"
    #: what prints as not present: "zero" (``!pgprot_val(prot)``, until 4.14) or "present_bit"
    not_present_test: str = "present_bit"
    #: note_page() also compares the effective protection (4.17+)
    effective_prot: bool = True
    #: CONFIG_X86_PAE: the pgd (a PDPTE, no RW/USR bits) counts as _PAGE_USER | _PAGE_RW (4.17..5.5)
    pae_top: bool = False

    def prot(self, level: int, val: int) -> int:
        # PTE_FLAGS_MASK: everything but the frame (bits 12..MAXPHYADDR-1)
        return val & ~_ADDR_40

    def run_mask(self, level: int) -> int:
        return ~_ADDR_40 & (1 << 64) - 1

    def effective(self, level: int, val: int, higher: int | None) -> int:
        if not self.effective_prot:
            return 0
        prot = self.prot(level, val)
        if higher is None:
            return _PAGE_USER | _PAGE_RW if self.pae_top else prot
        keep = _PAGE_USER | _PAGE_RW
        return (higher & prot & keep) | ((higher | prot) & _PAGE_NX)

    def line(self, start: int, end: int, size: int, start_pa: int, prot: int, level: int) -> str:
        w = self.width
        return f"0x{start:0{w}x}-0x{end:0{w}x}   {size_text(size)} " + self.prot_text(prot, level)

    def prot_text(self, pr: int, level: int) -> str:
        """printk_prot(): fixed-width flag columns, then the level name. *level* is mm/ptdump's
        number (0 pgd .. 4 pte): the eras' own numbers (1 pgd .. 4 pte, or .. 5 with p4d) name
        the same levels, and their tests (``level <= 3`` for PSE, pte for PAT) are by name."""
        name = self.level_names[level]
        old = self.flag_block == "pse_slot"
        blank = not pr if self.not_present_test == "zero" else not pr & _PAGE_PRESENT
        if blank:
            return " " * (26 if old else 30) + name
        s = "USR " if pr & _PAGE_USER else "    "
        s += "RW " if pr & _PAGE_RW else "ro "
        s += "PWT " if pr & _PAGE_PWT else "    "
        s += "PCD " if pr & _PAGE_PCD else "    "
        if old:  # "Bit 9 has a different meaning on level 3 vs 4": PSE above the pte level, pat at it
            s += ("PSE " if pr & _PAGE_PSE else "    ") if level <= 3 else ("pat " if pr & _PAGE_PSE else "    ")
        else:
            s += "PSE " if level <= 3 and pr & _PAGE_PSE else "    "
            pat = (level == 4 and pr & _PAGE_PSE) or (level in (2, 3) and pr & _PAGE_PAT_LARGE)
            s += ("PAT " if self.flag_block == "pat_upper" else "pat ") if pat else "    "
        s += "GLB " if pr & _PAGE_GLOBAL else "    "
        s += "NX " if pr & _PAGE_NX else "x  "
        return s + name


def x86_ptdump_format(layout, markers, ranges, width: int, pae: bool = False) -> X86PtdumpFormat:
    """The dump of the layout's era (mmemu_x86.ptdump_eras), or a ConfigError before 2.6.25."""
    era = X86_PTDUMP(layout.kernel)
    if not era.ptdump:
        raise ConfigError(f"{layout.arch} kernel {layout.kernel} has no kernel page-table dump: "
                          "arch/x86/mm/dump_pagetables.c (/sys/kernel/debug/kernel_page_tables, CONFIG_X86_PTDUMP) came in 2.6.25")
    return X86PtdumpFormat(markers=markers, ranges=ranges, width=width, debugfs=X86_MM(layout.kernel).ptdump_file,
                           fold="own" if era.walker == "arch" else "lowest", flag_block=era.flag_block,
                           not_present_test=era.not_present_test, effective_prot=era.effective_prot,
                           pae_top=pae and era.walker == "arch")
