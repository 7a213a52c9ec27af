"""Random sequences of valid and invalid kernel calls, with injected allocation failures
(hypothesis state machines), on every registered arch.

Each step is one call of the kernel model's API with arguments drawn from both sides:
sizes, addresses, orders and pages that make sense, and ones that do not (negative, huge,
unaligned, floats, strings, None, exited processes, freed areas, double frees, unknown
names). Some steps run with the N-th page or slab allocation made to fail. After every
step:

- a call either succeeds or raises one of mmemu's own errors (a TypeError, KeyError or
  struct.error is a bug: the user gets no clear message);
- a call that raised (other than the oops and the SIGSEGV, which are the kernel's answers)
  left the kernel exactly as it was (mmemu.testing.kernel_state, RAM included on the 64 MiB
  machines);
- the kernel's invariants hold.

MMEMU_STATEFUL_EXAMPLES (default 6) and MMEMU_STATEFUL_STEPS (default 40) size the runs.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import mmemu
from mmemu.errors import MmemuError, Oops, SegmentationFault
from mmemu.plugins import default
from mmemu.testing import kernel_state

PAGE = 4096
EXAMPLES = int(os.environ.get("MMEMU_STATEFUL_EXAMPLES", "6"))
STEPS = int(os.environ.get("MMEMU_STATEFUL_STEPS", "40"))

#: values that are wrong for any integer argument (the kernel model must say so)
GARBAGE = st.sampled_from([None, 1.5, "0x1000", b"\x00", True, [4096], -1, -4096, 1 << 70])
SIZES = st.one_of(st.integers(1, 12 * PAGE), st.sampled_from([0, -PAGE, 1 << 40, 1 << 62]), GARBAGE)
PROTS = st.one_of(st.sampled_from([0, 1, 3, 5, 7]), st.sampled_from([8, 0x10, -1, 1 << 40]), GARBAGE)


class FailureMachine(RuleBasedStateMachine):
    SPEC: dict = {}

    def __init__(self):
        super().__init__()
        self.k = mmemu.boot(**self.SPEC)
        self.ram = self.k.mem.size <= 64 << 20
        self.vmallocs: list[int] = []
        self.kmallocs: list[int] = []
        self.pages: list = []
        self.procs: list = []
        self.dead: list = []
        self.mappings: list[tuple[object, int]] = []  # (process, address)

    def teardown(self):
        self.k.close()

    # -- one call, checked ------------------------------------------------------------------

    def call(self, fn, *args, inject=None, **kwargs):
        k = self.k
        before = kernel_state(k, self.ram)
        if inject is not None:
            k.inject_failures(**{inject[0]: inject[1]})
        try:
            return fn(*args, **kwargs)
        except (Oops, SegmentationFault):
            return None
        except MmemuError:
            k.stop_injecting()
            assert kernel_state(k, self.ram) == before, f"{fn.__name__}{args}: a failed call changed the kernel"
            return None
        finally:
            k.stop_injecting()

    @invariant()
    def invariants_hold(self):
        self.k.check_invariants()

    # -- the rules --------------------------------------------------------------------------

    injection = st.one_of(st.none(), st.tuples(st.sampled_from(["page", "slab"]), st.integers(1, 6)))

    @rule(size=SIZES, inject=injection, zero=st.booleans())
    def vmalloc(self, size, inject, zero):
        v = self.call(self.k.vzalloc if zero else self.k.vmalloc, size, inject=inject)
        if v is not None:
            self.vmallocs.append(v)

    @rule(i=st.integers(0, 50), bad=st.one_of(st.none(), GARBAGE, st.integers(0, 1 << 64)))
    def vfree(self, i, bad):
        if bad is None and self.vmallocs:
            v = self.vmallocs.pop(i % len(self.vmallocs))
            self.call(self.k.vfree, v)
            self.call(self.k.vfree, v)  # the second one is a double free: a warning, nothing changes
        else:
            self.call(self.k.vfree, bad)

    @rule(size=SIZES, inject=injection)
    def kmalloc(self, size, inject):
        a = self.call(self.k.kmalloc, size, inject=inject)
        if a:
            self.kmallocs.append(a)

    @rule(i=st.integers(0, 50), double=st.booleans(), bad=st.one_of(st.none(), GARBAGE))
    def kfree(self, i, double, bad):
        if bad is None and self.kmallocs:
            a = self.kmallocs.pop(i % len(self.kmallocs))
            self.call(self.k.kfree, a)
            if double:
                self.call(self.k.kfree, a)
        elif bad is not None:
            self.call(self.k.kfree, bad)

    @rule(order=st.one_of(st.integers(0, 3), st.sampled_from([-1, 11, 99]), GARBAGE),
          zone=st.sampled_from(["Normal", "HighMem", "DMA", "nowhere", 3]), inject=injection)
    def alloc_pages(self, order, zone, inject):
        p = self.call(self.k.alloc_pages, order, zone, inject=inject)
        if p is not None:
            self.pages.append(p)

    @rule(i=st.integers(0, 50), double=st.booleans(), bad=st.one_of(st.none(), GARBAGE, st.integers(0, 1 << 30)))
    def free_pages(self, i, double, bad):
        if bad is None and self.pages:
            p = self.pages.pop(i % len(self.pages))
            self.call(self.k.free_page_block, p)
            if double:
                self.call(self.k.free_page_block, p)
        elif bad is not None:
            self.call(self.k.free_page_block, bad)

    @rule(i=st.integers(0, 50), bad=st.one_of(st.none(), GARBAGE))
    def kmap(self, i, bad):
        if bad is None and self.pages:
            p = self.pages[i % len(self.pages)]
            if self.call(self.k.kmap, p) is not None:
                self.call(self.k.kunmap, p)
        else:
            self.call(self.k.kmap, bad)

    @rule(inject=injection, comm=st.sampled_from(["sh", "", None, 5]))
    def create_process(self, inject, comm):
        if len(self.procs) < 4:
            p = self.call(self.k.create_process, comm, inject=inject)
            if p is not None:
                self.procs.append(p)

    @rule(i=st.integers(0, 50), inject=injection, dead=st.booleans())
    def fork(self, i, inject, dead):
        if dead and self.dead:
            self.call(self.k.fork, self.dead[i % len(self.dead)])
        elif self.procs and len(self.procs) < 4:
            c = self.call(self.k.fork, self.procs[i % len(self.procs)], inject=inject)
            if c is not None:
                self.procs.append(c)

    @rule(i=st.integers(0, 50))
    def exit(self, i):
        if self.procs:
            p = self.procs.pop(i % len(self.procs))
            self.call(self.k.exit_mm, p)
            self.dead.append(p)
            self.mappings = [(q, a) for q, a in self.mappings if q is not p]
            self.call(self.k.exit_mm, p)  # twice: refused

    def _proc(self, i, dead):
        pool = self.dead if dead and self.dead else self.procs
        return pool[i % len(pool)] if pool else None

    @rule(i=st.integers(0, 50), length=SIZES, prot=PROTS, dead=st.booleans(),
          addr=st.one_of(st.none(), st.integers(-PAGE, 1 << 48), GARBAGE),
          flags=st.sampled_from([0x22, 0x21, 0x32, 0x23, 0x02, 0x1022, "x"]), inject=injection)
    def mmap(self, i, length, prot, dead, addr, flags, inject):
        p = self._proc(i, dead)
        if p is not None:
            a = self.call(self.k.mmap, p, length, prot, addr, flags, inject=inject)
            if a is not None and not dead:
                self.mappings.append((p, a))

    @rule(i=st.integers(0, 50), j=st.integers(0, 50), length=SIZES, wild=st.one_of(st.none(), GARBAGE,
                                                                                 st.integers(-1 << 12, 1 << 64)))
    def munmap(self, i, j, length, wild):
        if self.mappings:
            p, a = self.mappings[j % len(self.mappings)]
            self.call(self.k.munmap, p, a if wild is None else wild, length)

    @rule(j=st.integers(0, 50), length=SIZES, prot=PROTS, inject=injection)
    def mprotect(self, j, length, prot, inject):
        if self.mappings:
            p, a = self.mappings[j % len(self.mappings)]
            self.call(self.k.mprotect, p, a, length, prot, inject=inject)

    @rule(i=st.integers(0, 50), delta=st.one_of(st.integers(-8 * PAGE, 8 * PAGE), GARBAGE), inject=injection)
    def brk(self, i, delta, inject):
        p = self._proc(i, False)
        if p is not None:
            new = p.brk + delta if isinstance(delta, int) and not isinstance(delta, bool) else delta
            self.call(self.k.brk, p, new, inject=inject)

    @rule(j=st.integers(0, 50), off=st.integers(0, 16 * PAGE), access=st.sampled_from(["read", "write", "exec",
                                                                                        "rw", 3]),
          user=st.booleans(), inject=injection, wild=st.one_of(st.none(), st.integers(0, 1 << 64), GARBAGE))
    def access(self, j, off, access, user, inject, wild):
        if self.mappings:
            p, a = self.mappings[j % len(self.mappings)]
            self.call(self.k.access, a + off if wild is None else wild, access, user, p, inject=inject)

    @rule(j=st.integers(0, 50), data=st.one_of(st.binary(min_size=1, max_size=3 * PAGE), GARBAGE), inject=injection)
    def write(self, j, data, inject):
        if self.mappings:
            p, a = self.mappings[j % len(self.mappings)]
            self.call(self.k.write, a, data, True, p, inject=inject)

    @rule(j=st.integers(0, 50), data=st.one_of(st.binary(min_size=1, max_size=2 * PAGE), GARBAGE), off=st.integers(-PAGE, 8 * PAGE),
          inject=injection)
    def install(self, j, data, off, inject):
        if self.mappings:
            p, a = self.mappings[j % len(self.mappings)]
            self.call(self.k.install_user_pages, p, a + off, data, inject=inject)

    @rule(slot=st.integers(-2, 40), phys=st.one_of(st.integers(-1, 1 << 60), GARBAGE), i=st.integers(0, 50))
    def fixmap(self, slot, phys, i):
        names = [n for n, _ in self.k.layout.fixmap if not n.startswith("__")]
        if not names:
            return
        idx = names[slot % len(names)] if slot >= 0 else slot
        if self.pages and phys == 0:
            phys = self.pages[i % len(self.pages)].phys
        if self.call(self.k.set_fixmap, idx, phys) is not None:
            self.call(self.k.clear_fixmap, idx)


def _machines():
    out = []
    for name in default()[1].names():
        arch = default()[1].get(name)
        first = arch.conformance_machines()[0]
        out.append((name, {**first, "arch": name, "ram": "64M"}))
    out.append(("i386-highmem", {"arch": "i386", "kernel": "3.10", "ram": "1G"}))
    return out


@pytest.mark.parametrize("name,spec", _machines(), ids=[n for n, _ in _machines()])
def test_random_valid_and_invalid_calls_with_injected_failures(name, spec):
    machine = type(f"Failures_{name}", (FailureMachine,), {"SPEC": spec})
    test = machine.TestCase
    test.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=True,
                             suppress_health_check=list(HealthCheck))
    test("runTest").runTest()
