"""mmemu's conformance suite (mmemu.testing) on the machines Arm64Arch.conformance_machines()
lists: both VA sizes, the three linker-script eras of swapper_pg_dir, blocks and pages."""

from mmemu.testing import ConformanceSuite


class TestArm64(ConformanceSuite):
    arch = "arm64"
