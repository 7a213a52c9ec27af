"""`mmemu layout --format mm.rst` and `--format dmesg`: the kernel's own texts about its
layout, per era, against the kernel's files and printk formats quoted below (the values a
user would compare side by side).

Sources (read through the project's code search):

- Documentation/arch/x86/x86_64/mm.rst, torvalds/linux 03c601927b67 (6.x): the two tables
  quoted in MM_RST_4LEVEL and MM_RST_5LEVEL (identical in the 5.4 mm.rst, torvalds/linux
  2cc2c3cb54de, but for its 'yeste' typos outside the tables).
- Documentation/x86/x86_64/mm.txt of 4.20 (koverstreet/bcachefs f85789606c8c): the same
  table, not indented, its title between two '=' lines.
- Documentation/x86/x86_64/mm.txt of 4.14 (openSUSE/kernel 3af7e7092e23) and
  Documentation/x86_64/mm.txt of 2.6.24 (torvalds/linux 0889eba5b38f) and 2.6.11
  (Aiden-Dong/linux-2.6.11.12-study): the plain lists.
- arch/x86/mm/init_32.c mem_init() of 2.6.24 (0x88888888/Linux2.6.24-comments), 4.19
  (codebymian/Astro_sm8250-4.19-S20) and 5.4 (Inkypen79/android_kernel_qcom_sm8350-xiaomi):
  the printk quoted in MEM_INIT_2_6_24 / MEM_INIT_4_15; arch/i386/mm/init.c of 2.6.18
  (bronson/linux-2.6.18.8-ovz-xen: no block) and of 2.6.23 (lfd/PreemptRT: the block);
  "x86/mm/init_32: Stop printing the virtual memory layout" (Arvind Sankar, 2020-02-29,
  kernel-hardening list) for its removal in 5.7.
"""

from __future__ import annotations

import pytest

from mmemu.cli import main
from mmemu.errors import ConfigError
from mmemu.layout import MachineSpec
from mmemu.plugins import default

_, REGISTRY = default()


def layout(arch="x86_64", kernel="6.6", ram="1G", **options):
    return REGISTRY.get(arch).layout(MachineSpec.make(arch, kernel, ram, options=options))


def text(fmt, arch="x86_64", kernel="6.6", ram="1G", **options):
    return REGISTRY.get(arch).layout_text(layout(arch, kernel, ram, **options), fmt)


# ---- mm.rst ------------------------------------------------------------------------------

# Documentation/arch/x86/x86_64/mm.rst (6.x): the part both tables share, after their
# "Identical layout to the 56-bit (47-bit) one from here on" line
MM_RST_COMMON = """\
                    |            |                  |         |
   fffffc0000000000 |   -4    TB | fffffdffffffffff |    2 TB | ... unused hole
                    |            |                  |         | vaddr_end for KASLR
   fffffe0000000000 |   -2    TB | fffffe7fffffffff |  0.5 TB | cpu_entry_area mapping
   fffffe8000000000 |   -1.5  TB | fffffeffffffffff |  0.5 TB | ... unused hole
   ffffff0000000000 |   -1    TB | ffffff7fffffffff |  0.5 TB | %esp fixup stacks
   ffffff8000000000 | -512    GB | ffffffeeffffffff |  444 GB | ... unused hole
   ffffffef00000000 |  -68    GB | fffffffeffffffff |   64 GB | EFI region mapping space
   ffffffff00000000 |   -4    GB | ffffffff7fffffff |    2 GB | ... unused hole
   ffffffff80000000 |   -2    GB | ffffffff9fffffff |  512 MB | kernel text mapping, mapped to physical address 0
   ffffffff80000000 |-2048    MB |                  |         |
   ffffffffa0000000 |-1536    MB | fffffffffeffffff | 1520 MB | module mapping space
   ffffffffff000000 |  -16    MB |                  |         |
      FIXADDR_START | ~-11    MB | ffffffffff5fffff | ~0.5 MB | kernel-internal fixmap range, variable size and offset
   ffffffffff600000 |  -10    MB | ffffffffff600fff |    4 kB | legacy vsyscall ABI
   ffffffffffe00000 |   -2    MB | ffffffffffffffff |    2 MB | ... unused hole
  __________________|____________|__________________|_________|___________________________________________________________
"""

# Documentation/arch/x86/x86_64/mm.rst (6.x), "Complete virtual memory map with 4-level page tables"
MM_RST_4LEVEL = """\
  ========================================================================================================================
      Start addr    |   Offset   |     End addr     |  Size   | VM area description
  ========================================================================================================================
                    |            |                  |         |
   0000000000000000 |    0       | 00007fffffffffff |  128 TB | user-space virtual memory, different per mm
  __________________|____________|__________________|_________|___________________________________________________________
                    |            |                  |         |
   0000800000000000 | +128    TB | ffff7fffffffffff | ~16M TB | ... huge, almost 64 bits wide hole of non-canonical
                    |            |                  |         |     virtual memory addresses up to the -128 TB
                    |            |                  |         |     starting offset of kernel mappings.
  __________________|____________|__________________|_________|___________________________________________________________
                                                              |
                                                              | Kernel-space virtual memory, shared between all processes:
  ____________________________________________________________|___________________________________________________________
                    |            |                  |         |
   ffff800000000000 | -128    TB | ffff87ffffffffff |    8 TB | ... guard hole, also reserved for hypervisor
   ffff880000000000 | -120    TB | ffff887fffffffff |  0.5 TB | LDT remap for PTI
   ffff888000000000 | -119.5  TB | ffffc87fffffffff |   64 TB | direct mapping of all physical memory (page_offset_base)
   ffffc88000000000 |  -55.5  TB | ffffc8ffffffffff |  0.5 TB | ... unused hole
   ffffc90000000000 |  -55    TB | ffffe8ffffffffff |   32 TB | vmalloc/ioremap space (vmalloc_base)
   ffffe90000000000 |  -23    TB | ffffe9ffffffffff |    1 TB | ... unused hole
   ffffea0000000000 |  -22    TB | ffffeaffffffffff |    1 TB | virtual memory map (vmemmap_base)
   ffffeb0000000000 |  -21    TB | ffffebffffffffff |    1 TB | ... unused hole
   ffffec0000000000 |  -20    TB | fffffbffffffffff |   16 TB | KASAN shadow memory
  __________________|____________|__________________|_________|____________________________________________________________
                                                              |
                                                              | Identical layout to the 56-bit one from here on:
  ____________________________________________________________|____________________________________________________________
""" + MM_RST_COMMON

# the same file, "Complete virtual memory map with 5-level page tables"
MM_RST_5LEVEL = """  ========================================================================================================================
      Start addr    |   Offset   |     End addr     |  Size   | VM area description
  ========================================================================================================================
                    |            |                  |         |
   0000000000000000 |    0       | 00ffffffffffffff |   64 PB | user-space virtual memory, different per mm
  __________________|____________|__________________|_________|___________________________________________________________
                    |            |                  |         |
   0100000000000000 |  +64    PB | feffffffffffffff | ~16K PB | ... huge, still almost 64 bits wide hole of non-canonical
                    |            |                  |         |     virtual memory addresses up to the -64 PB
                    |            |                  |         |     starting offset of kernel mappings.
  __________________|____________|__________________|_________|___________________________________________________________
                                                              |
                                                              | Kernel-space virtual memory, shared between all processes:
  ____________________________________________________________|___________________________________________________________
                    |            |                  |         |
   ff00000000000000 |  -64    PB | ff0fffffffffffff |    4 PB | ... guard hole, also reserved for hypervisor
   ff10000000000000 |  -60    PB | ff10ffffffffffff | 0.25 PB | LDT remap for PTI
   ff11000000000000 |  -59.75 PB | ff90ffffffffffff |   32 PB | direct mapping of all physical memory (page_offset_base)
   ff91000000000000 |  -27.75 PB | ff9fffffffffffff | 3.75 PB | ... unused hole
   ffa0000000000000 |  -24    PB | ffd1ffffffffffff | 12.5 PB | vmalloc/ioremap space (vmalloc_base)
   ffd2000000000000 |  -11.5  PB | ffd3ffffffffffff |  0.5 PB | ... unused hole
   ffd4000000000000 |  -11    PB | ffd5ffffffffffff |  0.5 PB | virtual memory map (vmemmap_base)
   ffd6000000000000 |  -10.5  PB | ffdeffffffffffff | 2.25 PB | ... unused hole
   ffdf000000000000 |   -8.25 PB | fffffbffffffffff |   ~8 PB | KASAN shadow memory
  __________________|____________|__________________|_________|____________________________________________________________
                                                              |
                                                              | Identical layout to the 47-bit one from here on:
  ____________________________________________________________|____________________________________________________________
""" + MM_RST_COMMON

# Where mmemu's machine is not the document's. (1) mm.rst lists the KASAN shadow
# (KASAN_SHADOW_START..END, arch/x86/include/asm/kasan.h); mmemu's kernels are built without
# CONFIG_KASAN, so that range is part of the unused hole before the "Identical layout" line
# (KASAN_SHADOW_END, fffffc0000000000, where mm.rst draws it). (2) mm.rst writes FIXADDR_START
# and "~0.5 MB" for a fixmap of "variable size and offset"; mmemu prints its machine's.
KASAN_4 = """   ffffeb0000000000 |  -21    TB | ffffebffffffffff |    1 TB | ... unused hole
   ffffec0000000000 |  -20    TB | fffffbffffffffff |   16 TB | KASAN shadow memory
"""
NO_KASAN_4 = """   ffffeb0000000000 |  -21    TB | fffffbffffffffff |   17 TB | ... unused hole
"""
KASAN_5 = """   ffd6000000000000 |  -10.5  PB | ffdeffffffffffff | 2.25 PB | ... unused hole
   ffdf000000000000 |   -8.25 PB | fffffbffffffffff |   ~8 PB | KASAN shadow memory
"""
NO_KASAN_5 = """   ffd6000000000000 |  -10.5  PB | fffffbffffffffff |  ~10 PB | ... unused hole
"""
FIXMAP_DOC = "      FIXADDR_START | ~-11    MB | ffffffffff5fffff | ~0.5 MB | kernel-internal fixmap range"


def _machine(doc: str, kasan: str, no_kasan: str, fixmap: str) -> str:
    assert kasan in doc and FIXMAP_DOC in doc
    return doc.replace(kasan, no_kasan).replace(FIXMAP_DOC, fixmap)


def test_mm_rst_4level_is_the_kernels_table():
    out = text("mm.rst")
    title = "Complete virtual memory map with 4-level page tables"
    assert out.startswith(title + "\n" + "=" * len(title) + "\n\n")
    # 6.6's FIXADDR_START on this machine: 0xffffffffff57c000, 0xa84000 (10.5 MB) below the top
    expected = _machine(MM_RST_4LEVEL, KASAN_4, NO_KASAN_4,
                        "   ffffffffff57c000 | ~-11    MB | ffffffffff5fffff |  528 kB | kernel-internal fixmap range")
    assert out.split("\n", 3)[3] == expected


def test_mm_rst_5level_is_the_kernels_table():
    out = text("mm.rst", levels="5")
    assert out.startswith("Complete virtual memory map with 5-level page tables\n")
    expected = _machine(MM_RST_5LEVEL, KASAN_5, NO_KASAN_5,
                        "   ffffffffff57c000 | ~-11    MB | ffffffffff5fffff |  528 kB | kernel-internal fixmap range")
    assert out.split("\n", 3)[3] == expected


def test_no5lvl_gives_the_4level_table():
    # arch/x86/boot/compressed/pgtable_64.c (4.17+): "no5lvl" boots a 5-level kernel 4-level
    lay = REGISTRY.get("x86_64").layout(MachineSpec.make("x86_64", "6.6", "1G", cmdline="no5lvl",
                                                         options={"levels": "5"}))
    assert "with 4-level page tables" in REGISTRY.get("x86_64").layout_text(lay, "mm.rst")


def _unindent(block: str) -> str:
    return "".join(line[2:] + "\n" for line in block.splitlines())


def test_mm_txt_of_4_20_is_the_table_unindented():
    out = text("mm.rst", kernel="4.20")
    title = "Complete virtual memory map with 4-level page tables"
    assert out.startswith("=" * len(title) + "\n" + title + "\n" + "=" * len(title) + "\n\n")
    # mm.txt of 4.20 is mm.rst's table at column 0 (4.20's FIXADDR_START: 0xffffffffff57a000, 536 kB)
    expected = (_unindent(MM_RST_4LEVEL).replace(_unindent(KASAN_4), _unindent(NO_KASAN_4))
                .replace(FIXMAP_DOC[2:], " ffffffffff57a000 | ~-11    MB | ffffffffff5fffff |  536 kB | "
                                         "kernel-internal fixmap range"))
    assert out.split("\n", 4)[4] == expected


def test_mm_txt_of_4_20_5level():
    out = text("mm.rst", kernel="4.20", levels="5").splitlines()
    assert out[:3] == ["=" * 52, "Complete virtual memory map with 5-level page tables", "=" * 52]
    # 4.20's mm.txt had this row as "0000800000000000 |  +64    PB | ffff7fffffffffff | ~16K PB",
    # a mistake 89502a019790 ("x86/mm: Fix the 56-bit addresses memory map in
    # Documentation/x86/x86_64/mm.txt", 5.2-rc) corrected to what the 56-bit map is:
    assert (" 0100000000000000 |  +64    PB | feffffffffffffff | ~16K PB | ... huge, still almost 64 bits "
            "wide hole of non-canonical") in out


@pytest.mark.parametrize("kernel,form", [("5.2", "mm.txt"), ("5.3", "mm.rst"), ("6.6", "mm.rst")])
def test_the_file_form_of_the_era(kernel, form):
    out = text("mm.rst", kernel=kernel)
    table = next(line for line in out.splitlines() if line.lstrip().startswith("Start addr"))
    assert table.startswith("  " if form == "mm.rst" else "    Start addr")
    assert table.startswith("      Start addr") == (form == "mm.rst")


def test_sizes_and_offsets_in_mm_rst_units():
    out = text("mm.rst", ram="4G")
    # the RAM does not change the map; the units are mm.rst's: 0.5 TB, 444 GB, 1520 MB, 512 MB
    assert "|  0.5 TB | LDT remap for PTI" in out
    assert "| -119.5  TB | ffffc87fffffffff |   64 TB |" in out
    assert "| -512    GB | ffffffeeffffffff |  444 GB |" in out
    assert "|-1536    MB | fffffffffeffffff | 1520 MB | module mapping space" in out


# Documentation/x86/x86_64/mm.txt of 4.14 (4-level part, openSUSE/kernel 3af7e7092e23)
MM_TXT_4_14 = """Virtual memory map with 4 level page tables:

0000000000000000 - 00007fffffffffff (=47 bits) user space, different per mm
hole caused by [47:63] sign extension
ffff800000000000 - ffff87ffffffffff (=43 bits) guard hole, reserved for hypervisor
ffff880000000000 - ffffc7ffffffffff (=64 TB) direct mapping of all phys. memory
ffffc80000000000 - ffffc8ffffffffff (=40 bits) hole
ffffc90000000000 - ffffe8ffffffffff (=45 bits) vmalloc/ioremap space
ffffe90000000000 - ffffe9ffffffffff (=40 bits) hole
ffffea0000000000 - ffffeaffffffffff (=40 bits) virtual memory map (1TB)
... unused hole ...
ffffec0000000000 - fffffbffffffffff (=44 bits) kasan shadow memory (16TB)
... unused hole ...
ffffff0000000000 - ffffff7fffffffff (=39 bits) %esp fixup stacks
... unused hole ...
ffffffef00000000 - fffffffeffffffff (=64 GB) EFI region mapping space
... unused hole ...
ffffffff80000000 - ffffffff9fffffff (=512 MB)  kernel text mapping, from phys 0
ffffffffa0000000 - [fixmap start]   (~1526 MB) module mapping space (variable)
[fixmap start]   - ffffffffff5fffff kernel-internal fixmap range
ffffffffff600000 - ffffffffff600fff (=4 kB) legacy vsyscall ABI
ffffffffffe00000 - ffffffffffffffff (=2 MB) unused hole
"""


def test_mm_txt_list_of_4_14():
    out = text("mm.rst", kernel="4.14")
    # No KASAN (one "... unused hole ..." where the list has the shadow between two); the
    # document writes "[fixmap start]" for the 4.14 fixmap that MODULES_END follows
    # (pgtable_64_types.h 4.12-4.14: MODULES_END = __fix_to_virt(__end_of_fixed_addresses + 1)):
    # mmemu prints that machine's addresses.
    expected = (MM_TXT_4_14
                .replace("... unused hole ...\nffffec0000000000 - fffffbffffffffff (=44 bits) kasan shadow memory (16TB)\n", "")
                .replace("ffffffffa0000000 - [fixmap start]   (~1526 MB) module mapping space (variable)\n"
                         "[fixmap start]   - ffffffffff5fffff kernel-internal fixmap range\n",
                         "ffffffffa0000000 - ffffffffff1fdfff (~1522 MB) module mapping space\n"
                         "ffffffffff578000 - ffffffffff5fffff (=544 kB) kernel-internal fixmap range\n"))
    assert out == expected


def test_mm_txt_list_of_4_15_pti():
    lines = text("mm.rst", kernel="4.15").splitlines()
    # Documentation/x86/x86_64/mm.txt with PTI (4.15; read in a 4.14.y tree with the PTI backport,
    # RobGries/96b_4.14_kernel, and in a 4.19 tree, realme_Smart_TV_80CM-kernel-source): these
    # four lines, in this order, after the "... unused hole ..." that follows vmemmap
    doc = ["\t\t\t\t    vaddr_end for KASLR",
           "fffffe0000000000 - fffffe7fffffffff (=39 bits) cpu_entry_area mapping",
           "fffffe8000000000 - fffffeffffffffff (=39 bits) LDT remap for PTI",
           "ffffff0000000000 - ffffff7fffffffff (=39 bits) %esp fixup stacks"]
    i = lines.index(doc[0])
    assert lines[i - 1] == "... unused hole ..." and lines[i:i + 4] == doc


def test_mm_txt_list_of_4_14_5level_header():
    out = text("mm.rst", kernel="4.14", levels="5")
    lines = out.splitlines()
    # mm.txt (4.14): the 5-level list
    assert lines[:4] == ["Virtual memory map with 5 level page tables:", "",
                         "0000000000000000 - 00ffffffffffffff (=56 bits) user space, different per mm",
                         "hole caused by [56:63] sign extension"]
    assert "ff00000000000000 - ff0fffffffffffff (=52 bits) guard hole, reserved for hypervisor" in lines
    assert "ff10000000000000 - ff8fffffffffffff (=55 bits) direct mapping of all phys. memory" in lines
    assert "ffd4000000000000 - ffd5ffffffffffff (=49 bits) virtual memory map (512TB)" in lines


def test_mm_txt_list_of_3_16():
    lines = text("mm.rst", kernel="3.16").splitlines()
    # Documentation/x86/x86_64/mm.txt with the %esp fixup stacks (3.16; torvalds/linux
    # 04d9765bd22e): its first twelve lines as the document has them. After them the document
    # still lists the 8 MB "vsyscalls" of 3.15 and keeps the EFI region out of the list (in
    # its text); mmemu lists the machine: the EFI region, the fixmap, the one vsyscall page.
    assert lines[:13] == [
        "Virtual memory map with 4 level page tables:", "",
        "0000000000000000 - 00007fffffffffff (=47 bits) user space, different per mm",
        "hole caused by [48:63] sign extension",
        "ffff800000000000 - ffff87ffffffffff (=43 bits) guard hole, reserved for hypervisor",
        "ffff880000000000 - ffffc7ffffffffff (=64 TB) direct mapping of all phys. memory",
        "ffffc80000000000 - ffffc8ffffffffff (=40 bits) hole",
        "ffffc90000000000 - ffffe8ffffffffff (=45 bits) vmalloc/ioremap space",
        "ffffe90000000000 - ffffe9ffffffffff (=40 bits) hole",
        "ffffea0000000000 - ffffeaffffffffff (=40 bits) virtual memory map (1TB)",
        "... unused hole ...",
        "ffffff0000000000 - ffffff7fffffffff (=39 bits) %esp fixup stacks",
        "... unused hole ..."]
    assert "ffffffffff600000 - ffffffffff600fff (=4 kB) legacy vsyscall ABI" in lines


def test_mm_txt_list_of_2_6_24():
    lines = text("mm.rst", kernel="2.6.24").splitlines()
    # Documentation/x86_64/mm.txt (2.6.24): these lines as the document has them
    doc = ["Virtual memory map with 4 level page tables:", "",
           "0000000000000000 - 00007fffffffffff (=47 bits) user space, different per mm",
           "hole caused by [48:63] sign extension",
           "ffff800000000000 - ffff80ffffffffff (=40 bits) guard hole",
           "ffff810000000000 - ffffc0ffffffffff (=46 bits) direct mapping of all phys. memory",
           "ffffc10000000000 - ffffc1ffffffffff (=40 bits) hole",
           "ffffc20000000000 - ffffe1ffffffffff (=45 bits) vmalloc/ioremap space",
           "ffffe20000000000 - ffffe2ffffffffff (=40 bits) virtual memory map (1TB)",
           "... unused hole ..."]
    assert lines[:len(doc)] == doc
    # the document ends the kernel text at ffffffff82800000 (exclusive) and the modules at
    # fffffffffff00000 (MODULES_END, over the fixmap: "x86-64: fix overlap of modules and fixmap
    # areas", 2.6.27); mmemu writes inclusive ends and stops the module area at the fixmap
    assert lines[len(doc)] == "ffffffff80000000 - ffffffff827fffff (=40 MB)   kernel text mapping, from phys 0"
    assert lines[len(doc) + 1] == "... unused hole ..."
    assert lines[len(doc) + 2].startswith("ffffffff88000000 - ")


def test_mm_txt_list_of_2_6_11_style():
    lines = text("mm.rst", kernel="2.6.12").splitlines()
    # Documentation/x86_64/mm.txt (2.6.11): "(=47bits)", the sign-extension hole on the user line
    assert lines[2] == ("0000000000000000 - 00007fffffffffff (=47bits) user space, different per mm "
                        "hole caused by [48:63] sign extension")
    assert lines[3] == "ffff800000000000 - ffff80ffffffffff (=40bits) guard hole"
    assert lines[4] == "ffff810000000000 - ffffc0ffffffffff (=46bits) direct mapping of phys. memory"
    assert lines[5] == "ffffc10000000000 - ffffc1ffffffffff (=40bits) hole"
    assert lines[6] == "ffffc20000000000 - ffffe1ffffffffff (=45bits) vmalloc/ioremap space"


def test_mm_txt_direct_map_of_2_6_27():
    # Documentation/x86/x86_64/mm.txt (2.6.27 .. 2.6.30), quoted in mmemu_x86_64.layout:
    # "ffff880000000000 - ffffc0ffffffffff (=57 TB) direct mapping of all phys. memory"
    assert ("ffff880000000000 - ffffc0ffffffffff (=57 TB) direct mapping of all phys. memory"
            in text("mm.rst", kernel="2.6.27").splitlines())


# ---- dmesg -------------------------------------------------------------------------------

# arch/x86/mm/init_32.c mem_init() (2.6.24 .. 4.14; arch/i386/mm/init.c 2.6.19 .. 2.6.23)
MEM_INIT_2_6_24 = ("virtual kernel memory layout:\n"
                   "    fixmap  : 0x%08lx - 0x%08lx   (%4ld kB)\n"
                   "    pkmap   : 0x%08lx - 0x%08lx   (%4ld kB)\n"
                   "    vmalloc : 0x%08lx - 0x%08lx   (%4ld MB)\n"
                   "    lowmem  : 0x%08lx - 0x%08lx   (%4ld MB)\n"
                   "      .init : 0x%08lx - 0x%08lx   (%4ld kB)\n"
                   "      .data : 0x%08lx - 0x%08lx   (%4ld kB)\n"
                   "      .text : 0x%08lx - 0x%08lx   (%4ld kB)\n")
# 4.15 .. 5.6: the cpu_entry line after fixmap
MEM_INIT_4_15 = MEM_INIT_2_6_24.replace("(%4ld kB)\n", "(%4ld kB)\n  cpu_entry : 0x%08lx - 0x%08lx   (%4ld kB)\n", 1)


def _printk(fmt, s, cpu_entry):
    """The printk's arguments as mem_init() passes them, from the layout's symbols."""
    args = [s["FIXADDR_START"], s["FIXADDR_TOP"], (s["FIXADDR_TOP"] - s["FIXADDR_START"]) >> 10]
    if cpu_entry:
        base = s["CPU_ENTRY_AREA_BASE"]
        args += [base, base + s["CPU_ENTRY_AREA_MAP_SIZE"], s["CPU_ENTRY_AREA_MAP_SIZE"] >> 10]
    pk = s["PKMAP_BASE"]
    args += [pk, pk + s["LAST_PKMAP"] * 4096, (s["LAST_PKMAP"] * 4096) >> 10,
             s["VMALLOC_START"], s["VMALLOC_END"], (s["VMALLOC_END"] - s["VMALLOC_START"]) >> 20,
             s["PAGE_OFFSET"], s["high_memory"], (s["high_memory"] - s["PAGE_OFFSET"]) >> 20,
             s["__init_begin"], s["__init_end"], (s["__init_end"] - s["__init_begin"]) >> 10,
             s["_etext"], s["_edata"], (s["_edata"] - s["_etext"]) >> 10,
             s["_text"], s["_etext"], (s["_etext"] - s["_text"]) >> 10]
    return fmt % tuple(args)


@pytest.mark.parametrize("arch,kernel,ram", [("i386", "2.6.19", "512M"), ("i386", "2.6.24", "2G"),
                                             ("i386", "3.10", "1G"), ("i386_pae", "4.14", "8G"),
                                             ("i386", "4.15", "3G"), ("i386_pae", "5.6", "2G")])
def test_dmesg_is_mem_init_printk(arch, kernel, ram):
    lay = layout(arch, kernel, ram)
    cpu_entry = lay.kernel >= "4.15"
    assert REGISTRY.get(arch).layout_text(lay, "dmesg") == \
        _printk(MEM_INIT_4_15 if cpu_entry else MEM_INIT_2_6_24, lay.symbols, cpu_entry)


def test_dmesg_of_a_3x_machine_with_1g():
    out = text("dmesg", "i386", "3.10", "1G").splitlines()
    # sizes truncated as the kernel does (>> 20): high_memory - PAGE_OFFSET is 0x377fe000,
    # 887.99 MB, printed 887. The vmalloc and lowmem lines are those of the real boot log quoted
    # in https://unix.stackexchange.com/questions/5124 (a PAE kernel with 2 GiB whose pkmap area
    # also starts at 0xff800000: "vmalloc : 0xf7ffe000 - 0xff7fe000   ( 120 MB)", "lowmem  :
    # 0xc0000000 - 0xf77fe000   ( 887 MB)")
    assert out[2:5] == ["    pkmap   : 0xff800000 - 0xffc00000   (4096 kB)",
                        "    vmalloc : 0xf7ffe000 - 0xff7fe000   ( 120 MB)",
                        "    lowmem  : 0xc0000000 - 0xf77fe000   ( 887 MB)"]


def test_dmesg_cpu_entry_from_4_15():
    assert not any("cpu_entry" in line for line in text("dmesg", "i386", "4.14", "1G").splitlines())
    line = text("dmesg", "i386", "4.15", "1G").splitlines()[2]
    assert line.startswith("  cpu_entry : 0x")


@pytest.mark.parametrize("kernel,why", [("2.6.18", "after 2.6.18"), ("2.6.12", "after 2.6.18"),
                                        ("5.7", "removed it in 5.7"), ("6.6", "removed it in 5.7")])
def test_dmesg_where_the_kernel_printed_none(kernel, why):
    with pytest.raises(ConfigError, match=why):
        text("dmesg", "i386", kernel, "1G")


def test_formats_the_arch_never_had():
    with pytest.raises(ConfigError, match="x86_64 never printed"):
        text("dmesg")
    with pytest.raises(ConfigError, match="maps x86_64 only"):
        text("mm.rst", "i386_pae", "3.10", "2G")
    for arch in ("riscv64", "arm64"):
        for fmt in ("mm.rst", "dmesg"):
            with pytest.raises(ConfigError, match=f"--format {fmt}: arch {arch} has no such text"):
                text(fmt, arch, "6.6", "1G")


# ---- the CLI -------------------------------------------------------------------------------

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_formats(capsys):
    code, out, _ = run(capsys, "layout", "--arch", "i386", "--kernel", "3.10", "--ram", "1G", "--format", "dmesg")
    assert code == 0 and out.startswith("virtual kernel memory layout:\n    fixmap  : 0x")
    code, out, _ = run(capsys, "layout", "--format", "mm.rst")
    assert code == 0 and out.startswith("Complete virtual memory map with 4-level page tables\n")
    code, out, _ = run(capsys, "layout", "--format", "json")
    assert code == 0 and out.startswith("{")


@pytest.mark.parametrize("argv,message", [
    (("--format", "dmesg"), "x86_64 never printed"),
    (("--json", "--format", "mm.rst"), "--json and --format mm.rst"),
    (("--format", "ptdump"), "invalid choice: 'ptdump'"),
    (("--arch", "i386", "--kernel", "6.6", "--format", "dmesg"), "removed it in 5.7"),
])
def test_cli_bad_format_is_one_line_error(capsys, argv, message):
    code, out, err = run(capsys, "layout", *argv)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
