"""x86's kernel page-table dump as each era of arch/x86/mm/dump_pagetables.c prints it.

The texts below are the kernel's, read in (mmemu_x86.ptdump_eras has the full list):

- 2.6.32 (leemgs/OptimusOneKernel-KandroidCommunity at bb7be218), 3.10.100
  (bananafunction/android_kernel_samsung_gts2 at e725ef69), 3.18.140
  (linckandrea/android-msm-sawshark-3.18 at 3d45f9af): ``level_name[] = { "cr3", "pgd", "pud",
  "pmd", "pte" }``; printk_prot() prints 26 blanks for "Not present", else USR/RW|ro/PWT/PCD,
  then ``PSE `` at level <= 3 or ``pat `` at the pte level ("Bit 9 has a different meaning on
  level 3 vs 4"), GLB, NX|x; markers "User Space", x86_64 "Kernel Space" at
  0x8000000000000000UL, ..., "End Modules" (no fixmap marker), i386 "Kernel Mapping",
  "vmalloc() Area", "vmalloc() End", "Persisent kmap() Area", "Fixmap Area";
  walk_pgd_level() walks every pgd entry and notes an empty or large one at level 1, "pgd";
  debugfs_create_file("kernel_page_tables", ...).
- the 3.19..4.2 PAT column, ``pat `` (lower case), quoted as the context of Toshi Kani's
  "x86/mm: Fix page table dump to show PAT bit" (linux-mm, 2015-08-05), which makes it ``PAT ``;
  4.4.186 (eurekadevelopment/Eureka-Kernel-Exynos7885-Q-R-S at 3c5abbea): ``PAT ``, 30 blanks,
  "Persistent kmap() Area", "EFI Runtime Services", still "Fixmap Area" on i386 and none on
  x86_64.
- a 4.20..5.5-era text (code index file id 8282932669) and the 5.4-series
  Inkypen79/android_kernel_qcom_sm8350-xiaomi at 9be71c9c: level names { "cr3", "pgd", "p4d",
  "pud", "pmd", "pte" } with the top still noted at level 1 ("pgd"), 32-bit "Fixmap area" and
  "CPU entry area", x86_64 "Fixmap Area", ``!(pr & _PAGE_PRESENT)``, effective_prot().
- 5.6+: mm/ptdump.c's walker (holes at the lowest folded level, the guard hole skipped), the
  6.x text the golden files and README already pin.
"""

from __future__ import annotations

import re

import pytest

import mmemu
from mmemu.cli import main
from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec
from mmemu.plugins import default
from mmemu.render.ptdump import ptdump

_, REGISTRY = default()


def fmt(arch: str, kernel: str, **options):
    a = REGISTRY.get(arch)
    return a.ptdump_format(a.layout(MachineSpec.make(arch, kernel=kernel, ram="1G", options=options)))


def markers(arch: str, kernel: str, **options) -> list[str]:
    return [name for _addr, name, _n in fmt(arch, kernel, **options).markers]


@pytest.fixture(scope="module")
def dumps():
    """One boot per (arch, kernel) the tests read, dumped once."""
    cache = {}

    def get(arch: str, kernel: str, ram: str = "1G", **options) -> list[str]:
        key = (arch, kernel, ram, tuple(sorted(options.items())))
        if key not in cache:
            k = mmemu.boot(arch=arch, kernel=kernel, ram=ram, options=options)
            try:
                cache[key] = ptdump(k).splitlines()
            finally:
                k.close()
        return cache[key]
    return get


# -- the flag block of printk_prot() ------------------------------------------------------------------------------

# a pte with _PAGE_PRESENT | _PAGE_RW | _PAGE_PWT | bit 7 (_PAGE_PAT in a pte) | _PAGE_GLOBAL
PTE_PAT = 0x1 | 0x2 | 0x8 | 0x80 | 0x100
# a 2 MiB pmd with _PAGE_PSE and bit 12 (_PAGE_PAT_LARGE)
PMD_PAT = 0x1 | 0x2 | 0x80 | 0x100 | 0x1000


@pytest.mark.parametrize("kernel,pte,pmd", [
    # until 3.18: one slot, PSE above the pte level, pat at it; _PAGE_PAT_LARGE is not shown
    ("2.6.25", "    RW PWT     pat GLB x  pte", "    RW         PSE GLB x  pmd"),
    ("3.18", "    RW PWT     pat GLB x  pte", "    RW         PSE GLB x  pmd"),
    # 3.19: a column of its own, lower case
    ("3.19", "    RW PWT         pat GLB x  pte", "    RW         PSE pat GLB x  pmd"),
    ("4.2", "    RW PWT         pat GLB x  pte", "    RW         PSE pat GLB x  pmd"),
    # 4.3: "Change also to show the PAT bit as "PAT" to be consistent with other bits"
    ("4.4", "    RW PWT         PAT GLB x  pte", "    RW         PSE PAT GLB x  pmd"),
    ("6.6", "    RW PWT         PAT GLB x  pte", "    RW         PSE PAT GLB x  pmd"),
])
def test_printk_prot_of_each_era(kernel, pte, pmd):
    f = fmt("i386_pae", kernel)
    assert f.prot_text(PTE_PAT, 4) == pte
    assert f.prot_text(PMD_PAT, 3) == pmd


def test_not_present_is_26_blanks_before_the_pat_column_and_30_after():
    assert fmt("i386", "3.18").prot_text(0, 4) == " " * 26 + "pte"
    assert fmt("i386", "3.19").prot_text(0, 4) == " " * 30 + "pte"


def test_not_present_until_4_14_means_a_zero_entry():
    """``if (!pgprot_val(prot))`` until 4.14: a PAGE_NONE pte (not present, non-zero) was decoded
    as flags; 4.15's "Check PAGE_PRESENT for real" prints it as not present."""
    page_none = 0x100 | 0x20  # _PAGE_PROTNONE (the global bit) | _PAGE_ACCESSED
    assert fmt("i386", "4.14").prot_text(page_none, 4) == "    ro                 GLB x  pte"
    assert fmt("i386", "4.15").prot_text(page_none, 4) == " " * 30 + "pte"


def test_effective_protection_from_4_17():
    """note_page(new_prot, new_eff) from 4.17: effective_prot() keeps RW/USR of every level and
    NX of any; PAE's pgd counts as USR|RW while the file walks the tables itself."""
    old, new, modern = fmt("i386_pae", "4.16"), fmt("i386_pae", "4.17"), fmt("i386_pae", "6.6")
    pdpte, pmd = 0x1, 0x1 | 0x2 | 0x4
    assert old.effective(0, pdpte, None) == 0 and old.effective(3, pmd, 0) == 0
    assert new.effective(0, pdpte, None) == 0x4 | 0x2
    assert new.effective(3, pmd, 0x6) == 0x6
    assert modern.effective(0, pdpte, None) == 0x1  # mm/ptdump.c: the pgd's own bits


# -- markers -----------------------------------------------------------------------------------------------------

def test_i386_markers_of_each_era():
    assert markers("i386", "3.10") == ["User Space", "Kernel Mapping", "vmalloc() Area", "vmalloc() End",
                                       "Persisent kmap() Area", "Fixmap Area"]  # the kernel's own typo
    assert markers("i386", "4.4")[4:] == ["Persistent kmap() Area", "Fixmap Area"]
    assert markers("i386", "6.6")[-1] == "Fixmap area"


def test_x86_64_markers_of_each_era():
    old = fmt("x86_64", "3.10")
    assert [n for _a, n, _l in old.markers] == ["User Space", "Kernel Space", "Low Kernel Mapping", "vmalloc() Area",
                                                "Vmemmap", "High Kernel Mapping", "Modules", "End Modules"]
    assert old.markers[1][0] == 0x8000000000000000  # { 0x8000000000000000UL, "Kernel Space" }
    assert "Fixmap Area" not in markers("x86_64", "4.14")
    assert "EFI Runtime Services" in markers("x86_64", "4.4")
    assert markers("x86_64", "4.15")[-1] == "Fixmap Area"
    assert ("ESPfix Area", 16) in [(n, lines) for _a, n, lines in fmt("x86_64", "4.4").markers]


def test_debugfs_file_of_each_era(capsys):
    assert fmt("x86_64", "4.14").debugfs == "/sys/kernel/debug/kernel_page_tables"
    assert fmt("i386", "4.15").debugfs == "/sys/kernel/debug/page_tables/kernel"
    assert main(["ptdump", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "/sys/kernel/debug/page_tables/kernel (4.15 and later" in text
    assert "/sys/kernel/debug/kernel_page_tables from 2.6.25 to 4.14, none before" in text


# -- whole dumps ----------------------------------------------------------------------------------------------------

def test_i386_3_10_names_the_top_level_pgd(dumps):
    """walk_pgd_level() notes the 2-level directory's empty and 4 MiB entries at level 1."""
    lines = dumps("i386", "3.10")
    assert lines[:3] == ["---[ User Space ]---",
                         "0x00000000-0xc0000000           3G                           pgd",
                         "---[ Kernel Mapping ]---"]
    assert any(re.fullmatch(r"0xc[0-9a-f]{7}-0x[0-9a-f]{8} +\d+[KMG]     RW         PSE GLB x  pgd", l) for l in lines)
    line = re.compile(r"(---\[ .+ \]---|0x[0-9a-f]{8}-0x[0-9a-f]{8}   [ \d]{8}\d[KMG] "
                      r"((USR |    )(RW |ro )(PWT |    )(PCD |    )(PSE |pat |    )(GLB |    )(NX |x  )| {26})(pgd|pte))")
    assert all(line.fullmatch(l) for l in lines), [l for l in lines if not line.fullmatch(l)]
    assert [l for l in lines if l.startswith("---")][-2:] == ["---[ Persisent kmap() Area ]---",
                                                             "---[ Fixmap Area ]---"]
    assert lines[-1].startswith("0xff") and "-0x00000000 " in lines[-1]  # the flush at address 0


def test_i386_6_6_keeps_the_generic_walkers_pmd(dumps):
    assert dumps("i386", "6.6")[1] == "0x00000000-0xc0000000           3G                               pmd"


def test_pae_3_10_top_level_is_pgd(dumps):
    lines = dumps("i386_pae", "3.10")
    assert lines[1] == "0x00000000-0xc0000000           3G                           pgd"
    assert {l.split()[-1] for l in lines if l.startswith("0x")} <= {"pgd", "pmd", "pte"}


def test_x86_64_3_10_walks_the_guard_hole(dumps):
    """Every pgd entry is walked: the user half ends where the first kernel-half entry passes the
    'Kernel Space' marker, and the hypervisor's hole is the 8T pgd range before PAGE_OFFSET."""
    lines = dumps("x86_64", "3.10")
    assert lines[:5] == [
        "---[ User Space ]---",
        "0x0000000000000000-0xffff800000000000    16777088T                           pgd",
        "---[ Kernel Space ]---",
        "0xffff800000000000-0xffff880000000000           8T                           pgd",
        "---[ Low Kernel Mapping ]---"]
    assert "---[ Fixmap Area ]---" not in lines
    assert {l.split()[-1] for l in lines if l.startswith("0x")} == {"pgd", "pud", "pmd", "pte"}


def test_x86_64_5_5_and_5_6(dumps):
    """5.5 still walks every pgd entry and names empty ones pgd; 5.6's mm/ptdump.c walker skips
    the guard hole and notes the holes of a 4-level table at the folded p4d."""
    old, new = dumps("x86_64", "5.5"), dumps("x86_64", "5.6")
    assert old[1] == "0x0000000000000000-0xffff800000000000    16777088T                               pgd"
    assert old[3] == "0xffff800000000000-0xffff880000000000           8T                               pgd"
    assert new[1] == "0x0000000000000000-0xffff880000000000    16777096T                               p4d"
    assert not any(l.startswith("0xffff8000") for l in new)
    assert "---[ Fixmap Area ]---" in old and "---[ Fixmap Area ]---" in new


def test_x86_64_5_level_before_5_6_names_every_level(dumps):
    lines = dumps("x86_64", "4.17", levels="5")
    assert lines[1] == "0x0000000000000000-0xff00000000000000       16320P                               pgd"
    assert {l.split()[-1] for l in lines if l.startswith("0x")} >= {"pgd", "p4d", "pud", "pmd", "pte"}


# -- no dump before 2.6.25 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["i386", "i386_pae", "x86_64"])
def test_no_dump_before_2_6_25(arch, capsys):
    with pytest.raises(ConfigError, match="came in 2.6.25"):
        fmt(arch, "2.6.24")
    assert main(["ptdump", "--arch", arch, "--kernel", "2.6.24", "--ram", "1G"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"mmemu: error: {arch} kernel 2.6.24 has no kernel page-table dump: arch/x86/mm/dump_pagetables.c "
                   "(/sys/kernel/debug/kernel_page_tables, CONFIG_X86_PTDUMP) came in 2.6.25\n")
    assert "Traceback" not in err


def test_every_arch_still_renders(capsys):
    """riscv64's and arm64's dumps (their own plugins' formats) are untouched by x86's eras."""
    for name in REGISTRY.names():
        assert main(["ptdump", "--arch", name, "--ram", "1G"]) == 0, name
        out = capsys.readouterr().out
        assert out.startswith("---[ ") and "0x" in out, name


@pytest.mark.parametrize("kernel,split", [("4.16", False), ("4.17", True)])
def test_a_read_only_pmd_splits_the_dump_from_4_17(kernel, split):
    """From 4.17 a range ends where the effective rights change although the ptes are alike:
    clear RW in the PAE pmd above a run of direct-map ptes and the 4.17 dump breaks at both of
    its ends (its ptes, still "RW" themselves, are read-only through it); 4.16 prints one range.
    The PDPTE above counts as USR|RW (CONFIG_X86_PAE in ptdump_walk_pgd_level_core), and the
    folded p4d/pud hand that value down unchanged (walk_p4d_level/walk_pud_level)."""
    k = mmemu.boot(arch="i386_pae", kernel=kernel, ram="1G", cmdline="nopse")
    try:
        va = k.layout["PAGE_OFFSET"] + (256 << 20)
        pmd = k.walk(va).steps[1]
        assert pmd.level.name == "pmd" and pmd.raw & 0x2
        k.pgtable.set_entry(pmd.table, 1, pmd.index, pmd.raw & ~0x2, writer="test")
        starts = {line.split("-")[0] for line in ptdump(k).splitlines() if line.startswith("0x")}
    finally:
        k.close()
    assert (f"0x{va:08x}" in starts and f"0x{va + (2 << 20):08x}" in starts) == split
