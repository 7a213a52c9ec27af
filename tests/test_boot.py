"""Booting: the direct mapping with the page sizes the kernel would use, the kernel image
with its final protections, the fixmap and pkmap tables, and the records of who wrote what."""

from __future__ import annotations

import pytest

import mmemu

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4 * KiB


def leaves(k, start, end):
    return [(va, size, pa) for va, size, pa, _raw, _li in k.pgtable.iter_leaves(k.pgd, start, end)]


def direct_map(k):
    po, hm = k.layout["PAGE_OFFSET"], k.layout["high_memory"]
    return leaves(k, po, hm)


def sizes_used(k):
    return {size for _va, size, _pa in direct_map(k)}


def test_direct_map_is_one_to_one_and_covers_lowmem_exactly(boot):
    for kw in (dict(arch="i386", kernel="3.10", ram="1G"), dict(arch="i386_pae", ram="4G"),
               dict(arch="x86_64", ram="6G"), dict(arch="x86_64", ram="2G", options={"levels": "5"})):
        k = boot(**kw)
        po, hm = k.layout["PAGE_OFFSET"], k.layout["high_memory"]
        pieces = direct_map(k)
        assert pieces[0][0] == po
        covered = []
        for va, size, pa in pieces:
            assert pa == va - po, (kw, hex(va))
            if covered and covered[-1][1] == va:
                covered[-1] = (covered[-1][0], va + size)
            else:
                covered.append((va, va + size))
        # the direct map covers the machine's memory below high_memory and nothing else: on the 6 GiB
        # x86_64 PC the RAM is [0, 3G) and [4G, 7G) (hw/i386/pc_piix.c pc_init1(): 3 GiB below the hole
        # once the RAM reaches 0xe0000000), so [3G, 4G) stays unmapped, the BIOS ROM [0xfffc0000, 4G)
        # included, as the kernel leaves it since 3.9 ("x86, mm: Only direct map addresses that are
        # marked as E820_RAM"). i386's lowmem ends far below any reserved range but the ISA one.
        if kw["arch"] == "x86_64" and kw["ram"] == "6G":
            want = [(po, po + 3 * GiB), (po + 4 * GiB, po + 7 * GiB)]
        else:
            want = [(po + s, po + min(e, hm - po)) for s, e in k.layout.ram_ranges() if po + s < hm]
        assert covered == want, (kw, [(hex(a), hex(b)) for a, b in covered])
        k.frames.check()


def test_x86_64_64g_uses_1g_pages(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="64G")
    pieces = direct_map(k)
    big = [p for p in pieces if p[1] == GiB]
    # 1G..3G and 4G..65G: QEMU's pc machine puts the RAM above 3 GiB at 4 GiB (hw/i386/pc_piix.c pc_init1()),
    # so 64 GiB end at 65 GiB and [3G, 4G) is a hole; the first GiB holds the 4 KiB ISA range and 2 MiB pages
    assert len(big) == 63
    assert [pa for va, size, pa in big] == [GiB, 2 * GiB] + [g * GiB for g in range(4, 65)]
    assert sizes_used(k) == {4 * KiB, 2 * MiB, GiB}
    # [0, 2M) in 4 KiB pages (the ISA range mapped on its own), then 2 MiB up to 1 GiB
    assert all(size == 4 * KiB for va, size, pa in pieces if pa < 2 * MiB)
    assert all(size == 2 * MiB for va, size, pa in pieces if 2 * MiB <= pa < GiB)


@pytest.mark.parametrize("kw,expected", [
    (dict(arch="x86_64", ram="4G", cmdline="nogbpages"), {4 * KiB, 2 * MiB}),
    (dict(arch="x86_64", ram="4G", cmdline="nopse"), {4 * KiB}),
    (dict(arch="x86_64", kernel="2.6.12", ram="4G"), {4 * KiB, 2 * MiB}),  # no gbpages before 2.6.27
    (dict(arch="i386", ram="1G"), {4 * KiB, 4 * MiB}),
    (dict(arch="i386", ram="1G", cmdline="nopse"), {4 * KiB}),
    (dict(arch="i386_pae", ram="2G"), {4 * KiB, 2 * MiB}),
    (dict(arch="i386_pae", ram="2G", cmdline="debug_pagealloc=on"), {4 * KiB}),
])
def test_page_sizes_follow_the_command_line_and_era(boot, kw, expected):
    assert sizes_used(boot(**kw)) == expected


def test_pae_4g_4k_maps_every_lowmem_page_with_its_own_pte(boot):
    k = boot(arch="i386_pae", kernel="6.6", ram="4G", cmdline="nopse")
    pieces = direct_map(k)
    lowmem = k.layout["high_memory"] - k.layout["PAGE_OFFSET"]
    assert len(pieces) == lowmem // (4 * KiB)
    pte_tables = [t for t in k.pgtable.tables.values() if t.level_index == 2]
    assert len(pte_tables) >= lowmem // (2 * MiB)


def test_mem_limits_the_direct_map_and_the_allocator(boot):
    k = boot(arch="x86_64", ram="4G", cmdline="mem=1G")
    assert k.layout["high_memory"] - k.layout["PAGE_OFFSET"] == GiB
    assert not k.walk(k.layout["PAGE_OFFSET"] + GiB).mapped
    assert max(z.end_pfn for z in k.frames.zones.values()) == GiB >> 12


def test_image_protections(boot):
    for kw in (dict(arch="i386_pae", ram="1G"), dict(arch="x86_64", ram="1G"), dict(arch="i386", ram="1G")):
        k = boot(**kw)
        nx = bool(k.codec.nx)
        for sec in k.layout.image:
            for va in (sec.virt, sec.virt + sec.size - 1):
                w = k.walk(va)
                assert w.mapped and w.phys == sec.phys + (va - sec.virt), (kw, sec.name)
                assert w.writable == sec.writable, (kw, sec.name)
                assert (not w.nx) == (sec.executable or not nx), (kw, sec.name)
                assert w.code("write") == (None if sec.writable else 0x3)
        # the image frames are reserved, never handed out
        first = min(s.phys for s in k.layout.image) >> 12
        assert k.frames.page(first).state == "reserved"


def test_i386_image_splits_only_the_large_pages_it_must(boot):
    k = boot(arch="i386", kernel="3.10", ram="1G")
    text = next(s for s in k.layout.image if s.name == "text")
    # the 4 MiB page wholly inside the text stays one page; the one where text ends is split
    assert k.walk(text.virt).page_size == 4 * MiB
    assert k.walk(text.virt + text.size - 1).page_size == 4 * KiB
    writers = {k.pgtable.writer_of(s.entry_addr) for s in k.walk(text.virt + text.size - 1).steps}
    assert "mark_rodata_ro" in writers


def test_pkmap_lives_under_one_directory_entry(boot):
    for arch, last in (("i386", 1024), ("i386_pae", 512)):
        k = boot(arch=arch, ram="2G")
        base = k.layout["PKMAP_BASE"]
        assert k.layout["LAST_PKMAP"] == last
        tables = {k.walk(base + i * 4096).steps[-1].table for i in range(last)}
        assert len(tables) == 1, arch  # one page table: one entry of the master page directory
        step = k.walk(base).steps[-2]
        assert k.pgtable.writer_of(step.entry_addr) == "permanent_kmaps_init"
        assert not k.walk(base).mapped  # no slot is in use at boot


def test_fixmap_tables_exist_for_every_slot(boot):
    for kw in (dict(arch="i386", ram="1G"), dict(arch="x86_64", ram="1G"), dict(arch="i386_pae", ram="1G")):
        k = boot(**kw)
        top = k.layout["FIXADDR_TOP"]
        end_idx = dict(k.layout.fixmap)["__end_of_fixed_addresses"]
        for idx in range(end_idx):
            w = k.walk(top - idx * 4096)
            assert w.steps[-1].level.name == "pte", (kw, idx)  # reached a page table


def test_root_is_the_kernels_own_table(boot):
    k = boot(arch="x86_64", ram="1G")
    assert k.pgd_symbol == "init_top_pgt"
    assert k.pgtable.tables[k.pgd].owner == "init_top_pgt"
    assert k.virt_to_phys(k.pgd_va) == k.pgd
    assert k.frames.page(k.pgd >> 12).owner == "kernel image"
    k2 = boot(arch="x86_64", kernel="4.9", ram="1G")
    assert k2.pgd_symbol == "init_level4_pgt"
    k3 = boot(arch="i386", ram="256M")
    assert k3.pgd_symbol == "swapper_pg_dir"
    assert k3.symbols["swapper_pg_dir"] == k3.pgd + k3.layout["PAGE_OFFSET"]


def test_every_table_frame_is_allocated_and_owned(boot):
    k = boot(arch="i386_pae", ram="4G")
    for phys, info in k.pgtable.tables.items():
        frame = k.frames.page(phys >> 12)
        if phys in (k.pgd, k.user_pgd(k.pgd)):  # swapper_pg_dir and (PTI) its user copy: the image's
            assert frame.state == "reserved"
        else:
            assert frame.state == "allocated" and frame.owner.startswith("page table"), hex(phys)
        assert frame.zone != "HighMem"  # kernel page tables live in lowmem


def test_pa_va(boot):
    k = boot(arch="i386", ram="1G")
    assert getattr(k, "__pa")(0xC0001000) == 0x1000
    assert getattr(k, "__va")(0x1000) == 0xC0001000
    with pytest.raises(mmemu.MmemuError, match="not in the direct mapping"):
        k.phys_to_virt(0x3F000000)  # HighMem has no direct-map address
    with pytest.raises(mmemu.MmemuError, match="not a direct-mapped kernel address"):
        k.virt_to_phys(0x1000)


def test_failed_boot_releases_the_ram():
    with pytest.raises(mmemu.ConfigError):
        mmemu.boot(arch="i386", ram="1G", cmdline="vmalloc=2G")


def test_x86_64_direct_map_of_the_bios_rom_by_era(boot):
    """The reserved BIOS ROM below 4 GiB [0xfffc0000, 4G) on a 6 GiB PC: up to 2.6.26 the direct map
    covers every e820 range (init_memory_mapping(0, end_pfn_map << PAGE_SHIFT)); 2.6.27-3.8 [0,
    e820_end_of_low_ram_pfn()) and [4G, max_pfn); 3.9+ the E820_RAM ranges only. The RAM is
    mapped in every era."""
    for kernel, rom_mapped in (("2.6.24", True), ("3.8", False), ("3.9", False), ("6.6", False)):
        k = boot(arch="x86_64", ram="6G", kernel=kernel)
        po = k.layout["PAGE_OFFSET"]
        assert (k.pgtable.walk(k.pgd, po + 0xFFFC0000).phys is not None) == rom_mapped, kernel
        assert k.pgtable.walk(k.pgd, po + 0xC0000000).phys is None, kernel  # the MMIO hole
        for pa in (0x9F000, 3 * GiB - PAGE, 4 * GiB, 7 * GiB - PAGE):
            assert k.pgtable.walk(k.pgd, po + pa).phys == pa, (kernel, hex(pa))
        k.check_invariants()
