"""The state every part of the emulated kernel shares: the machine, the master page table,
the direct mapping's arithmetic, the era, the event stream and the TLB flushes.

:class:`KernelBase` is built in one place (:func:`mmemu.kernel.boot.boot_kernel`) from what
the arch says; every attribute below is set there, before any service is initialised, so
that the services (one mixin each) depend on this shared state only, never on each other's
initialisation.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING

from ..errors import AddressError, KernelBug, MmemuError, Oops, SegmentationFault
from ..events import MappingEvent, RecentEvents
from ..journal import FaultInjection, Journal
from ..pagetable import EntryWrite
from ..plugins import live_hookimpls
from ..units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    import pluggy

    from ..arch import Arch, BootPlan, EntryCodec, PagingMode
    from ..buddy import FrameAllocator
    from ..eras import Era
    from ..layout import Layout, MachineSpec
    from ..pagetable import PageTables, Walk
    from ..physmem import PhysMem
    from .process import Process



def need_int(value, what: str, minimum: int | None = None) -> int:
    """*value* as an int, or a MmemuError naming the argument and what it should be (a
    bool, a float, a string are refused, before anything changes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MmemuError(f"{what} must be an int, not {type(value).__name__} ({value!r})")
    if minimum is not None and value < minimum:
        raise MmemuError(f"{what} must be at least {minimum}, not {value}")
    return value


#: the wrapper :func:`operation` makes, written once: ``{params}`` is the operation's own
#: parameter list and ``{args}`` its arguments passed on, or ``*args, **kwargs`` for one
#: with a ``*`` or ``**`` parameter (forwarding them costs a tuple and a dict a call: every
#: demand fault is an operation)
_OPERATION = """
def op(self, {params}):
    j = self.journal
    if j.undo is not None:  # inside another operation: that one commits or rolls back
        return fn(self, {args})
    if j.held is not None:
        raise MmemuError(f"{name}: {{j.held}} is in progress; finish it or abandon it first")
    j.undo, j.commit_actions = [], []  # Journal.begin, inline: every demand fault is one
    try:
        result = fn(self, {args})
    except (Oops, SegmentationFault):
        j.commit()
        raise
    except BaseException:
        j.rollback()
        self._after_rollback()
        raise
    j.commit()
    return result
"""


def operation(fn):
    """A public operation of the kernel model: one transaction (:mod:`mmemu.journal`). If
    it raises, everything it changed is undone, newest first, and the CPUs' TLBs flushed;
    if it returns (or ends in an oops or a SIGSEGV, which are the kernel's answers, not
    refusals), it commits: deferred frees happen, events reach the observers. Operations
    called from inside another join it."""
    ns = {"fn": fn, "MmemuError": MmemuError, "Oops": Oops, "SegmentationFault": SegmentationFault}
    params, args = [], []
    for i, p in enumerate(list(inspect.signature(fn).parameters.values())[1:]):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            params, args = ["*args", "**kwargs"], ["*args", "**kwargs"]
            break
        if p.kind is p.KEYWORD_ONLY and "*" not in params:
            params.append("*")
        if p.default is p.empty:
            params.append(p.name)
        else:
            ns[f"_default{i}"] = p.default
            params.append(f"{p.name}=_default{i}")
        args.append(p.name if p.kind is p.POSITIONAL_OR_KEYWORD else f"{p.name}={p.name}")
    exec(_OPERATION.format(name=fn.__name__, params=", ".join(params), args=", ".join(args)), ns)  # noqa: S102
    op = functools.wraps(fn)(ns["op"])
    op.kernel_operation = True
    return op


class KernelBase:
    """A booted machine. Built by :func:`mmemu.kernel.boot.boot_kernel`."""

    #: the undo journal of the operation running now (mmemu.journal)
    journal: Journal

    spec: "MachineSpec"
    arch: "Arch"
    layout: "Layout"
    paging: "PagingMode"
    codec: "EntryCodec"
    plan: "BootPlan"
    #: the generic mm rules of this kernel's release (mmemu.kernel.eras.MM)
    era: "Era"
    mem: "PhysMem"
    frames: "FrameAllocator"
    pgtable: "PageTables"
    pm: "pluggy.PluginManager"
    #: physical address of the master kernel page table (swapper_pg_dir / init_top_pgt)
    pgd: int
    #: the symbol naming it in this arch and era
    pgd_symbol: str
    #: page sizes the boot used for the direct mapping, largest first
    direct_map_page_sizes: tuple[int, ...]
    #: the CPUs running on this kernel's tables (mmemu.cpu.Cpu), flushed with it
    cpus: list
    #: CONFIG_HIGHPTE on a machine with HighMem: user page tables come from HighMem
    highpte: bool
    #: TASK_SIZE: the end of user space
    task_size: int
    #: the first top-level index of the kernel part of a page directory (KERNEL_PGD_BOUNDARY)
    KERNEL_PGD_BOUNDARY: int
    #: sizeof(void *) of the emulated kernel
    ptr_size: int
    #: empty_zero_page
    zero_pfn: int

    # -- the direct mapping (__pa, __va) ----------------------------------------------

    @property
    def PAGE_OFFSET(self) -> int:
        return self.layout["PAGE_OFFSET"]

    @property
    def high_memory(self) -> int:
        return self.layout["high_memory"]

    @property
    def PHYS_OFFSET(self) -> int:
        return self.layout.phys_offset

    def image_phys(self, va: int) -> int | None:
        """``__pa_symbol``: the physical address of an address in the kernel image's own
        mapping (x86_64's __START_KERNEL_map, RISC-V's and arm64's kernel mapping), or None."""
        lo, hi, delta = self._image_span
        if lo <= va < hi:
            return va - delta
        return None

    def virt_to_phys(self, va: int) -> int:
        """Physical address of a direct-mapped virtual address (``__pa``). Also accepts
        an address of the kernel image's own mapping (``__phys_addr``)."""
        page_offset, high_memory, phys_offset = self._direct_span
        if page_offset <= va < high_memory:
            return va - page_offset + phys_offset
        pa = self.image_phys(va)
        if pa is not None:
            return pa
        raise AddressError(f"__pa({va:#x}): not a direct-mapped kernel address "
                           f"({page_offset:#x}-{high_memory:#x})")

    def phys_to_virt(self, pa: int) -> int:
        """Direct-map virtual address of a low-memory physical address (``__va``)."""
        page_offset, high_memory, base = self._direct_span
        if not base <= pa < base + high_memory - page_offset:
            raise AddressError(f"__va({pa:#x}): physical address is not in the direct mapping "
                               f"({base:#x}-{base + high_memory - page_offset:#x})")
        return pa - base + page_offset

    # -- looking at the tables --------------------------------------------------------

    def root_for(self, va: int, process=None, user: bool = False) -> int:
        """The root table the MMU translates *va* with in *process* (None: the kernel's
        own, init_mm): the process's page directory, except for the kernel half of a
        mode with a separate kernel root (arm64's TTBR1). *user*: the one user mode runs
        on, the directory's user copy where the kernel keeps one (x86 PTI)."""
        if process is None or self.paging.in_kernel_root(va):
            root = self.pgd
        else:
            root = process.pgd
        return self.user_pgd(root) if user else root

    def user_pgd(self, root: int) -> int:
        """``kernel_to_user_pgdp``: the user copy of the page directory at *root* (x86 PTI:
        the page after it), or *root* itself where the kernel keeps no copy."""
        copy = self.pgtable.user_copies.get(root)
        return root if copy is None else copy[0]

    def walk(self, va: int, root: int | None = None) -> "Walk":
        """Walk *va* in the master kernel page table (or the table at *root*). An address
        the MMU does not translate (non-canonical on x86_64) gives a faulting walk, as the
        CPU faults there (#GP on x86_64): ``missing == "non-canonical"``, no steps."""
        try:
            return self.pgtable.walk(self.pgd if root is None else root, va)
        except AddressError:
            if self.paging.is_valid(va):  # a wrong root (TTBR0 vs TTBR1): the caller's mistake
                raise
            return self.pgtable.untranslated(va)

    def walk_mm(self, va: int, process: "Process | None" = None, user: bool = False) -> "Walk":
        """Walk *va* as the MMU does in *process*'s address space (None: init_mm), in user
        mode with *user* (:meth:`root_for`); a non-canonical address gives a faulting walk,
        as :meth:`walk`."""
        return self.walk(va, self.root_for(va, process, user))

    # -- events -----------------------------------------------------------------------

    #: how many of the most recent mapping events :attr:`recent_events` keeps
    RECENT_EVENTS = 4096

    def _init_events(self) -> None:
        self.event_seq = 0
        self.recent_events = RecentEvents(self.RECENT_EVENTS, self.pgtable)
        self._append_compact = self.recent_events.compact_append()
        #: what the running operation changes mappings for: a string, a function giving it,
        #: or a format and its values (a page fault: the words are made only if one of its
        #: events is read)
        self.event_context = ""
        #: bumped whenever the tables or memory may have changed code a CPU translated
        #: (every page-table operation, every write through the API): the CPUs drop their
        #: translated code when it moves (mmemu.cpu)
        self.code_generation = 0
        self._changed_hook = self.pm.hook.mmemu_mapping_changed
        self._changed_impls = live_hookimpls(self._changed_hook)  # true: somebody listens
        self.pgtable.on_operation = self._on_operation
        self.pgtable.on_entry = self._on_entry

    def _on_operation(self, op) -> None:
        """Every completed page-table operation becomes a MappingEvent, kept in
        :attr:`recent_events` and given to the ``mmemu_mapping_changed`` hook, when the
        kernel operation it is part of commits (one that fails leaves no event)."""
        self.code_generation += 1
        j = self.journal
        if j.undo is None:
            self._deliver(op, self.event_context)
        else:  # Journal.on_commit, inline: every page-table operation passes here
            j.commit_actions.append((self._deliver, (op, self.event_context)))

    def _deliver(self, op, context: str) -> None:
        self.event_seq += 1
        if self._changed_impls:
            event = MappingEvent(self.event_seq, op, context)
            self.recent_events.append(event)
            self._changed_hook(kernel=self, event=event)
        else:  # nobody listens: kept compact until read (RecentEvents)
            self.recent_events.append_op(self.event_seq, op, context)

    def _on_entry(self, *fields) -> None:
        """:meth:`_on_operation` of one entry written, given by its plain values (writer,
        kind, va, table, level, index, old, new: PageTables.on_entry): its
        :class:`~mmemu.pagetable.EntryWrite` is made only if someone listens."""
        self.code_generation += 1
        j = self.journal
        if j.undo is None:
            self._deliver_entry(fields, self.event_context)
        else:
            j.commit_actions.append((self._deliver_entry, (fields, self.event_context)))

    def _deliver_entry(self, fields: tuple, context) -> None:
        self.event_seq += 1
        if self._changed_impls:
            event = MappingEvent(self.event_seq, EntryWrite(self.pgtable, *fields), context)
            self.recent_events.append(event)
            self._changed_hook(kernel=self, event=event)
        elif type(context) is tuple or type(context) is str:
            # nobody listens: kept compact until read (RecentEvents.append_fields, inline)
            self._append_compact((self.event_seq, context, fields))
        else:
            self.recent_events.append_fields(self.event_seq, fields, context)

    def _after_rollback(self) -> None:
        """The tables are as they were: what the CPUs cached since must go, and their
        current table must be the current process's again."""
        self.code_generation += 1
        root = self.current_pgd()
        for cpu in self.cpus:
            if cpu.cr3 != root:
                cpu.set_cr3(root)
            else:
                cpu.flush_tlb()

    # -- fault injection (CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAILSLAB) ------------------------

    def inject_failures(self, page: int | None = None, slab: int | None = None) -> FaultInjection:
        """Make the *page*-th page allocation and/or the *slab*-th kmalloc from now fail
        with OutOfMemory (1: the next one); returns the injector, whose ``count`` says how
        many of each were made. :meth:`stop_injecting` ends it."""
        self.journal.injection = FaultInjection(page, slab)
        return self.journal.injection

    def stop_injecting(self) -> None:
        """End the failure injection :meth:`inject_failures` started."""
        self.journal.injection = None

    # -- TLB ----------------------------------------------------------------------------

    def flush_tlb_one_kernel(self, va: int) -> None:
        """``__flush_tlb_one_kernel`` / ``invlpg``: forget one translation, on every CPU."""
        for cpu in self.cpus:
            cpu.flush_tlb_page(va)

    def flush_tlb_kernel_range(self, start: int, end: int) -> None:
        """``flush_tlb_kernel_range``: the kernel flushes page by page up to a ceiling
        (tlb_single_page_flush_ceiling, 33 pages) and everything beyond it."""
        pages = (end - start + PAGE_SIZE - 1) >> PAGE_SHIFT
        for cpu in self.cpus:
            if pages <= 33:
                for va in range(start & ~(PAGE_SIZE - 1), end, PAGE_SIZE):
                    cpu.flush_tlb_page(va)
            else:
                cpu.flush_tlb()

    def flush_tlb_all(self) -> None:
        for cpu in self.cpus:
            cpu.flush_tlb()

    # -- kernel messages ----------------------------------------------------------------

    def BUG(self, where: str, why: str) -> KernelBug:
        """The error for a ``BUG()`` in the kernel file and function *where*."""
        return KernelBug(f"kernel BUG at {where}! {why}")

    @property
    def symbols(self) -> dict[str, int]:
        syms = dict(self.layout.symbols)
        syms[self.pgd_symbol] = self.pgd_va
        return syms

    @property
    def pgd_va(self) -> int:
        """Virtual address of the master page table, where the kernel sees it."""
        return self._pgd_va

    def close(self) -> None:
        """Release the host memory (the kernel object is unusable afterwards)."""
        for cpu in list(self.cpus):
            cpu.close()
        self.cpus.clear()
        self.mem.close()

    def __repr__(self) -> str:
        return (f"<Kernel {self.spec.arch} {self.spec.kernel} {self.paging.name} "
                f"RAM {self.spec.ram >> 20} MiB>")


# The kernel's own short names; reachable as getattr(kernel, "__pa") or kernel.__pa(...)
# from outside a class body (inside one, Python would mangle the double underscore).
setattr(KernelBase, "__pa", KernelBase.virt_to_phys)
setattr(KernelBase, "__va", KernelBase.phys_to_virt)
