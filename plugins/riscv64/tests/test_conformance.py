"""mmemu's conformance suite (mmemu.testing) on riscv64, on every machine of
Riscv64Arch.conformance_machines(): Sv39/Sv48/Sv57, 1 GiB / 2 MiB / 4 KiB linear maps, an era
with vmalloc_fault. The eras before the kernel page-table dump (5.7), which the suite's CLI
check prints, run every other check here: 4.15 (no fixmap, the linear map and the image
read-write-execute) and 5.4."""

import random

import pytest

import mmemu
from mmemu import testing
from mmemu.testing import ConformanceSuite


class TestRiscv64Conformance(ConformanceSuite):
    arch = "riscv64"


@pytest.mark.parametrize("kernel,ram", [("4.15", "512M"), ("5.4", "1G")])
def test_eras_before_ptdump(kernel, ram):
    from mmemu.layout import MachineSpec
    from mmemu_riscv64 import ARCH

    spec = MachineSpec.make("riscv64", kernel, ram, options={"mmu": "sv39"})
    testing.check_codec(ARCH.paging(spec), dict(ARCH.pgprots(spec)), random.Random(1), 200)
    for check in (lambda k: (k.check_invariants(), testing.check_direct_map(k, random.Random(1)),
                             testing.check_image(k)),
                  testing.check_vmalloc, testing.check_processes,
                  lambda k: [testing.check_runs(k, mmu) for mmu in ("cpu", "plugin")],
                  lambda k: testing.check_agreement(k, random.Random(2), 600)):
        k = mmemu.boot(arch="riscv64", kernel=kernel, ram=ram)
        try:
            check(k)
        finally:
            k.close()
