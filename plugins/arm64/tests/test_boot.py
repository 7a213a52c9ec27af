"""The boot of each era through the core's contract: the era's own protections, swapper_pg_dir
where the linker script puts it (BootPlan.root_phys), the executable linear map before 4.0
(BootPlan.direct_map_prot, ImageSection.prot), the image in the vmalloc area from 4.6
(BootPlan.early_vm_areas), the fixmap's tables (BootPlan.fixmap_range) and no fixmap before
3.15, the struct page array (the "vmemmap" symbol)."""

from __future__ import annotations

import pytest

import mmemu
from mmemu.arch import KW, KX, UX
from mmemu.render.text import page_line
from mmemu.units import KernelVersion
from mmemu_arm64.formats import PTE_ATTRINDX_MASK, PTE_DBM, PTE_DIRTY, PTE_PXN
from mmemu_arm64.prot import pgprots

PAGE = 4096


def boot(kernel="6.6", va="48", ram="1G", cmdline=""):
    return mmemu.boot(arch="arm64", kernel=kernel, ram=ram, cmdline=cmdline, options={"va_bits": va})


@pytest.mark.parametrize("kernel", ["3.10", "3.17", "4.9", "5.4", "6.6", "6.10"])
def test_each_kernel_maps_with_its_own_protections(kernel):
    k = boot(kernel, "39")
    try:
        assert k.pgprot == pgprots(kernel)
        # a direct-map leaf carries the era's PAGE_KERNEL (or PAGE_KERNEL_EXEC before 4.0)
        pa = k.PHYS_OFFSET + (600 << 20)
        w = k.walk(k.phys_to_virt(pa))
        raw = w.steps[-1].raw
        name = "PAGE_KERNEL_EXEC" if KernelVersion.parse(kernel) < "4.0" else "PAGE_KERNEL"
        assert k.codec.leaf_prot(len(w.steps) - 1, raw) == k.pgprot[name]
        if kernel == "4.9":  # 4.3-4.13: PTE_WRITE is DBM (bit 51), PTE_DIRTY (55) set, MT_NORMAL 4
            assert raw & PTE_DBM and raw & PTE_DIRTY and raw & PTE_ATTRINDX_MASK == 4 << 2
        if kernel == "6.6":  # MT_NORMAL 0 from 5.10, no PTE_DIRTY in PAGE_KERNEL from 4.14
            assert raw & PTE_ATTRINDX_MASK == 0 and not raw & PTE_DIRTY
    finally:
        k.close()


@pytest.mark.parametrize("kernel,va,section", [("3.7", "39", "pgdir"), ("3.15", "39", "pgdir"),
                                               ("3.16", "39", "bss"), ("4.14", "48", "bss"),
                                               ("4.19", "48", "rodata"), ("6.6", "39", "rodata")])
def test_swapper_pg_dir_is_where_the_linker_script_puts_it(kernel, va, section):
    k = boot(kernel, va)
    try:
        s = k.layout.symbols
        assert k.pgd_va == s["swapper_pg_dir"] and k.pgd == k.virt_to_phys(s["swapper_pg_dir"])
        assert k.plan.root_phys == k.pgd and k.plan.root_section == section
        sec = next(x for x in k.layout.image if x.name == section)
        if section == "pgdir":  # head.S: swapper_pg_dir = KERNEL_RAM_VADDR - SWAPPER_DIR_SIZE, below _text
            assert s["swapper_pg_dir"] == s["_text"] - 3 * PAGE and sec.virt + sec.size == s["_text"]
            assert sec.virt == s["idmap_pg_dir"] == s["swapper_pg_dir"] - 2 * PAGE  # IDMAP_DIR_SIZE below it
        elif section == "bss":  # vmlinux.lds.S: after BSS_SECTION, ending at _end
            assert s["swapper_pg_dir"] + (3 if va == "48" else 2) * PAGE == s["_end"]
        else:  # .rodata, the last page before __init_begin's alignment; reserved_pg_dir below it
            assert s["swapper_pg_dir"] + PAGE == sec.virt + sec.size
            reserved = s.get("reserved_pg_dir", s.get("reserved_ttbr0"))
            assert reserved == s["swapper_pg_dir"] - PAGE
        # the master table is not the zero page (the first page of the bss) and is zero outside its entries
        assert k.pgd >> 12 != k.zero_pfn
        k.check_invariants()
    finally:
        k.close()


@pytest.mark.parametrize("kernel,executable", [("3.10", True), ("3.19", True), ("4.0", False), ("6.6", False)])
def test_the_linear_map_is_executable_before_4_0(kernel, executable):
    k = boot(kernel, "39")
    try:
        pa = k.PHYS_OFFSET + (700 << 20)
        w = k.walk(k.phys_to_virt(pa))
        assert bool(w.rights & KX) == executable and w.rights & KW and not w.rights & UX
        text = next(x for x in k.layout.image if x.name == "text")
        t = k.walk(text.virt)
        # 3.x: the image is part of the RWX linear map; 4.0+: text read-only executable
        assert (bool(t.rights & KW), bool(t.rights & KX)) == (executable, True)
        assert (text.prot == "PAGE_KERNEL_EXEC") == executable and not text.writable
        assert k.plan.direct_map_prot == ("PAGE_KERNEL_EXEC" if executable else "PAGE_KERNEL")
        if not executable:
            assert w.steps[-1].raw & PTE_PXN
    finally:
        k.close()


@pytest.mark.parametrize("kernel", ["4.6", "5.4", "5.10", "6.6"])
def test_the_image_is_taken_from_the_vmalloc_area(kernel):
    k = boot(kernel)
    try:
        s = k.layout.symbols
        early = [a for a in k.vmap_areas if a.early]
        assert [(a.va_start, a.va_end) for a in early] == \
            [(s["_text"], s["_etext"]), (s["__start_rodata"], s["__init_begin"]), (s["__init_begin"], s["_sdata"]),
             (s["_sdata"], s["_end"])]
        assert all(a.vm.caller == "map_kernel" for a in early)
        assert s["VMALLOC_START"] == s["KIMAGE_VADDR"] <= s["_text"]
        # the lowest free address: the TEXT_OFFSET gap below _text (before 5.8), else after _end
        v = k.vmalloc(PAGE)
        assert v == (s["VMALLOC_START"] if s["_text"] > s["VMALLOC_START"] else s["_end"])
        v2 = k.vmalloc(1 << 20)
        assert not any(a.va_start < v2 + (1 << 20) and v2 < a.va_end for a in early)
        k.check_invariants()
    finally:
        k.close()


def test_no_early_area_in_the_linear_era():
    k = boot("4.5", "39")
    try:
        assert not k.plan.early_vm_areas and not any(a.early for a in k.vmap_areas)
    finally:
        k.close()


def test_no_fixmap_before_3_15():
    k = boot("3.14", "39")
    try:
        s = k.layout.symbols
        assert "FIXADDR_TOP" not in s and "FIXADDR_START" not in s and not k.fixed_addresses
        assert k.plan.fixmap_range is None
        with pytest.raises(mmemu.MmemuError):
            k.fix_to_virt("FIX_EARLYCON_MEM_BASE")
    finally:
        k.close()


@pytest.mark.parametrize("kernel,va", [("3.15", "39"), ("4.9", "48"), ("6.6", "48"), ("6.9", "39"), ("6.12", "48")])
def test_early_fixmap_init_populates_the_kernels_range(kernel, va):
    """3.15-6.8: one pte table (bm_pte) for the pmd of FIXADDR_START, which holds the
    early_ioremap slots; 6.9+: every pmd of [FIXADDR_TOT_START, FIXADDR_TOP)."""
    k = boot(kernel, va)
    try:
        s = k.layout.symbols
        last = len(k.paging.levels) - 1
        lo, hi = k.plan.fixmap_range
        for name in ("FIX_BTMAP_BEGIN", "FIX_BTMAP_END", "FIX_EARLYCON_MEM_BASE"):
            w = k.walk(k.fix_to_virt(name))
            assert not w.mapped and w.steps[-1].li == last, (name, w)  # the pte table is there
        if "FIXADDR_TOT_START" in s:
            assert (lo, hi) == (s["FIXADDR_TOT_START"], s["FIXADDR_TOP"])
            for va_ in range(lo, hi, 2 << 20):
                assert k.walk(va_).steps[-1].li == last
        else:
            assert (lo, hi) == (s["FIXADDR_START"], s["FIXADDR_START"] + PAGE)
            if "FIX_FDT" in k.fixed_addresses:  # the FDT window above: mapped by blocks at boot, no pte table
                w = k.walk(k.fix_to_virt("FIX_FDT") + (2 << 20))
                assert w.steps[-1].li < last
        va_ = k.set_fixmap_offset("FIX_EARLYCON_MEM_BASE", 0x09000000)
        assert k.walk(va_).phys == 0x09000000
    finally:
        k.close()


@pytest.mark.parametrize("kernel", ["4.4", "6.6"])
def test_struct_page_addresses_use_vmemmap(kernel):
    """pfn_to_page(pfn) = vmemmap + pfn: memory.h vmemmap = VMEMMAP_START (3.x-4.5), then
    VMEMMAP_START - (memstart_addr >> PAGE_SHIFT) (4.6+): the first page of RAM (pfn 0x40000)
    has its struct page at VMEMMAP_START from 4.6, 16 MiB into the region before."""
    k = boot(kernel, "39")
    try:
        s = k.layout.symbols
        head, row = page_line(k, k.PHYS_OFFSET)
        first = s["VMEMMAP_START"] + (0 if KernelVersion.parse(kernel) >= "4.6" else (k.PHYS_OFFSET >> 12) * 64)
        assert row.split()[0] == f"{first:x}"
        assert s["vmemmap"] + (k.PHYS_OFFSET >> 12) * 64 == first
    finally:
        k.close()


def test_va_bits_defaults_to_what_the_era_has():
    # the core fills option defaults in before the arch sees the spec: va_bits has none, the arch decides
    for kernel, va in (("3.10", 39), ("3.16", 39), ("3.17", 48), ("6.6", 48)):
        k = mmemu.boot(arch="arm64", kernel=kernel, ram="512M")
        try:
            assert k.paging.va_bits == va and k.layout.symbols["VA_BITS"] == va
        finally:
            k.close()


@pytest.mark.parametrize("va", ["39", "48"])
def test_the_walk_refuses_an_address_outside_its_roots_half(va):
    """TTBR1 translates the kernel half, TTBR0 the user half: the walker checks the address
    against the root it is given (a user address in swapper_pg_dir, a kernel address in a
    process's pgd), and refuses what neither half holds; k.walk gives the latter a faulting
    walk, as the MMU faults there."""
    k = boot(va=va, ram="64M")
    try:
        p = k.create_process("t")
        bits = k.paging.va_bits
        kva = k.phys_to_virt(k.PHYS_OFFSET + (8 << 20))
        assert k.pgtable.walk(k.pgd, kva).mapped
        assert not k.pgtable.walk(p.pgd, 0x400000).mapped  # a user address, nothing mapped yet
        with pytest.raises(mmemu.errors.AddressError, match="kernel root.*TTBR1"):
            k.pgtable.walk(p.pgd, kva)
        with pytest.raises(mmemu.errors.AddressError, match="user root.*TTBR0"):
            k.pgtable.walk(k.pgd, 0x400000)
        for bad in (1 << bits, (1 << 63) | 0x1000, -0x1000, 1 << 64):
            for root in (k.pgd, p.pgd):
                with pytest.raises(mmemu.errors.AddressError):
                    k.pgtable.walk(root, bad)
            w = k.walk(bad)
            assert (w.mapped, w.missing, w.steps) == (False, "non-canonical", [])
    finally:
        k.close()
