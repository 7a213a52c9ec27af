"""Per-cpu areas (mm/percpu.c) and module per-cpu data (kernel/module.c percpu_modalloc).

The referees: real kernels' boot lines (``percpu: Embedded ...`` / ``pcpu-alloc:`` as
dmesg printed them on x86_64, i386 and arm64 machines) for the unit sizes, the per-cpu
segment of the emulated CPU (the example module reads its variable through %gs / %fs, so
Unicorn computes the address, not mmemu), and RAM read through the direct map.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmemu.errors import ModuleError
from mmemu.kernel.percpu import PERCPU_MODULE_RESERVE, pcpu_build_alloc_info
from mmemu.testing import kernel_state

BUILD = Path(__file__).resolve().parent.parent / "examples" / "modules" / "build"


def percpu_obj(arch: str, era: str) -> bytes:
    return (BUILD / f"{'x86_64' if arch == 'x86_64' else 'i386'}-{era}" / "percpu.o").read_bytes()


@pytest.mark.parametrize("static,reserved,dyn,atom,cpus,line", [
    # x86_64, 4 CPUs (a 3.x/4.x distribution kernel): "PERCPU: Embedded 34 pages/cpu
    # @ffff8803ffc00000 s98392 r8192 d32680 u524288", "pcpu-alloc: ... alloc=1*2097152"
    (98392, 8192, 28 << 10, 2 << 20, 4, "percpu: Embedded 34 pages/cpu s98392 r8192 d32680 u524288"),
    # i386, 2 CPUs: "percpu: Embedded 14 pages/cpu @c3f1b000 s25048 r8192 d24104 u57344", alloc=14*4096
    (25048, 8192, 20 << 10, 4096, 2, "percpu: Embedded 14 pages/cpu s25048 r8192 d24104 u57344"),
    # arm64, 2 CPUs: "percpu: Embedded 20 pages/cpu s43416 r8192 d30312 u81920", alloc=20*4096
    (43416, 8192, 28 << 10, 4096, 2, "percpu: Embedded 20 pages/cpu s43416 r8192 d30312 u81920"),
])
def test_unit_sizes_are_those_real_kernels_printed(static, reserved, dyn, atom, cpus, line):
    info = pcpu_build_alloc_info(static, reserved, dyn, atom, cpus)
    assert info.embedded() == line
    assert info.alloc_size // info.atom_size == {2 << 20: 1}.get(atom, info.unit_size // 4096)


@pytest.mark.parametrize("arch,era,cpus", [("x86_64", "6.6", 2), ("x86_64", "3.10", 3), ("i386", "4.19", 2),
                                           ("i386_pae", "5.10", 3)])
def test_a_module_per_cpu_variable_has_one_copy_per_cpu(arch, era, cpus, boot):
    """The example adds 1 to its variable through the per-cpu segment on CPU 0 and prints
    it: 41 there, the initial 40 (percpu_modcopy) in every other CPU's copy; nothing of
    the section in the module's own memory; rmmod gives the reserved space back."""
    k = boot(arch=arch, kernel=era, ram="1G", cpus=cpus)
    before = dict(k.pcpu.areas)
    mod = k.load_module(percpu_obj(arch, era), "percpu.o")
    assert mod.section_address(".data..percpu") is None
    assert mod.percpu_size == 4
    static = k.pcpu.info.static_size
    if arch == "x86_64":  # zero-based: the first reserved byte is the offset after the static area
        assert mod.percpu == static
    else:  # relative to __per_cpu_start, vmlinux's link address of the section
        assert mod.percpu == k.plan.percpu.static_start + static
    assert f"percpu: pcpu_hits = 41 on this CPU, per-cpu pointer {mod.percpu:x}" in k.dmesg()
    copies = [k.per_cpu_ptr(mod.percpu, cpu) for cpu in range(cpus)]
    assert len(set(copies)) == cpus
    assert [int.from_bytes(k.read(va, 4), "little") for va in copies] == [41] + [40] * (cpus - 1)
    for cpu, va in enumerate(copies):  # in the direct map, inside the CPU's unit
        assert k.virt_to_phys(va) == k.pcpu.base_phys + cpu * k.pcpu.info.unit_size + static
    k.check_invariants()
    k.delete_module("percpu")
    assert "percpu: pcpu_hits = 41 at exit" in k.dmesg()
    assert k.pcpu.areas == before
    k.check_invariants()


def test_the_first_chunk_is_memblock_memory_of_each_cpu(boot):
    k = boot(arch="x86_64", kernel="6.1", ram="1G", cpus=4)
    info = k.pcpu.info
    assert info.embedded() == "percpu: Embedded 61 pages/cpu s212992 r8192 d28672 u524288"
    assert k.pcpu.base_phys % (2 << 20) == 0  # the atom: PMD_SIZE on x86_64
    for cpu in range(4):
        pfn = (k.pcpu.base_phys + cpu * info.unit_size) >> 12
        assert k.frames.page(pfn).state == "reserved"
        assert k.frames.page(pfn + (info.size_sum >> 12)).state != "reserved"  # the tail went back
    assert [k.per_cpu_offset(c) for c in range(4)] == [k.pcpu.base + c * info.unit_size for c in range(4)]


def test_a_full_reserved_region_fails_the_load_and_changes_nothing(boot):
    k = boot(arch="x86_64", kernel="6.6", ram="1G", cpus=2)
    k.alloc_reserved_percpu(PERCPU_MODULE_RESERVE - 2, 4)  # rounds up to the whole region
    state = kernel_state(k)
    with pytest.raises(ModuleError, match=r"^percpu: Could not allocate 4 bytes percpu data$") as e:
        k.load_module(percpu_obj("x86_64", "6.6"), "percpu.o")
    assert e.value.errno == 12
    assert kernel_state(k) == state and k.modules == []


def test_two_modules_get_two_places(boot):
    k = boot(arch="i386_pae", kernel="6.6", ram="1G", cpus=2)
    data = percpu_obj("i386_pae", "6.6")
    a = k.load_module(data, "percpu.o")
    b = k.load_module(data.replace(b"name=percpu", b"name=percpv"), "percpv.o")
    assert b.percpu == a.percpu + 4
    assert int.from_bytes(k.read(k.per_cpu_ptr(b.percpu, 0), 4), "little") == 41


def test_a_up_kernel_has_no_per_cpu_area_and_the_section_is_module_data(boot):
    """kernel/module.c without CONFIG_SMP: find_pcpusec finds nothing, the section is laid
    out and copied like any data (i386 with NR_CPUS=1 is a UP kernel)."""
    k = boot(arch="i386", kernel="6.6", ram="1G")
    assert k.pcpu is None
    mod = k.load_module(percpu_obj("i386", "6.6"), "percpu.o", run_init=False)
    assert mod.percpu is None
    addr = mod.section_address(".data..percpu")
    assert addr is not None and int.from_bytes(k.read(addr, 4), "little") == 40
