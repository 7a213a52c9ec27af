"""The eras of x86's kernel page-table dump, arch/x86/mm/dump_pagetables.c.

What changed in the text a user reads, release by release (each rule with the text it was
read in; "read" names a tree whose Makefile gives the release):

- 2.6.25: the file appears (Arjan van de Ven, ``(C) Copyright 2008 Intel Corporation``),
  ``/sys/kernel/debug/kernel_page_tables``. No dump before.
- until 3.18: ``printk_prot()`` prints USR, RW/ro, PWT, PCD, then one slot that is ``PSE`` at
  the pgd/pud/pmd levels and ``pat`` at the pte level ("Bit 9 has a different meaning on
  level 3 vs 4"), GLB, NX/x; a not-present range prints 26 blanks. Read in 2.6.32
  (leemgs/OptimusOneKernel-KandroidCommunity at bb7be218), 3.10.100
  (bananafunction/android_kernel_samsung_gts2 at e725ef69) and 3.18.140
  (linckandrea/android-msm-sawshark-3.18 at 3d45f9af).
- 3.19: a PAT column of its own after PSE, printed ``pat `` (lower case), 30 blanks when not
  present. The text is quoted as the context of Toshi Kani's "x86/mm: Fix page table dump to
  show PAT bit" (linux-mm, 2015-08-05, against 4.2-rc); absent from 3.18.140 (read). 3.19 is
  the release of Juergen Gross's PAT rework that brought it (the merge release is not
  verified here).
- 4.3: ``PAT `` in upper case ("Change also to show the PAT bit as "PAT" to be consistent
  with other bits", the same patch, merged for 4.3: not verified here); read in 4.4.186
  (eurekadevelopment/Eureka-Kernel-Exynos7885-Q-R-S at 3c5abbea).
- 4.4.186 (read) also spells the i386 marker ``Persistent kmap() Area`` (``Persisent`` in
  3.18.140, read) and has x86_64's ``EFI Runtime Services`` marker (absent from 3.18.140);
  the releases in between are not read: both are taken from 4.4.
- 4.15: the markers become designated initializers (``[FIXADDR_START_NR] = { ...,
  "Fixmap area" }`` on 32-bit, "CPU entry area"; x86_64 gains "Fixmap Area", "CPU entry
  Area", "LDT remap"), read in a 4.20..5.5-era text (code index file id 8282932669) and in
  Inkypen79/android_kernel_qcom_sm8350-xiaomi at 9be71c9c (an sm8350 tree, the 5.4 series;
  its Makefile is not stored); x86_64's
  "Fixmap Area" is in the real 4.18 dump of REFERENCE-OUTPUTS.md B.2 and absent from 4.4.186.
  printk_prot tests ``!(pr & _PAGE_PRESENT)`` instead of ``!pgprot_val(prot)`` ("x86/mm/
  dump_pagetables: Check PAGE_PRESENT for real", Thomas Gleixner, the 4.15 PTI series).
- 4.17: note_page() also breaks a range when the effective protection (RW/USR of every
  level, NX of any) changes (Jan Beulich, "x86/mm: Consider effective protection attributes
  in W+X check"; absent from 4.4.186, present in the 5.x-era text: the release is not
  verified here); PAE's pgd counts as USR|RW (a PDPTE has neither bit).
- until 5.5 the file walks the page tables itself: walk_pgd_level notes an empty or large
  top-level entry at its level 1, ``pgd``, whatever is folded into it (x86_64 4-level, 2-level
  i386, PAE), and it walks every pgd entry: the user half ends where the first kernel-half
  entry (0xffff800000000000) passes the ``Kernel Space`` marker at 1UL << 63, then the
  hypervisor's guard hole follows as part of an empty pgd range (is_hypervisor_range()
  notes it empty).
- 5.6: x86 uses the generic walker of mm/ptdump.c (Steven Price, "x86: mm: convert
  dump_pagetables to use walk_page_range"): holes are noted at the lowest folded level
  (``p4d``/``pmd``), and ptdump_ranges[] skips the guard hole (GUARD_HOLE_END_ADDR).
"""

from __future__ import annotations

from mmemu.eras import EraTable, Feature, Variant

_READ_OLD = ("read in 2.6.32 (leemgs/OptimusOneKernel-KandroidCommunity bb7be218), 3.10.100 "
             "(bananafunction/android_kernel_samsung_gts2 e725ef69), 3.18.140 (linckandrea/android-msm-sawshark-3.18 "
             "3d45f9af)")
_READ_44 = "read in 4.4.186 (eurekadevelopment/Eureka-Kernel-Exynos7885-Q-R-S 3c5abbea)"

#: arch/x86/mm/dump_pagetables.c, by release
X86_PTDUMP = EraTable(
    Feature("ptdump", since="2.6.25",
            source="arch/x86/mm/dump_pagetables.c: added in 2.6.25 (Arjan van de Ven, '(C) Copyright 2008 Intel "
                   "Corporation', debugfs kernel_page_tables, CONFIG_X86_PTDUMP); no kernel page-table dump before"),
    Variant("flag_block", [("2.6.25", "pse_slot"), ("3.19", "pat_lower"), ("4.3", "pat_upper")],
            source="printk_prot(): until 3.18 one slot, 'PSE ' at levels <= 3 (pgd/pud/pmd), 'pat ' at the pte level, "
                   "and 26 blanks when not present (" + _READ_OLD + "); 3.19 a PAT column, 'pat ' for a pte's "
                   "_PAGE_PAT or a pud/pmd's _PAGE_PAT_LARGE, 30 blanks (quoted in Toshi Kani's 'x86/mm: Fix page "
                   "table dump to show PAT bit', 2015-08-05; the merge release of the column is not verified); 4.3 "
                   "'PAT ' (that patch; " + _READ_44 + ")"),
    Variant("not_present_test", [("2.6.25", "zero"), ("4.15", "present_bit")],
            source="printk_prot(): 'if (!pgprot_val(prot)) /* Not present */' (" + _READ_OLD + "; " + _READ_44 + "), "
                   "'if (!(pr & _PAGE_PRESENT))' from 'x86/mm/dump_pagetables: Check PAGE_PRESENT for real' (4.15)"),
    Variant("pkmap_marker", [("2.6.25", "Persisent kmap() Area"), ("4.4", "Persistent kmap() Area")],
            source="address_markers[] (CONFIG_X86_32, CONFIG_HIGHMEM): the kernel's own typo 'Persisent' ("
                   + _READ_OLD + "), 'Persistent' in 4.4.186 (read); the release of the fix (3.19..4.4) is not read"),
    Variant("fixmap_marker_32", [("2.6.25", "Fixmap Area"), ("4.15", "Fixmap area")],
            source="address_markers[] (CONFIG_X86_32): 'Fixmap Area' (" + _READ_OLD + "; " + _READ_44 + "), "
                   "'[FIXADDR_START_NR] = { 0UL, \"Fixmap area\" }' with 'CPU entry area' from the 4.15 rework "
                   "('x86/mm/dump_pagetables: Make the address hints correct and readable')"),
    Feature("fixmap_marker_64", since="4.15",
            source="address_markers[] (CONFIG_X86_64): no fixmap marker until 4.14 (" + _READ_OLD + "; " + _READ_44
                   + "); '[FIXADDR_START_NR] = { FIXADDR_START, \"Fixmap Area\" }' from the 4.15 rework, in the real "
                   "4.18 dump of REFERENCE-OUTPUTS.md B.2"),
    Feature("efi_marker", since="4.4",
            source="address_markers[] (CONFIG_X86_64, CONFIG_EFI): '{ EFI_VA_END, \"EFI Runtime Services\" }' in "
                   "4.4.186 (read), absent from 3.18.140 (read); the release between is not read. It predates the "
                   "'Persistent' spelling and the upper-case 'PAT ': a dump_pagetables.c with the marker, 'pat ' "
                   "and 'Persisent' was read (Huawei-Dev/android_kernel_huawei_btv fec2e05a; the Makefile stored "
                   "for that repo, at another commit, says 4.4.117, so the file's release is not confirmed)"),
    Feature("effective_prot", since="4.17",
            source="note_page(new_prot, new_eff): 'prot != cur || new_eff != eff || ...' and effective_prot() "
                   "(Jan Beulich, 'x86/mm: Consider effective protection attributes in W+X check'; absent from "
                   "4.4.186, read in 5.4-series text (Inkypen79/android_kernel_qcom_sm8350-xiaomi 9be71c9c); the "
                   "release 4.17 is not verified here); CONFIG_X86_PAE's pgd "
                   "counts as _PAGE_USER | _PAGE_RW"),
    Variant("walker", [("2.6.25", "arch"), ("5.6", "generic")],
            source="until 5.5 walk_pgd_level()/ptdump_walk_pgd_level_core() of dump_pagetables.c: the top level is "
                   "'pgd' (level 1) whatever folds into it, every pgd entry is walked and the hypervisor's hole is "
                   "noted empty (is_hypervisor_range); 5.6 (Steven Price, 'x86: mm: convert dump_pagetables to use "
                   "walk_page_range') mm/ptdump.c's walker: holes at the lowest folded level, ptdump_ranges[] skips "
                   "the guard hole"),
)
