"""The kernel's named protections (arch/arm64/include/asm/pgtable.h, then pgtable-prot.h
from 4.5) and the pte rules of each era, for CONFIG_SMP=y (PTE_SHARED: every arm64 kernel
is SMP) and a 4 KiB granule.

Three generations of the definitions, quoted where each value is built:

- 3.7-3.13: ``pgprot_default`` is filled in at boot by init_mem_pgprot() (arch/arm64/mm/
  mmu.c): ``PTE_TYPE_PAGE | PTE_AF | PTE_ATTRINDX(MT_NORMAL) | PTE_SHARED``; PAGE_* are
  ``_MOD_PROT(pgprot_default, ...)``; write permission is PTE_RDONLY itself.
- 3.14-4.13: software PTE_WRITE (bit 57, then DBM bit 51 from 4.3); user protections carry
  no PTE_RDONLY, set_pte_at() computes it from PTE_DIRTY and PTE_WRITE.
- 4.14+: PROT_NORMAL without PTE_DIRTY; user protections carry PTE_RDONLY ("shared+writable
  pages are clean by default, hence PTE_RDONLY|PTE_WRITE"); PAGE_NONE keeps PTE_TYPE_PAGE's
  bit 1 and clears only PTE_VALID; from 6.10 its marker is PTE_PRESENT_INVALID (PTE_NG).

Names the contract requires that arm64 does not define: ``PAGE_KERNEL_RX`` is arm64's
``PAGE_KERNEL_ROX`` (4.0+; before 4.0 the kernel text is mapped RWX, so it is
PAGE_KERNEL_EXEC); ``PAGE_KERNEL_RO`` before 4.0 is PAGE_KERNEL (nothing was read-only);
``PAGE_COPY``/``PAGE_COPY_EXEC`` where the era has none are what protection_map[] uses for
private writable mappings (``__P010 PAGE_READONLY``, ``__P110 PAGE_READONLY_EXEC``).
"""

from __future__ import annotations

from mmemu.units import KernelVersion

from .eras import ARM64
from .formats import (PTE_AF, PTE_ATTRINDX, PTE_DBM, PTE_DIRTY, PTE_GP, PTE_NG, PTE_PXN, PTE_RDONLY, PTE_SHARED,
                      PTE_TYPE_MASK, PTE_TYPE_PAGE, PTE_USER, PTE_UXN, PTE_VALID, PteRules)

PTE_ATTRINDX_MASK = 7 << 2


def pte_rules(kernel: "str | KernelVersion") -> PteRules:
    era = ARM64(kernel)
    prot_none = era.prot_none
    present_invalid = PTE_NG if not prot_none else 0
    write = era.pte_write
    # pte_modify(): const pteval_t mask = PTE_USER | PTE_PXN | PTE_UXN | PTE_RDONLY | PTE_PROT_NONE |
    # PTE_VALID (3.7, verified), | PTE_WRITE (3.17, verified); 5.x adds PTE_GP | PTE_ATTRINDX_MASK
    # (recollection); 6.10 PTE_PRESENT_INVALID for PTE_PROT_NONE (verified patch text)
    mask = PTE_USER | PTE_PXN | PTE_UXN | PTE_RDONLY | PTE_VALID | (prot_none or present_invalid) | write
    kv = era.version
    if kv >= "5.10":
        mask |= PTE_GP | PTE_ATTRINDX_MASK
    return PteRules(prot_none=prot_none, present_invalid=present_invalid, write=write, file=era.pte_file,
                    set_pte_at=era.set_pte_at, modify_mask=mask, modify_hw_dirty=write == PTE_DBM,
                    xn_tables=era.xn_tables)


def pgprots(kernel: "str | KernelVersion") -> dict[str, int]:
    """Every protection of mmemu.arch.REQUIRED_PGPROTS (and a few arm64 names) for *kernel*."""
    era = ARM64(kernel)
    kv = era.version
    attr_normal = PTE_ATTRINDX(era.mt_normal)
    none_marker = era.prot_none or PTE_NG  # 6.10: PTE_PRESENT_INVALID == PTE_NG
    write = era.pte_write
    p: dict[str, int] = {}
    if kv < "3.14":
        # pgtable.h 3.7-3.13 (verified 3.11 copy):
        #   #define _PAGE_DEFAULT  PTE_TYPE_PAGE | PTE_AF   (pgprot_default adds ATTRINDX(MT_NORMAL), PTE_SHARED)
        #   #define PAGE_NONE  __pgprot_modify(pgprot_default, PTE_TYPE_MASK,
        #                                      PTE_PROT_NONE | PTE_RDONLY | PTE_PXN | PTE_UXN)
        #   #define PAGE_SHARED       _MOD_PROT(pgprot_default, PTE_USER | PTE_NG | PTE_PXN | PTE_UXN)
        #   #define PAGE_SHARED_EXEC  _MOD_PROT(pgprot_default, PTE_USER | PTE_NG | PTE_PXN)
        #   #define PAGE_COPY         _MOD_PROT(pgprot_default, PTE_USER | PTE_NG | PTE_PXN | PTE_UXN | PTE_RDONLY)
        #   #define PAGE_COPY_EXEC    _MOD_PROT(pgprot_default, PTE_USER | PTE_NG | PTE_PXN | PTE_RDONLY)
        #   #define PAGE_READONLY     (as PAGE_COPY)      PAGE_READONLY_EXEC (as PAGE_COPY_EXEC)
        #   #define PAGE_KERNEL       _MOD_PROT(pgprot_default, PTE_PXN | PTE_UXN | PTE_DIRTY)
        #   #define PAGE_KERNEL_EXEC  _MOD_PROT(pgprot_default, PTE_UXN | PTE_DIRTY)
        default = PTE_TYPE_PAGE | PTE_AF | attr_normal | PTE_SHARED
        user = default | PTE_USER | PTE_NG | PTE_PXN
        p["PAGE_NONE"] = (default & ~PTE_TYPE_MASK) | none_marker | PTE_RDONLY | PTE_PXN | PTE_UXN
        p["PAGE_SHARED"] = user | PTE_UXN
        p["PAGE_SHARED_EXEC"] = user
        p["PAGE_COPY"] = user | PTE_UXN | PTE_RDONLY
        p["PAGE_COPY_EXEC"] = user | PTE_RDONLY
        p["PAGE_READONLY"] = user | PTE_UXN | PTE_RDONLY
        p["PAGE_READONLY_EXEC"] = user | PTE_RDONLY
        p["PAGE_KERNEL"] = default | PTE_PXN | PTE_UXN | PTE_DIRTY
        p["PAGE_KERNEL_EXEC"] = default | PTE_UXN | PTE_DIRTY
    elif kv < "4.14":
        # pgtable.h 3.14-4.13 (verified 3.17-3.19 copy; 4.x moved them to pgtable-prot.h):
        #   #define PROT_DEFAULT  (PTE_TYPE_PAGE | PTE_AF | PTE_SHARED)
        #   #define _PAGE_DEFAULT (PROT_DEFAULT | PTE_ATTRINDX(MT_NORMAL))
        #   #define PAGE_KERNEL      __pgprot(_PAGE_DEFAULT | PTE_PXN | PTE_UXN | PTE_DIRTY | PTE_WRITE)
        #   #define PAGE_KERNEL_EXEC __pgprot(_PAGE_DEFAULT | PTE_UXN | PTE_DIRTY | PTE_WRITE)
        #   #define PAGE_NONE  __pgprot(((_PAGE_DEFAULT) & ~PTE_TYPE_MASK) | PTE_PROT_NONE | PTE_PXN | PTE_UXN)
        #   #define PAGE_SHARED      __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE)
        #   #define PAGE_SHARED_EXEC __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_NG | PTE_PXN | PTE_WRITE)
        #   #define PAGE_COPY        __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_NG | PTE_PXN | PTE_UXN)
        #   #define PAGE_COPY_EXEC   __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_NG | PTE_PXN)
        #   #define PAGE_READONLY    (as PAGE_COPY)   PAGE_READONLY_EXEC (as PAGE_COPY_EXEC)
        default = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | attr_normal
        user = default | PTE_USER | PTE_NG | PTE_PXN
        p["PAGE_NONE"] = (default & ~PTE_TYPE_MASK) | none_marker | PTE_PXN | PTE_UXN
        p["PAGE_SHARED"] = user | PTE_UXN | write
        p["PAGE_SHARED_EXEC"] = user | write
        p["PAGE_COPY"] = user | PTE_UXN
        p["PAGE_COPY_EXEC"] = user
        p["PAGE_READONLY"] = user | PTE_UXN
        p["PAGE_READONLY_EXEC"] = user
        p["PAGE_KERNEL"] = default | PTE_PXN | PTE_UXN | PTE_DIRTY | write
        p["PAGE_KERNEL_EXEC"] = default | PTE_UXN | PTE_DIRTY | write
        if kv >= "4.0":
            # 4.x pgtable-prot.h (recollection of 'arm64: add better page protections to arm64'):
            #   #define PAGE_KERNEL_RO   __pgprot(_PAGE_DEFAULT | PTE_PXN | PTE_UXN | PTE_DIRTY | PTE_RDONLY)
            #   #define PAGE_KERNEL_ROX  __pgprot(_PAGE_DEFAULT | PTE_UXN | PTE_DIRTY | PTE_RDONLY)
            p["PAGE_KERNEL_RO"] = default | PTE_PXN | PTE_UXN | PTE_DIRTY | PTE_RDONLY
            p["PAGE_KERNEL_ROX"] = default | PTE_UXN | PTE_DIRTY | PTE_RDONLY
    else:
        # pgtable-prot.h 4.14+ (verified 5.x copy):
        #   #define _PROT_DEFAULT  (PTE_TYPE_PAGE | PTE_AF | PTE_SHARED)   (PTE_MAYBE_NG: 0, KPTI off: nG
        #                                                                   kernel mappings are not modelled)
        #   #define PROT_NORMAL    (PROT_DEFAULT | PTE_PXN | PTE_UXN | PTE_WRITE | PTE_ATTRINDX(MT_NORMAL))
        #   #define PAGE_KERNEL      __pgprot(PROT_NORMAL)
        #   #define PAGE_KERNEL_RO   __pgprot((PROT_NORMAL & ~PTE_WRITE) | PTE_RDONLY)
        #   #define PAGE_KERNEL_ROX  __pgprot((PROT_NORMAL & ~(PTE_WRITE | PTE_PXN)) | PTE_RDONLY)
        #   #define PAGE_KERNEL_EXEC __pgprot(PROT_NORMAL & ~PTE_PXN)
        #   #define PAGE_NONE  __pgprot(((_PAGE_DEFAULT) & ~PTE_VALID) | PTE_PROT_NONE | PTE_RDONLY | PTE_NG
        #                               | PTE_PXN | PTE_UXN)          (6.10: PTE_PRESENT_INVALID for PTE_PROT_NONE)
        #   #define PAGE_SHARED      __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
        #                                     | PTE_WRITE)
        #   #define PAGE_SHARED_EXEC __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_WRITE)
        #   #define PAGE_READONLY      __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN)
        #   #define PAGE_READONLY_EXEC __pgprot(_PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN)
        #   #define __P010  PAGE_READONLY   (no PAGE_COPY: private writable is read-only until COW)
        default = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | attr_normal
        normal = default | PTE_PXN | PTE_UXN | write
        user = default | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN
        p["PAGE_NONE"] = (default & ~PTE_VALID) | none_marker | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN
        p["PAGE_SHARED"] = user | PTE_UXN | write
        p["PAGE_SHARED_EXEC"] = user | write
        p["PAGE_READONLY"] = user | PTE_UXN
        p["PAGE_READONLY_EXEC"] = user
        p["PAGE_COPY"] = p["PAGE_READONLY"]
        p["PAGE_COPY_EXEC"] = p["PAGE_READONLY_EXEC"]
        p["PAGE_KERNEL"] = normal
        p["PAGE_KERNEL_RO"] = (normal & ~write) | PTE_RDONLY
        p["PAGE_KERNEL_ROX"] = (normal & ~(write | PTE_PXN)) | PTE_RDONLY
        p["PAGE_KERNEL_EXEC"] = normal & ~PTE_PXN
    if "PAGE_KERNEL_ROX" not in p:
        # before 4.0 nothing of the kernel is read-only: the text is RWX
        p["PAGE_KERNEL_RO"] = p["PAGE_KERNEL"]
        p["PAGE_KERNEL_ROX"] = p["PAGE_KERNEL_EXEC"]
    p["PAGE_KERNEL_RX"] = p["PAGE_KERNEL_ROX"]
    return p


def protection_marker(kernel) -> int:
    """The bit that keeps a PROT_NONE pte pte_present() in this era."""
    era = ARM64(kernel)
    return era.prot_none or PTE_NG


__all__ = ["pgprots", "pte_rules", "protection_marker", "PTE_DBM", "PTE_VALID"]
