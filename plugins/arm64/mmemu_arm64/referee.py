"""The walker's reading of an abort, the test-time referee of QEMU's syndrome.

The adapter takes a fault from the syndrome (ESR) and address (FAR) QEMU built for the abort
(cpustate.py). This module reads the same abort independently, the way a CPU with no
syndrome would have to: the address from the faulting instruction (decode.py: capstone and
the registers; for a prefetch abort the PC), the kind of fault and its level from mmemu's
walker over the tables the CPU translated with (a translation, access-flag or permission
fault, a level 0 translation fault outside both TTBRs' ranges), and the ESR from the codec.
With :attr:`Arm64Adapter.walker_referee` on (the plugin's tests), every abort is read both
ways and a disagreement stops the run with an error naming both.
"""

from __future__ import annotations

from mmemu.errors import MmemuError
from mmemu.faults import NOT_PRESENT, PROTECTION, Fault

from .decode import Decoder

PAGE = 4096


class Referee:
    """The walker's reading of the aborts of one adapter's CPU."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.kernel = adapter.kernel
        self.codec = adapter.codec
        self.decoder = Decoder()
        self._code = None  # (code generation, TTBR0) the decodes are good for

    def check(self, intno: int, fault: Fault, pc: int, x, el: int) -> None:
        """Raise MmemuError if the walker reads this abort otherwise than *fault* (QEMU's)."""
        mine = self.fault(intno, pc, x, el)
        if isinstance(mine, str) or (mine.address, mine.access, mine.user, mine.kind, mine.level, mine.code) != \
                (fault.address, fault.access, fault.user, fault.kind, fault.level, fault.code):
            raise MmemuError(f"arm64 abort at pc {pc:#x}: QEMU's syndrome says {fault!r} (level {fault.level}), "
                             f"the walker {mine!r}" + ("" if isinstance(mine, str) else f" (level {mine.level})"))

    def fault(self, intno: int, pc: int, x, el: int) -> Fault | str:
        """The fault of a data abort (intno 4) or prefetch abort (3) at *pc*, given the CPU's
        xregs[] *x* and EL: what the walker finds, or why it cannot tell."""
        if intno == 3:  # instruction abort: the PC is the fetch address
            return self._fault([pc], "exec", el == 0)
        acc = self._decode(pc)
        if acc is None:
            return "an instruction that is not a load or store"
        addr = acc.address_x(x)
        return self._fault(acc.parts(addr), acc.access, el == 0, acc.unprivileged)

    def _decode(self, pc: int):
        # the decodes are good while the code behind the PC is: the kernel's code generation
        # and the user half of the address space (TTBR0)
        key = (self.kernel.code_generation, self.adapter.ttbr0)
        if key != self._code:
            self.decoder.clear()
            self._code = key
        acc = self.decoder.cache.get(pc)
        return acc if acc is not None else self.decoder.at(pc, self._read_code)

    def _read_code(self, pc: int) -> bytes:
        k = self.kernel
        root = k.pgd if k.paging.in_kernel_root(pc) else self.adapter.ttbr0
        w = k.pgtable.walk(root, pc)
        if w.phys is None:
            return b""
        return k.mem.read(w.phys, 4)

    def _refused(self, addr: int, access: str, user: bool, el0_rights: bool = False) -> Fault | None:
        """The fault the tables give this access: a translation, access-flag or permission
        fault, a level 0 translation fault outside both halves; None when they allow it."""
        k = self.kernel
        ad = self.adapter
        top = addr >> ad.va_bits
        if top == 0:
            root = ad.ttbr0
        elif top == ad.upper:
            root = k.pgd
        else:  # outside TTBR0's and TTBR1's ranges: a level 0 translation fault
            f = Fault(addr, access, user, NOT_PRESENT, level=0)
            f.code = self.codec.fault_code(f) & ~3
            return f
        f = k.pgtable.walk(root, addr).fault(access, user or el0_rights)
        if f is not None and el0_rights and not user:
            # LDTR/STTR at EL1: EL0's permissions, the syndrome of the current EL
            f.user = False
            f.code = self.codec.fault_code(f)
        return f

    def _fault(self, parts: list[int], access: str, user: bool, el0_rights: bool = False) -> Fault:
        """The fault the MMU raised on the first of *parts* the tables refuse, or, when they
        allow them all now, the permission fault of a stale TLB entry on the first."""
        for addr in parts:
            f = self._refused(addr, access, user, el0_rights)
            if f is not None:
                return f
        k = self.kernel
        addr = parts[0]
        root = k.pgd if k.paging.in_kernel_root(addr) else self.adapter.ttbr0
        f = Fault(addr, access, user, PROTECTION, level=len(k.pgtable.walk(root, addr).steps) - 1)
        f.code = self.codec.fault_code(f)
        return f
