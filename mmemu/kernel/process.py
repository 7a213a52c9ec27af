"""User processes: their page directories, VMAs, and the page tables demand paging fills.

kernel/fork.c (``mm_init``/``dup_mmap``), arch/x86/mm/pgtable.c (``pgd_alloc``: the kernel
part copied from swapper_pg_dir; PAE preallocates the user pmds because the CPU loads all
four PDPT entries with CR3), mm/mmap.c (``mmap``/``munmap``/``brk``, top-down
``get_unmapped_area`` below ``mmap_base``), mm/mprotect.c, mm/memory.c (``copy_page_range``
with copy-on-write, ``zap_page_range``, ``free_pgtables``).

With CONFIG_HIGHPTE (i386) the last-level user page tables come from HighMem; every time
the kernel reads or writes one it maps it through the atomic kmap slot for page tables
(``pte_offset_map``: KM_PTE0 in the classic kernels, the kmap_atomic stack later,
``kmap_local_page`` since 5.11) and unmaps it after (``pte_unmap``).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import operator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..arch import LEAF, TABLE
from ..errors import MmemuError, OutOfMemory
from ..units import PAGE_SHIFT, PAGE_SIZE
from .base import need_int, operation
from .lifetimes import ShmemObject, free_pgtables, new_anon_vma, release_shmem

# include/uapi/asm-generic/mman-common.h, mman.h
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
#: the protection bits mmap and mprotect accept (PROT_SEM and PROT_GROWSDOWN/UP are not modelled)
PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
#: the mmap flags mmemu models; MAP_SHARED | MAP_PRIVATE is MAP_SHARED_VALIDATE (4.15+)
MAP_MODELLED = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS
# include/linux/mm.h
VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
VM_GROWSDOWN = 0x100
# include/linux/mm.h, the same values from 2.6 to 6.x (crash memory.c do_vm_flags keeps a copy):
# the mprotect() limits mmap sets on every mapping, VM_MAYSHARE with MAP_SHARED, and VM_ACCOUNT
# on what is charged against the overcommit limit (private writable memory)
VM_MAYREAD, VM_MAYWRITE, VM_MAYEXEC, VM_MAYSHARE = 0x10, 0x20, 0x40, 0x80
VM_ACCOUNT = 1 << 20  # 0x00100000: a flag bit, not an address
#: VM_DATA_DEFAULT_FLAGS without READ_IMPLIES_EXEC (x86 page_types.h VM_DATA_FLAGS_TSK_EXEC,
#: riscv page.h VM_DATA_FLAGS_NON_EXEC): the heap's flags (do_brk adds VM_ACCOUNT) and the
#: stack's (mm.h VM_STACK_FLAGS = VM_GROWSDOWN | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT)
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_FLAGS = VM_GROWSDOWN | VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT

EINVAL, ENOMEM = 22, 12

#: arch/x86/mm/mmap.c: the gap below the stack is at least 128 MiB (MIN_GAP)
MIN_GAP = 128 << 20
#: fs/exec.c setup_arg_pages: the initial stack VMA (stack_expand = 128 KiB)
INITIAL_STACK = 128 << 10


@dataclass
class Vma:
    """``struct vm_area_struct``: [vm_start, vm_end) with its flags."""

    vm_start: int
    vm_end: int
    vm_flags: int
    name: str = ""  # "[heap]", "[stack]", or "" for anonymous memory
    #: ``anon_vma``: set once a page of the VMA's own was allocated (anon_vma_prepare);
    #: fork copies the ptes of such a VMA only (copy_page_range)
    anon_vma: int | None = None
    #: shared anonymous memory: the shmem object behind it (shmem_zero_setup), and the
    #: page offset of vm_start in it (vm_pgoff)
    shm: ShmemObject | None = None
    pgoff: int = 0

    def piece(self, start: int, end: int) -> "Vma":
        """The part [start, end) of this VMA (a split: __split_vma), its pgoff moved along."""
        return dataclasses.replace(self, vm_start=start, vm_end=end,
                                   pgoff=self.pgoff + ((start - self.vm_start) >> PAGE_SHIFT))

    def mergeable(self, nxt: "Vma") -> bool:
        """vma_merge's tests for *nxt* right after this VMA: the same flags and name, the
        same shmem object at the next page offset (or none), anon_vmas that agree
        (is_mergeable_anon_vma: one of them none, or the same)."""
        return (self.vm_end == nxt.vm_start and self.vm_flags == nxt.vm_flags and self.name == nxt.name
                and self.shm is nxt.shm
                and (self.shm is None or nxt.pgoff == self.pgoff + ((self.vm_end - self.vm_start) >> PAGE_SHIFT))
                and (self.anon_vma is None or nxt.anon_vma is None or self.anon_vma == nxt.anon_vma))

    def perms(self) -> str:
        f = self.vm_flags
        return (("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + ("x" if f & VM_EXEC else "-")
                + ("s" if f & VM_SHARED else "p"))


#: a VMA's end, the key find_vma bisects on (attrgetter: no Python call per probe)
_vm_end = operator.attrgetter("vm_end")


@dataclass
class Process:
    """A task and its ``mm_struct``."""

    pid: int
    comm: str
    pgd: int  # physical address of its page directory
    vmas: list[Vma] = field(default_factory=list)
    start_brk: int = 0
    brk: int = 0
    mmap_base: int = 0
    start_stack: int = 0
    parent: int = 0
    #: PAE: the pmds pgd_alloc preallocated (the user ones, and with PTI the kernel ones of
    #: the pgd and its user copy)
    pmds: list[int] = field(default_factory=list)
    alive: bool = True

    @functools.cached_property
    def anon_owner(self) -> str:
        """How the frame records name this process's anonymous pages (a process's comm and
        pid never change: computed once, on the fault path)."""
        return f"anon ({self.comm}[{self.pid}])"

    def find_vma(self, addr: int) -> Vma | None:
        """``find_vma``: the first VMA that ends above *addr* (it may start above it)."""
        i = bisect.bisect_right(self.vmas, addr, key=_vm_end)
        return self.vmas[i] if i < len(self.vmas) else None

    def vma_at(self, addr: int) -> Vma | None:
        vma = self.find_vma(addr)
        return vma if vma is not None and vma.vm_start <= addr else None


def calc_vm_prot_bits(prot: int) -> int:
    return (VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0) | \
        (VM_EXEC if prot & PROT_EXEC else 0)


class ProcessMixin:
    """Processes: ``create_process``, ``fork``, ``exit_mm``, ``switch_to``; on a
    process: ``mmap``, ``munmap``, ``mprotect``, ``brk``, and the ``/proc/PID/maps`` text."""

    def _init_processes(self) -> None:
        self.processes: dict[int, Process] = {}
        self.pgd_list: list[Process] = []
        self.current: Process | None = None
        self._next_pid = 1
        self._protection_map = [self._vm_page_prot(f) for f in range(16)]
        #: pfns of anonymous pages with PageAnonExclusive (5.19+: mapped by one process
        #: alone, so that a write may reuse them; a fork clears it)
        self.anon_exclusive: set[int] = set()
        syms = self.layout.symbols
        #: where a new process's stack ends (STACK_TOP) and mmap's top-down search starts
        #: (mm/util.c mmap_base(): PAGE_ALIGN(STACK_TOP - gap), the gap at least MIN_GAP)
        self.stack_top = syms.get("STACK_TOP", self.task_size)
        self.mmap_base_default = (self.stack_top - MIN_GAP) & ~(PAGE_SIZE - 1)
        #: where a program image is loaded (ELF_ET_DYN_BASE: binfmt_elf puts a PIE there);
        #: the heap starts after the 16 MiB mmemu assumes the image takes
        self.elf_base = syms.get("ELF_ET_DYN_BASE", (self.task_size // 3 * 2) & ~(PAGE_SIZE - 1))

    # -- page directories -------------------------------------------------------------

    def _top_entries(self, root: int):
        return self.pgtable.entries(root, 0)

    def _write_top(self, root: int, index: int, value: int, writer: str) -> None:
        """One top-level entry (``set_pgd``; ``set_pmd`` of the folded 2-level pgd)."""
        top = self.paging.levels[0]
        self.pgtable.set_entry(root, 0, index, value, writer=writer, va=self.pgtable.va_of(index << top.shift, root),
                               kind="set_pgd")

    def pgd_alloc(self, owner: str) -> tuple[int, list[int]]:
        """A new page directory with the kernel part of swapper_pg_dir (pgd_ctor:
        clone_pgd_range from KERNEL_PGD_BOUNDARY; with BootPlan ``kernel_copy_level`` 1 a
        copy of each kernel table below it instead, pgd_prepopulate_pmd and, for the user
        copy, pgd_prepopulate_user_pmd). PAE: the user pmds preallocated and entered in the
        PDPT (pgd_prepopulate_pmd). Returns the directory and the tables it owns (freed with
        it, the user ones unless free_pgtables took them first)."""
        pt = self.pgtable
        pmds: list[int] = []
        # (a failure undoes all of this with the operation)
        if self.plan.user_pgd_entries:
            root = self._pgd_alloc_user_copy(owner)
        else:
            root = pt.new_root(owner, user=True)
        # pgd_ctor's clone_pgd_range comes before pgd_prepopulate_pmd; a kernel part of the
        # directory's own is made with the user pmds, after them (preallocate_pmds allocates
        # index 0 up, pgd_prepopulate_user_pmd's come last)
        if self.plan.copies_kernel_pgd and not self.plan.kernel_copy_level:
            self._clone_kernel_part(root, pmds)
        if self.plan.prepopulate_user_pgd:
            name = self.paging.levels[1].name
            for i in range(self.KERNEL_PGD_BOUNDARY):
                page = self.alloc_pages(0, "Normal", owner=f"page table ({name})", zero=True)
                pmds.append(page.phys)
                pt.adopt_table(page.phys, 1, f"page table ({name})", pinned=not self.arch.user_pmds_freed(self.spec))
                self._write_top(root, i, self.codec.mk_table(0, page.phys, True), "pgd_prepopulate_pmd")
        if self.plan.copies_kernel_pgd and self.plan.kernel_copy_level:
            self._clone_kernel_part(root, pmds)
        return root, pmds

    def _clone_kernel_part(self, root: int, pmds: list[int]) -> None:
        """The kernel half of swapper_pg_dir into the new directory at *root*, and of its
        user copy into *root*'s: the top-level entries (clone_pgd_range), or with BootPlan
        ``kernel_copy_level`` 1 a copy of each table below them (pgd_prepopulate_pmd,
        pgd_prepopulate_user_pmd), added to *pmds*."""
        copies = {self.pgd: (root, "pgd_prepopulate_pmd")}
        if self.plan.user_pgd_entries:
            copies[self.user_pgd(self.pgd)] = (self.user_pgd(root), "pgd_prepopulate_user_pmd")
        for src, (dst, writer) in copies.items():
            master = self._top_entries(src)
            for i in range(self.KERNEL_PGD_BOUNDARY, len(master)):
                if not master[i]:
                    continue
                if self.plan.kernel_copy_level:
                    table = self._copy_kernel_table(master[i], writer)
                    pmds.append(table)
                    self._write_top(dst, i, self.codec.mk_table(0, table, False), writer)
                else:
                    self._write_top(dst, i, master[i], "pgd_ctor")

    def _copy_kernel_table(self, master_raw: int, writer: str) -> int:
        """A table of a directory's own for the master's top-level kernel entry
        *master_raw*: its entries the master table's (``memcpy`` of pgd_prepopulate_pmd),
        the tables they point at shared. Pinned: free_pgtables never frees it."""
        pt = self.pgtable
        name = self.paging.levels[1].name
        src = pt.decode(0, master_raw)[1]
        page = self.alloc_pages(0, "Normal", owner=f"page table ({name})", zero=True)
        pt.adopt_table(page.phys, 1, f"page table ({name})", pinned=True)
        pt.set_entries(page.phys, 1, 0, pt.entries(src, 1), writer=writer)
        return page.phys

    def kernel_part(self, root: int) -> list[tuple[int | None, int, int, int]]:
        """Where the page directory at *root* holds its copy of the kernel's entries
        (BootPlan ``kernel_copy_level``), in address order: (table, level index, first index,
        offset of the table's first entry into the top table's span). Level 0: the directory
        itself from KERNEL_PGD_BOUNDARY; level 1: the table under each kernel top-level entry
        (None where the directory has none)."""
        top = self.paging.levels[0]
        if not self.plan.kernel_copy_level:
            return [(root, 0, self.KERNEL_PGD_BOUNDARY, 0)]
        out = []
        for i, raw in enumerate(self._top_entries(root)[self.KERNEL_PGD_BOUNDARY:], self.KERNEL_PGD_BOUNDARY):
            kind, child, _ = self.pgtable.decode(0, raw)
            out.append((child if kind == TABLE else None, 1, 0, i << top.shift))
        return out

    def _set_kernel_entry(self, table: int, li: int, index: int, base: int, value: int, root: int,
                          writer: str) -> None:
        """One entry of a directory's copy of the kernel part (``set_pgd``, ``set_pmd``)."""
        lv = self.paging.levels[li]
        if li == 0:
            self._write_top(table, index, value, writer)
        else:
            self.pgtable.set_entry(table, li, index, value, writer=writer,
                                   va=self.pgtable.va_of(base + index * lv.span, root), kind=f"set_{lv.name}")

    def _pgd_alloc_user_copy(self, owner: str) -> int:
        """pgd_alloc with a user copy (BootPlan ``user_pgd_entries``, x86 PTI:
        PGD_ALLOCATION_ORDER 1): the pgd and, in the page after it, the copy user mode runs
        on, registered with the engine so that user-half entries reach both."""
        pt = self.pgtable
        page = self.alloc_pages(1, "Normal", owner="page table (pgd)", zero=True)
        root, copy = page.phys, page.phys + PAGE_SIZE
        pt.adopt_table(root, 0, owner)
        pt.adopt_table(copy, 0, f"{owner} user copy")
        self.journal.setitem(pt.user_copies, root, (copy, self.plan.user_pgd_entries, self.keep_user_pgtbl))
        return root

    def keep_user_pgtbl(self, raw: int) -> int:
        """The entry a pgd with a user copy keeps for the user-half entry *raw*."""
        return self.arch.set_user_pgtbl(self, raw)

    @operation
    def sync_kernel_pgds(self) -> int:
        """Copy the master's kernel entries into every page directory that lacks them, at
        the level the directories hold copies of (``sync_global_pgds`` /
        ``arch_sync_kernel_mappings``: ``vmalloc_sync_one`` for each pgd on the pgd_list).
        Returns how many."""
        pt = self.pgtable
        master = self.kernel_part(self.pgd)
        copied = 0
        for proc in self.pgd_list:
            for (src, li, first, _), (dst, _li, _first, base) in zip(master, self.kernel_part(proc.pgd)):
                if src is None or dst is None:
                    continue
                theirs, mine = pt.entries(src, li), pt.entries(dst, li)
                for i in range(first, len(theirs)):
                    if theirs[i] and not mine[i]:
                        self._set_kernel_entry(dst, li, i, base, theirs[i], proc.pgd, "arch_sync_kernel_mappings")
                        copied += 1
        return copied

    # -- processes --------------------------------------------------------------------

    @operation
    def create_process(self, comm: str = "init") -> Process:
        """A new process with an empty user address space and its stack VMA (what exec
        leaves before the program is mapped)."""
        if not isinstance(comm, str) or not comm:
            raise MmemuError(f"create_process: comm must be a non-empty str, not {comm!r}")
        pgd, pmds = self.pgd_alloc(owner=f"pgd ({comm})")
        pid = self._next_pid
        self.journal.set(self, "_next_pid", pid + 1)
        proc = Process(pid, comm, pgd, pmds=pmds)
        proc.mmap_base = self.mmap_base_default
        proc.start_stack = self.stack_top
        proc.vmas.append(Vma(self.stack_top - INITIAL_STACK, self.stack_top, VM_STACK_FLAGS,
                             "[stack]"))
        proc.start_brk = proc.brk = self.elf_base + (16 << 20)
        self.journal.setitem(self.processes, pid, proc)
        self.journal.append(self.pgd_list, proc)
        if self.current is None:
            self.switch_to(proc)
        return proc

    def _live(self, proc, what: str) -> "Process":
        """*proc* must be a process of this kernel that has not exited."""
        if not isinstance(proc, Process):
            raise MmemuError(f"{what}: expected a Process, not {type(proc).__name__} ({proc!r})")
        if not proc.alive:
            raise MmemuError(f"{what}: process {proc.pid} ({proc.comm}) has exited")
        if self.processes.get(proc.pid) is not proc:
            raise MmemuError(f"{what}: process {proc.pid} ({proc.comm}) is not a process of this kernel")
        return proc

    def process(self, pid: int) -> Process:
        """``find_task_by_vpid``: the live process of this pid (an error if there is none)."""
        try:
            proc = self.processes[pid]
        except KeyError:
            raise MmemuError(f"no process with pid {pid}") from None
        return proc

    @operation
    def switch_to(self, proc: Process | None) -> None:
        """``switch_mm``: the current process (None: a kernel thread on init_mm), and CR3."""
        if proc is not None:
            self._live(proc, "switch_to")
        self.journal.set(self, "current", proc)
        root = self.pgd if proc is None else proc.pgd
        for cpu in self.cpus:
            cpu.set_cr3(root)

    def current_pgd(self) -> int:
        return self.pgd if self.current is None else self.current.pgd

    # -- user page tables (HIGHPTE) ---------------------------------------------------

    @contextmanager
    def pte_offset_map(self, proc: Process, va: int, alloc: bool = False):
        """``pte_offset_map``/``pte_unmap`` (``pte_alloc_map`` with *alloc*) as a context:
        the slot (page table, index) of *va*'s pte, or None when no page table reaches
        it; see :meth:`pte_lookup`."""
        slot, kmapped = self.pte_lookup(proc, va, alloc)
        try:
            yield slot
        finally:
            self.pte_unmap(kmapped)

    def pte_lookup(self, proc: Process, va: int, alloc: bool = False):
        """``pte_offset_map``: (slot, kmap address or None). A page table in HighMem
        (CONFIG_HIGHPTE) is mapped through the page-table kmap slot for as long as the
        caller works on it, as the kernel does; pass the second value to
        :meth:`pte_unmap` when done."""
        pt = self.pgtable
        slot = pt.pte_slot(proc.pgd, va)
        if slot is None and alloc:
            pt.populate(proc.pgd, va & ~(PAGE_SIZE - 1), PAGE_SIZE, writer="__pte_alloc", user_tables=True)
            slot = pt.pte_slot(proc.pgd, va)
        if slot is None or not self.highpte or not self.PageHighMem(slot[0] >> PAGE_SHIFT):
            return slot, None
        return slot, self.kmap_atomic(slot[0] >> PAGE_SHIFT, "KM_PTE0" if self.kmap_scheme == "km_type" else None)

    def pte_unmap(self, kmapped: int | None) -> None:
        if kmapped is not None:
            self.kunmap_atomic(kmapped, "KM_PTE0" if self.kmap_scheme == "km_type" else None)

    def read_slot(self, slot) -> int:
        return self.pgtable.read_entry(slot[0], slot[1])

    def write_slot(self, slot, va: int, value: int, writer: str) -> int:
        return self.pgtable.write_pte_slot(slot[0], slot[1], value, writer, va)

    def set_user_pte(self, proc: Process, va: int, value: int, writer: str) -> int:
        """``set_pte_at`` on a user address: the tables above are made if missing
        (``pte_alloc``); a HighMem page table is reached through the kmap slot."""
        with self.pte_offset_map(proc, va, alloc=bool(value)) as slot:
            if slot is None:
                return 0
            return self.write_slot(slot, va & ~(PAGE_SIZE - 1), value, writer)

    def read_user_pte(self, proc: Process, va: int) -> int:
        with self.pte_offset_map(proc, va) as slot:
            return 0 if slot is None else self.read_slot(slot)

    # -- protections ------------------------------------------------------------------

    def vm_page_prot(self, vm_flags: int) -> int:
        """protection_map[] (x86 __P/__S): private writable mappings are read-only until
        the first write (copy-on-write); shared writable ones are PAGE_SHARED."""
        return self._protection_map[vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]

    def _vm_page_prot(self, vm_flags: int) -> int:
        p = self.pgprot
        r, w, x = vm_flags & VM_READ, vm_flags & VM_WRITE, vm_flags & VM_EXEC
        # the arch's own protection_map[] entry where it names one (__P100 = private
        # execute-only, __S011 = shared read-write...: mm/mmap.c, the arch's pgtable.h)
        name = f"__{'S' if vm_flags & VM_SHARED else 'P'}{int(bool(x))}{int(bool(w))}{int(bool(r))}"
        if name in p:
            return p[name]
        if not (r or w or x):
            # PAGE_NONE is _PAGE_PROTNONE | _PAGE_ACCESSED: not present for the CPU, but
            # pte_present() for the kernel, which keeps the page (and its data) mapped
            return p["PAGE_NONE"]
        if vm_flags & VM_SHARED and w:
            return p["PAGE_SHARED_EXEC" if x else "PAGE_SHARED"]
        if w:
            return p["PAGE_COPY_EXEC" if x else "PAGE_COPY"]
        return p["PAGE_READONLY_EXEC" if x else "PAGE_READONLY"]

    def mk_pte(self, pfn: int, prot: int) -> int:
        """``pfn_pte``: with the arch's L1TF inversion of a PROT_NONE pte where the era has
        it (x86_64 and PAE from 4.18: ``pfn ^= protnone_mask(pgprot_val(pgprot))``)."""
        pte = self.codec.pfn_pte(pfn, prot)
        return self.codec.protnone_invert(pte) if self.l1tf_invert else pte

    def pte_pfn(self, pte: int) -> int:
        """``pte_pfn``: the inversion undone (``pfn ^= protnone_mask(pfn)``)."""
        return self.codec.pte_pfn(self.codec.protnone_invert(pte) if self.l1tf_invert else pte)

    def pte_modify(self, pte: int, prot: int) -> int:
        """``pte_modify``: the page with a new protection; the frame inverted or not as the
        new entry needs (flip_protnone_guard: inverted again when PROT_NONE comes or goes)."""
        last = len(self.paging.levels) - 1
        if not self.l1tf_invert:
            return self.codec.modify(last, pte, prot)
        invert = self.codec.protnone_invert
        return invert(self.codec.modify(last, invert(pte), prot))

    def pte_present(self, pte: int) -> bool:
        """pte_present(): present, or PROT_NONE (not valid for the MMU, the page still mapped)."""
        return self.codec.pte_present(pte)

    # -- VMAs ---------------------------------------------------------------------------

    # A process's VMA list is replaced, never edited in place, and a Vma is changed only
    # through the journal: a failed operation puts both back.

    def _insert_vma(self, proc: Process, vma: Vma) -> None:
        i = bisect.bisect_left([v.vm_start for v in proc.vmas], vma.vm_start)
        self._merge_vmas(proc, proc.vmas[:i] + [vma] + proc.vmas[i:])

    def _merge_vmas(self, proc: Process, vmas: list[Vma] | None = None) -> None:
        """vma_merge: adjacent anonymous VMAs with the same flags become one."""
        out: list[Vma] = []
        for v in proc.vmas if vmas is None else vmas:
            if out and out[-1].mergeable(v):
                out[-1] = dataclasses.replace(out[-1], vm_end=v.vm_end, anon_vma=out[-1].anon_vma or v.anon_vma)
            else:
                out.append(v)
        self.journal.set(proc, "vmas", out)

    def _split_vmas(self, proc: Process, start: int, end: int) -> list[Vma]:
        """Split at *start* and *end*; return the VMAs inside [start, end)."""
        out, inside = [], []
        for v in proc.vmas:
            pieces = [v]
            for cut in (start, end):
                nxt = []
                for p in pieces:
                    if p.vm_start < cut < p.vm_end:
                        nxt += [p.piece(p.vm_start, cut), p.piece(cut, p.vm_end)]
                    else:
                        nxt.append(p)
                pieces = nxt
            for p in pieces:
                out.append(p)
                if start <= p.vm_start and p.vm_end <= end:
                    inside.append(p)
        self.journal.set(proc, "vmas", out)
        return inside

    def get_unmapped_area(self, proc: Process, length: int) -> int:
        """Top-down: the highest gap below mmap_base that fits (vm_unmapped_area)."""
        high = proc.mmap_base
        for v in reversed(proc.vmas):
            if v.vm_start >= high:
                continue
            if v.vm_end <= high - length:
                return high - length
            high = v.vm_start
        if high - length >= PAGE_SIZE * 16:  # mmap_min_addr
            return high - length
        raise OutOfMemory(f"mmap: no room for {length:#x} bytes below mmap_base {proc.mmap_base:#x} (-ENOMEM)")

    def _mmap_hint(self, proc: Process, addr: int | None, length: int) -> int | None:
        """arch_get_unmapped_area_topdown: a hint without MAP_FIXED is taken when the range
        there is free ("requesting a specific address"), else the search decides."""
        if not addr:
            return None
        addr = (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if addr < PAGE_SIZE * 16 or addr + length > self.task_size:
            return None
        if any(v.vm_start < addr + length and addr < v.vm_end for v in proc.vmas):
            return None
        return addr

    def _check_user_range(self, addr: int, length: int, what: str) -> tuple[int, int]:
        need_int(addr, f"{what}: addr")
        need_int(length, f"{what}: length")
        if addr < 0:
            raise MmemuError(f"{what}({addr:#x}, {length:#x}): negative address (-EINVAL)")
        if addr & (PAGE_SIZE - 1):
            raise MmemuError(f"{what}({addr:#x}, {length:#x}): address not page aligned (-EINVAL)")
        if length <= 0:
            raise MmemuError(f"{what}({addr:#x}, {length:#x}): length must be positive (-EINVAL)")
        end = addr + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        if end > self.task_size:
            raise MmemuError(f"{what}({addr:#x}, {length:#x}): range ends above TASK_SIZE {self.task_size:#x} (-EINVAL)")
        return addr, end

    @operation
    def mmap(self, proc: Process, addr: int | None, length: int, prot: int = PROT_READ | PROT_WRITE,
             flags: int = MAP_PRIVATE | MAP_ANONYMOUS, name: str = "") -> int:
        """Anonymous ``mmap`` in *proc*, its arguments in mmap(2)'s order (``addr, length,
        prot, flags``; no fd and offset: every mapping here is anonymous): a new VMA, no
        page yet (pages come with the first faults). *addr* None or 0 (NULL) lets the
        kernel choose; another address is a hint, or with MAP_FIXED the place, replacing
        whatever was there. Returns the start of the mapping."""
        self._live(proc, "mmap")
        need_int(length, "mmap: length")
        need_int(prot, "mmap: prot")
        need_int(flags, "mmap: flags")
        if addr is not None:
            need_int(addr, "mmap: addr")
            if addr == 0 and not flags & MAP_FIXED:
                addr = None  # mmap(NULL, ...): the kernel chooses
        if not isinstance(name, str):
            raise MmemuError(f"mmap: name must be a str, not {type(name).__name__}")
        if prot & ~PROT_MASK:
            raise MmemuError(f"mmap: unknown protection bits {prot & ~PROT_MASK:#x} in {prot:#x} (-EINVAL)")
        if flags & ~MAP_MODELLED:
            raise MmemuError(f"mmap: flags {flags & ~MAP_MODELLED:#x} are not modelled (mmemu knows MAP_SHARED, "
                             "MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS)")
        if not flags & MAP_ANONYMOUS:
            raise MmemuError("mmap: only anonymous mappings exist here (MAP_ANONYMOUS)")
        if flags & MAP_FIXED and addr is None:
            raise MmemuError("mmap: MAP_FIXED needs an address (at NULL it is below mmap_min_addr: -EPERM)")
        map_type = flags & (MAP_SHARED | MAP_PRIVATE)
        if map_type == MAP_SHARED | MAP_PRIVATE and not self.era.map_shared_validate:
            raise MmemuError("mmap: MAP_SHARED and MAP_PRIVATE together (-EINVAL before MAP_SHARED_VALIDATE, 4.15)")
        if not map_type:
            raise MmemuError("mmap: one of MAP_SHARED and MAP_PRIVATE is needed (-EINVAL)")
        if length <= 0:
            raise MmemuError(f"mmap: length {length} must be positive (-EINVAL)")
        if addr is not None and addr < 0:
            raise MmemuError(f"mmap: negative address {addr:#x} (-EINVAL)")
        if length > self.task_size:
            raise OutOfMemory(f"mmap: length {length:#x} is more than the user address space (-ENOMEM)")
        length = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if addr is not None and flags & MAP_FIXED:
            start, end = self._check_user_range(addr, length, "mmap")
            if any(v.vm_start < end and start < v.vm_end for v in proc.vmas):
                self.munmap(proc, start, end - start)
        else:
            if length <= 0:
                raise MmemuError(f"mmap: length {length} must be positive (-EINVAL)")
            start = self._mmap_hint(proc, addr, length)
            if start is None:
                start = self.get_unmapped_area(proc, length)
            end = start + length
        # MAP_SHARED_VALIDATE (MAP_SHARED | MAP_PRIVATE, 4.15+) is a shared mapping
        # do_mmap: calc_vm_prot_bits | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC, MAP_SHARED adds
        # VM_SHARED | VM_MAYSHARE; mmap_region: accountable_mapping() (private and writable) VM_ACCOUNT
        vm_flags = calc_vm_prot_bits(prot) | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
        vm_flags |= VM_SHARED | VM_MAYSHARE if flags & MAP_SHARED else (VM_ACCOUNT if vm_flags & VM_WRITE else 0)
        # mm/mmap.c: a shared anonymous mapping is a shmem file ("dev/zero", shmem_zero_setup),
        # its pages found by offset in it, whoever faults (a forked child included)
        shm = ShmemObject(end - start) if flags & MAP_SHARED else None
        self._insert_vma(proc, Vma(start, end, vm_flags, name, shm=shm))
        return start

    @operation
    def munmap(self, proc: Process, addr: int, length: int) -> None:
        """``munmap``: drop the VMAs in the range, the pages mapped there, and the page
        tables left empty (free_pgtables); flush the TLB for the range. A range with no
        VMA at all is an error here (the kernel returns 0 and does nothing)."""
        self._live(proc, "munmap")
        start, end = self._check_user_range(addr, length, "munmap")
        if not any(v.vm_start < end and start < v.vm_end for v in proc.vmas):
            raise MmemuError(f"munmap({start:#x}, {end - start:#x}): no VMA in the range "
                             "(the kernel returns 0 and changes nothing)")
        inside = self._split_vmas(proc, start, end)
        for v in inside:
            self.zap_page_range(proc, v.vm_start, v.vm_end, "zap_pte_range")
        self.journal.set(proc, "vmas", [v for v in proc.vmas if v not in inside])
        release_shmem(self, [v.shm for v in inside])
        # unmap_region: free_pgtables(tlb, vma, prev ? prev->vm_end : FIRST_USER_ADDRESS,
        # next ? next->vm_start : USER_PGTABLES_CEILING) -- both 0 on x86, RISC-V, arm64
        i = bisect.bisect_right(proc.vmas, start, key=_vm_end)  # the VMAs before end at or below start
        floor = proc.vmas[i - 1].vm_end if i else 0
        following = proc.find_vma(start)
        ceiling = following.vm_start if following is not None else 0
        free_pgtables(self, proc, [(v.vm_start, v.vm_end) for v in inside], floor, ceiling)
        self._flush_user_range(proc, start, end)

    def user_ptes(self, proc: Process, start: int, end: int):
        """(va, raw) of every ``pte_present()`` entry of *proc* in [start, end), in address
        order: present, or PROT_NONE (not present for the CPU, still a mapped page)."""
        levels = self.paging.levels
        last = len(levels) - 1
        mapped = self.codec.pte_present
        decode = self.pgtable.decode
        entries = self.pgtable.entries
        # the page tables reaching into [start, end), level by level (as (table, base va)),
        # then their entries: one generator, not one per level (each pte passed up through
        # every level's frame)
        tables = [(proc.pgd, 0)]
        for li in range(last):
            span = levels[li].span
            below = []
            for table, base in tables:
                row = entries(table, li)
                for idx in range(max(0, (start - base) // span), levels[li].entries):
                    va = base + idx * span
                    if va >= end:
                        break
                    raw = row[idx]
                    if raw:
                        kind, addr, _ = decode(li, raw)
                        if kind == TABLE:
                            below.append((addr, va))
            tables = below
        span = levels[last].span
        n = levels[last].entries
        for table, base in tables:
            row = entries(table, last)
            first = max(0, (start - base) // span)
            stop = min(n, -(-(end - base) // span))
            for idx in range(first, stop):
                raw = row[idx]
                if raw and mapped(raw):
                    yield base + idx * span, raw

    def zap_page_range(self, proc: Process, start: int, end: int, writer: str) -> int:
        """Clear the ptes of [start, end) and drop the page references (the zero page has
        none); the page tables stay (munmap frees them afterwards as free_pgtables does,
        :mod:`mmemu.kernel.lifetimes`). Returns how many pages were mapped."""
        # the engine's unmap clears what the MMU maps; what is left pte_present() after it
        # is PROT_NONE (not valid for the MMU, still a mapped page): cleared one by one
        op = self.pgtable.unmap(proc.pgd, start, end - start, writer=writer)
        # (only if the unmap left an entry in place: a range it cleared holds none)
        protnone = list(self.user_ptes(proc, start, end)) if op.kept else []
        freed = []  # the pages whose last reference went
        for va, raw in protnone:
            self.set_user_pte(proc, va, 0, writer)
            if self.pte_pfn(raw) != self.zero_pfn and self.frames.free_pages(self.pte_pfn(raw)):
                freed.append(self.pte_pfn(raw))
        zero = self.zero_pfn
        pfns = op.unmapped_pfns(PAGE_SHIFT)  # the frames, without a tuple per page
        mapped = len(pfns) + len(protnone)
        if zero in pfns:  # the zero page has no reference to drop
            pfns = [pfn for pfn in pfns if pfn != zero]
        exclusive = self.anon_exclusive
        freed += self.frames.free_pages_many(pfns)
        # the pages that go lose their flag: those whose last reference the frees dropped
        self.journal.discard_many(exclusive, list(exclusive.intersection(freed)))
        return mapped

    @operation
    def mprotect(self, proc: Process, addr: int, length: int, prot: int) -> None:
        """``mprotect``: new VMA flags over the range (-ENOMEM if part of it is not mapped)
        and new protections on the ptes already there (change_protection); pages shared
        copy-on-write stay read-only. Flushes the TLB for the range."""
        self._live(proc, "mprotect")
        need_int(prot, "mprotect: prot")
        if prot & ~PROT_MASK:  # mm/mprotect.c: anything but PROT_READ|WRITE|EXEC (|SEM...)
            raise MmemuError(f"mprotect: unknown protection bits {prot & ~PROT_MASK:#x} in {prot:#x} (-EINVAL)")
        start, end = self._check_user_range(addr, length, "mprotect")
        pos = start
        for v in proc.vmas:
            if v.vm_end <= pos or v.vm_start >= end:
                continue
            if v.vm_start > pos:
                break
            pos = v.vm_end
        if pos < end:
            raise MmemuError(f"mprotect({start:#x}, {end - start:#x}): {pos:#x} is not mapped (-ENOMEM)")
        new_flags = calc_vm_prot_bits(prot)
        inside = self._split_vmas(proc, start, end)
        old_flags = [v.vm_flags for v in inside]
        for v, old in zip(inside, old_flags):
            newflags = (v.vm_flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | new_flags
            # mprotect_fixup: a private mapping made writable is charged (VM_ACCOUNT), and stays so
            if newflags & VM_WRITE and not v.vm_flags & (VM_ACCOUNT | VM_WRITE | VM_SHARED):
                newflags |= VM_ACCOUNT
            self.journal.set(v, "vm_flags", newflags)
            if v.vm_flags != old:  # mprotect_fixup: "if (newflags == oldflags)" nothing changes
                self.change_protection(proc, v)
        self._merge_vmas(proc)
        self._flush_user_range(proc, start, end)

    def change_protection(self, proc: Process, vma: Vma) -> None:
        """mm/mprotect.c change_pte_range: every pte of the VMA gets its new vm_page_prot
        (pte_modify: the frame, accessed and dirty stay). A private writable mapping's
        vm_page_prot is read-only (copy-on-write), so its ptes lose write access, and the
        next write takes a wp fault -- except, from 6.0, an exclusive anonymous page
        (PageAnonExclusive) that can_change_pte_writable() makes writable at once (6.0-6.1:
        only a dirty one), era ``mprotect_write_upgrade``."""
        prot = self.vm_page_prot(vma.vm_flags)
        codec = self.codec
        # MM_CP_TRY_CHANGE_WRITABLE: vma_wants_manual_pte_write_upgrade() is VM_WRITE for a
        # private mapping (a shared anonymous one's PAGE_SHARED is writable already)
        upgrade = self.era.mprotect_write_upgrade if vma.vm_flags & VM_WRITE and not vma.vm_flags & VM_SHARED \
            else None
        for va, raw in list(self.user_ptes(proc, vma.vm_start, vma.vm_end)):
            new = self.pte_modify(raw, prot)  # accessed and dirty stay
            if upgrade and not codec.pte_write(new) and self.can_change_pte_writable(new, upgrade):
                new = codec.pte_mkwrite(new)
            if new != raw:
                self.set_user_pte(proc, va, new, "change_protection")

    def can_change_pte_writable(self, pte: int, rule: str) -> bool:
        """mm/mprotect.c can_change_pte_writable() for a private writable VMA: not PROT_NONE,
        dirty (6.0-6.1, *rule* ``"dirty"``), and a normal page (not the zero page) that is
        anonymous and PageAnonExclusive."""
        if self.pgtable.decode(len(self.paging.levels) - 1, pte)[0] != LEAF:
            return False  # pte_protnone: not valid for the MMU
        if rule == "dirty" and not self.codec.pte_dirty(pte):
            return False
        pfn = self.pte_pfn(pte)
        return pfn != self.zero_pfn and pfn in self.anon_exclusive

    def _exclusive(self, pfn: int) -> bool:
        rec = self.frames.allocated.get(pfn)
        return pfn != self.zero_pfn and rec is not None and rec.refcount == 1

    @operation
    def brk(self, proc: Process, new_brk: int) -> int:
        """``brk``: grow or shrink the heap VMA; returns the new break (the old one when
        the request is refused, as the system call does)."""
        self._live(proc, "brk")
        need_int(new_brk, "brk: new_brk")
        if new_brk < proc.start_brk:
            return proc.brk
        old_end = (proc.brk + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        new_end = (new_brk + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if new_end > self.task_size:  # do_brk_flags: len > TASK_SIZE - addr is -ENOMEM
            return proc.brk
        if new_end < old_end:
            self.munmap(proc, new_end, old_end - new_end)
        elif new_end > old_end:
            # "Check against existing mmap mappings": find_vma_intersection(mm, oldbrk,
            # newbrk + PAGE_SIZE), i.e. the heap keeps a page of distance from the next one
            if any(v.vm_start < new_end + PAGE_SIZE and old_end < v.vm_end and v.name != "[heap]"
                   for v in proc.vmas):
                return proc.brk  # would run into another mapping
            self._insert_vma(proc, Vma(old_end, new_end, VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT, "[heap]"))
        self.journal.set(proc, "brk", new_brk)
        return new_brk

    def _flush_user_range(self, proc: Process, start: int, end: int) -> None:
        """flush_tlb_range / flush_tlb_mm: only where the process's tables are live."""
        if self.current is proc:  # another mm's translations went with its CR3 switch
            self.flush_tlb_kernel_range(start, end)

    # -- fork and exit ----------------------------------------------------------------

    @operation
    def fork(self, parent: Process, comm: str | None = None) -> Process:
        """``dup_mmap``: the VMAs copied, a shared one still on its shmem object; the ptes
        copied only where a fault could not bring them back (``copy_page_range``: a VMA
        with an anon_vma, :mod:`mmemu.kernel.lifetimes`). A copied pte is made old
        (``pte_mkold``), and in a private mapping both sides lose write access and share
        the page (copy-on-write), each page gaining a reference and losing
        PageAnonExclusive. The parent's TLB is flushed."""
        self._live(parent, "fork")
        if comm is not None and (not isinstance(comm, str) or not comm):
            raise MmemuError(f"fork: comm must be a non-empty str, not {comm!r}")
        child = self.create_process(comm or parent.comm)
        # anon_vma_fork: the child's VMA gets an anon_vma of its own where the parent's has one
        child.vmas = [dataclasses.replace(v, anon_vma=new_anon_vma() if v.anon_vma is not None else None)
                      for v in parent.vmas]
        child.start_brk, child.brk, child.mmap_base = parent.start_brk, parent.brk, parent.mmap_base
        child.parent = parent.pid
        codec = self.codec
        # all or nothing with the operation: a failure undoes the child, the references
        # taken and the parent's write-protected entries
        for v in parent.vmas:
            if v.anon_vma is None:
                # mm/memory.c copy_page_range: "Don't copy ptes where a page fault will fill
                # them correctly" (2.6.12: !vma->anon_vma; 6.x vma_needs_copy: the same)
                continue
            # is_cow_mapping(): (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE, and every
            # anonymous mapping may be written (VM_MAYWRITE): any private one
            cow = not v.vm_flags & VM_SHARED
            for va, raw in list(self.user_ptes(parent, v.vm_start, v.vm_end)):
                pfn = self.pte_pfn(raw)
                pte = raw
                if cow and codec.pte_write(raw):
                    pte = codec.pte_wrprotect(raw)  # ptep_set_wrprotect on the parent's too
                    self.set_user_pte(parent, va, pte, "copy_present_pte")
                if pfn != self.zero_pfn:
                    self.frames.get_page(pfn)
                    self.journal.discard(self.anon_exclusive, pfn)  # page_try_dup_anon_rmap
                # copy_present_pte (copy_one_pte before 5.10): "pte = pte_mkold(pte)" in every era
                self.set_user_pte(child, va, codec.pte_mkold(pte), "copy_present_pte")
        if self.current is parent:
            self.flush_tlb_all()
        return child

    @operation
    def exit_mm(self, proc: Process) -> None:
        """``exit_mmap``: every VMA unmapped and its pages released, the page tables and the
        page directory freed."""
        self._live(proc, "exit_mm")
        j = self.journal
        vmas = proc.vmas
        for v in list(proc.vmas):
            self.zap_page_range(proc, v.vm_start, v.vm_end, "unmap_vmas")
        j.set(proc, "vmas", [])
        release_shmem(self, [v.shm for v in vmas])
        pt = self.pgtable
        self._free_user_tables(proc)  # free_pgtables: whatever the unmapping left
        for phys in proc.pmds:
            pt.forget_table(phys)
            self.frames.free_pages(phys >> PAGE_SHIFT)
        if proc.pgd in pt.user_copies:  # pgd_free of the order-1 block: the user copy with it
            pt.forget_table(self.user_pgd(proc.pgd))
            j.delitem(pt.user_copies, proc.pgd)
        pt.forget_table(proc.pgd)
        self.frames.free_pages(proc.pgd >> PAGE_SHIFT)
        j.set(proc, "pmds", [])
        j.set(proc, "alive", False)
        j.remove(self.pgd_list, proc)
        j.delitem(self.processes, proc.pid)
        if self.current is proc:
            self.switch_to(None)

    def _free_user_tables(self, proc: Process) -> None:
        """Free every table below the user part of the page directory (the PAE pmds stay
        for pgd_free). The tables must hold no mapping any more."""
        pt = self.pgtable
        last = len(self.paging.levels) - 1

        def free(table: int, li: int) -> None:
            row = pt.entries(table, li)
            if li == last and not any(row):  # a page table the unmapping emptied: one C-level pass
                return
            for idx, raw in enumerate(row):
                if not raw:
                    continue
                kind, child, _ = pt.decode(li, raw)
                if li == last or kind != TABLE:
                    raise MmemuError(f"exit_mmap: a user mapping survived in table {table:#x} (entry {raw:#x})")
                free(child, li + 1)
                pt.set_entry(table, li, idx, 0, writer="free_pgtables", kind="free_pgtables")
                if not pt.tables[child].pinned:
                    pt.forget_table(child)
                    self.frames.free_pages(child >> PAGE_SHIFT)

        top = pt.entries(proc.pgd, 0)
        for i in range(self.KERNEL_PGD_BOUNDARY):
            if not top[i]:
                continue
            kind, child, _ = pt.decode(0, top[i])
            if kind != TABLE:
                raise MmemuError(f"exit_mmap: a user mapping survived in the page directory (entry {top[i]:#x})")
            free(child, 1)
            if child not in proc.pmds:  # the preallocated ones go with the pgd
                pt.set_entry(proc.pgd, 0, i, 0, writer="free_pgtables", kind="free_pgtables")
                pt.forget_table(child)
                self.frames.free_pages(child >> PAGE_SHIFT)

    @operation
    def install_user_pages(self, proc: Process, addr: int, data: bytes, writer: str = "install_user_pages") -> None:
        """Put *data* into the pages at *addr* of a VMA that covers them, each page freshly
        allocated and mapped with the VMA's protection, as the ELF loader's file pages end
        up (the way code gets into a read-only executable VMA). All or nothing: every page
        must be in a VMA and not mapped yet, checked before anything changes."""
        self._live(proc, "install_user_pages")
        need_int(addr, "install_user_pages: addr", 0)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MmemuError(f"install_user_pages: data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise MmemuError("install_user_pages: no data")
        if addr + len(data) > self.task_size:
            raise MmemuError(f"install_user_pages: {addr:#x}+{len(data):#x} reaches above TASK_SIZE "
                             f"{self.task_size:#x}")
        start = addr & ~(PAGE_SIZE - 1)
        end = (addr + len(data) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        for va in range(start, end, PAGE_SIZE):
            if proc.vma_at(va) is None:
                raise MmemuError(f"install_user_pages: {va:#x} is in no VMA of process {proc.pid}")
            if self.pte_present(self.read_user_pte(proc, va)):
                raise MmemuError(f"install_user_pages: {va:#x} is already mapped")
        for va in range(start, end, PAGE_SIZE):
            vma = proc.vma_at(va)
            if vma.shm is not None:  # into the shmem object, as a fault there would put it
                page = self.alloc_pages(0, "HighMem", owner=f"shmem (/dev/zero inode {vma.shm.ino})", zero=True)
                pages = dict(vma.shm.pages)
                pages[vma.pgoff + ((va - vma.vm_start) >> PAGE_SHIFT)] = page.pfn
                self.journal.set(vma.shm, "pages", pages)
                self.frames.get_page(page.pfn)  # the pte's reference besides the object's
            else:
                # anonymous pages here (mmemu has no files): the VMA gets its anon_vma, so
                # that fork copies them as it copies any page of the process's own
                if vma.anon_vma is None:
                    self.journal.set(vma, "anon_vma", new_anon_vma())
                page = self.alloc_pages(0, "HighMem", owner=proc.anon_owner, zero=True)
                self.journal.add(self.anon_exclusive, page.pfn)
            lo, hi = max(addr, va), min(addr + len(data), va + PAGE_SIZE)
            self.mem.write(page.phys + (lo - va), data[lo - addr:hi - addr])
            self.set_user_pte(proc, va, self.mk_pte(page.pfn, self.vm_page_prot(vma.vm_flags)), writer)

    # -- looking ------------------------------------------------------------------------

    def proc_maps(self, proc: Process) -> str:
        """``/proc/PID/maps``: start-end perms offset dev inode name (fs/proc/task_mmu.c
        show_map_vma / show_vma_header_prefix: ``%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ``
        and, for a named mapping, blanks up to column ``25 + sizeof(void *) * 6`` (seq_setwidth
        then seq_pad; pad_len_spaces in 2.6) before the name; an anonymous mapping without a
        name keeps the trailing blank), then the arch's gate area (``get_gate_vma``: x86_64's
        ``[vsyscall]``). Every mapping here is anonymous: device 00:00, inode 0, and offset 0
        -- or, before 2.6.32 (era ``maps_anon_offset``), ``vm_pgoff << PAGE_SHIFT``, which for
        anonymous memory is its own start (mmap_region/do_brk/insert_vm_struct set vm_pgoff =
        vm_start >> PAGE_SHIFT, and splits, merges and stack growth keep it linear), except
        for the stack: exec builds it below STACK_TOP_MAX and shift_arg_pages moves the VMA,
        not its pgoff, so it reads STACK_TOP_MAX - size (``bfa6d000-bfa82000 rw-p bffeb000``
        in a real 2.6.24 log; tests/golden/proc_maps_i386_2.6.24.txt)."""
        pad = 25 + self.ptr_size * 6 - 1  # seq_setwidth(); seq_pad() adds one more
        by_pgoff = self.era.maps_anon_offset == "vm_pgoff"

        def line(start: int, end: int, perms: str, offset: int, name: str) -> str:
            text = f"{start:08x}-{end:08x} {perms} {offset:08x} 00:00 0 "
            return text.ljust(pad) + " " + name if name else text

        lines = []
        for v in proc.vmas:
            offset = 0
            if by_pgoff:
                offset = self.stack_top - (v.vm_end - v.vm_start) if v.name == "[stack]" else v.vm_start
            lines.append(line(v.vm_start, v.vm_end, v.perms(), offset, v.name))
        gate = self.arch.gate_vma(self)
        if gate is not None:
            lines.append(line(gate[0], gate[1], gate[2], 0, gate[3]))
        return "\n".join(lines) + ("\n" if lines else "")
