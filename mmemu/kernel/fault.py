"""The page-fault path: one handler for every fault, from code on the CPU or from an access
made through the emulator's API (arch/x86/mm/fault.c, mm/memory.c).

Kernel addresses: ``vmalloc_fault`` (kernels before 5.8) copies a missing top-level entry
of the vmalloc space from the master page table; a fault that the master table would not
raise (a stale TLB entry) is spurious; anything else is an oops, reported in the kernel's
words. User addresses: ``find_vma``, ``access_error``, then ``handle_mm_fault`` (the
zero page on a read, a fresh zeroed page on a write, copy-on-write on a write to a shared
page); outside any VMA or against its permissions: SIGSEGV for user mode, an oops for
the kernel. Plugins see every fault first (``mmemu_handle_fault``, first result wins).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MmemuError, OutOfMemory
from ..pagetable import X86_PF_INSTR, X86_PF_PROT, X86_PF_RSVD, X86_PF_USER, X86_PF_WRITE
from .process import VM_EXEC, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE, Process, Vma

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
X86_PF_PK = 1 << 5
#: the default stack limit (include/uapi/linux/resource.h _STK_LIM, 8 MiB), which
#: acct_stack_growth() holds a growing stack VMA to
RLIMIT_STACK = 8 << 20


@dataclass
class Fault:
    """One page fault: the address (CR2), the x86 error code, where it happened."""

    address: int
    error_code: int
    ip: int | None = None  # the faulting instruction (None for an API access)
    source: str = "api"  # "cpu" or "api"
    process: Process | None = None
    cpu: int = 0
    sp: int = 0  # the stack pointer at the fault (for the segfault line)

    @property
    def write(self) -> bool:
        return bool(self.error_code & X86_PF_WRITE)

    @property
    def user(self) -> bool:
        return bool(self.error_code & X86_PF_USER)

    @property
    def instr(self) -> bool:
        return bool(self.error_code & X86_PF_INSTR)

    @property
    def protection(self) -> bool:
        return bool(self.error_code & X86_PF_PROT)

    @property
    def rsvd(self) -> bool:
        return bool(self.error_code & X86_PF_RSVD)

    @property
    def access(self) -> str:
        return "exec" if self.instr else ("write" if self.write else "read")

    def describe(self) -> str:
        """``#PF: supervisor write access in kernel mode`` wording."""
        who = "user" if self.user else "supervisor"
        what = "instruction fetch" if self.instr else ("write access" if self.write else "read access")
        mode = "user" if self.user else "kernel"
        return f"{who} {what} in {mode} mode"

    def reason(self) -> str:
        if not self.protection:
            return "not-present page"
        if self.rsvd:
            return "reserved bit violation"
        if self.error_code & X86_PF_PK:
            return "protection keys violation"
        return "permissions violation"


@dataclass
class FaultResolution:
    """What the fault path decided: ``retry`` (the tables now allow the access), ``oops``
    or ``sigsegv`` (with the kernel's report)."""

    action: str
    how: str = ""  # the kernel function that resolved it, or why it could not
    report: str = ""


class FaultMixin:
    """``handle_page_fault`` and the accesses made through the API."""

    def _init_faults(self) -> None:
        self.die_counter = 0
        self.fault_count = 0
        # vmalloc_fault: x86_64 until 5.8 (then the vmalloc p4d/pud are preallocated);
        # x86_32 until 5.8 and again from 5.9 ("x86/mm/32: Bring back vmalloc faulting")
        kv = self.spec.kernel
        self.vmalloc_fault_era = kv < "5.8" or (not self.paging.canonical and kv >= "5.9")
        self._user_limit = self.layout.symbols.get("TASK_SIZE_MAX", self.task_size)
        self._vsyscall = self.layout.symbols.get("VSYSCALL_ADDR")
        self._pte_present_bits = self.paging.present | self.paging.global_  # pte_present(): P or PROTNONE
        self._fault_hook = self.pm.hook.mmemu_handle_fault
        # 2.6.24-2.6.31 had no zero page for anonymous read faults ("mm: remove ZERO_PAGE",
        # reinstated in 2.6.32): every fault got a fresh zeroed page
        self.anon_zero_page = not ("2.6.24" <= kv < "2.6.32")

    # -- the entry point --------------------------------------------------------------

    def handle_page_fault(self, fault: Fault) -> FaultResolution:
        """``exc_page_fault``: decide and do what the kernel would."""
        self.fault_count += 1
        if fault.process is None:
            fault.process = self.current
        if self._fault_hook.get_hookimpls():
            plugged = self._fault_hook(kernel=self, fault=fault)
            if plugged is not None:
                return plugged
        # what the mapping events of this fault were done for
        prev, proc = self.event_context, fault.process
        self.event_context = f"#PF at {fault.address:#x} in {proc.comm}[{proc.pid}]" if proc else \
            f"#PF at {fault.address:#x} in the kernel"
        try:
            if self.fault_in_kernel_space(fault.address):
                return self._kernel_address_fault(fault)
            return self._user_address_fault(fault)
        finally:
            self.event_context = prev

    def fault_in_kernel_space(self, address: int) -> bool:
        """x86_64: at or above TASK_SIZE_MAX (the vsyscall page counts as user); i386:
        at or above TASK_SIZE."""
        if self._vsyscall is not None and address & ~0xFFF == self._vsyscall:
            return False
        return address >= self._user_limit

    # -- kernel addresses ---------------------------------------------------------------

    def _kernel_address_fault(self, fault: Fault) -> FaultResolution:
        if not fault.error_code & (X86_PF_RSVD | X86_PF_USER | X86_PF_PROT):
            if self.vmalloc_fault_era and self.vmalloc_fault(fault.address, self.fault_pgd(fault)):
                return FaultResolution("retry", "vmalloc_fault")
        if self.spurious_kernel_fault(fault):
            return FaultResolution("retry", "spurious_kernel_fault")
        if fault.user:
            return self.bad_area(fault, "SEGV_MAPERR")
        return self.no_context(fault)

    def fault_pgd(self, fault: Fault) -> int:
        """The page directory the faulting access went through (CR3): its process's, or
        init_mm's for a kernel thread. An API access made for a process that is not the
        current one faults in that process's directory, not in the current one."""
        return fault.process.pgd if fault.process is not None else self.pgd

    def vmalloc_fault(self, address: int, root: int | None = None) -> bool:
        """Copy the top-level entry for a vmalloc address from the master table into the
        faulting page directory (*root*, the current one by default) when it is missing
        there and present in the master (the pde on i386, the pgd entry on x86_64; 2.6.12
        checked only >= TASK_SIZE). True if the access can now succeed."""
        if self.spec.kernel >= "2.6.26" and not self.layout["VMALLOC_START"] <= address < self.layout["VMALLOC_END"]:
            return False
        if root is None:
            root = self.current_pgd()
        if root == self.pgd:
            return False
        top = self.paging.levels[0]
        index = (address >> top.shift) & (top.entries - 1)
        mine = self.pgtable.entries(root, 0)[index]
        master = self.pgtable.entries(self.pgd, 0)[index]
        if not master & self.paging.present:
            return False  # pgd_none(*pgd_ref) / !pmd_present(*pmd_k): the master has nothing
        if mine == master:
            return False
        if mine:
            return False  # present but different: not something vmalloc_fault repairs
        # The entry is copied first (set_pgd / set_pmd in vmalloc_sync_one), and only then
        # are the lower levels of the master checked: a fault on an unmapped page under a
        # master entry leaves the copy behind and still ends in an oops.
        self.pgtable.set_entry(root, 0, index, master, writer="vmalloc_fault", va=address & ~(top.span - 1),
                               kind="set_pgd")
        return self.walk(address).mapped

    def spurious_kernel_fault(self, fault: Fault) -> bool:
        """The tables (of the current directory) allow this access now: the fault came
        from a stale TLB entry. Only protection faults qualify, as in the kernel."""
        if not fault.protection or fault.rsvd:
            return False
        walk = self.pgtable.walk(self.fault_pgd(fault), fault.address)
        if walk.fault(fault.access, fault.user) is not None:
            return False
        self.flush_tlb_one_kernel(fault.address)
        return True

    # -- user addresses -----------------------------------------------------------------

    def _user_address_fault(self, fault: Fault) -> FaultResolution:
        proc = fault.process
        if fault.rsvd:
            return self.no_context(fault, "Bad pagetable")
        if proc is None:
            return self.no_context(fault)  # a kernel thread has no user address space
        vma = proc.find_vma(fault.address)
        if vma is None:
            return self.bad_area(fault, "SEGV_MAPERR")
        if vma.vm_start > fault.address:
            if not vma.vm_flags & VM_GROWSDOWN:
                return self.bad_area(fault, "SEGV_MAPERR")
            start = fault.address & ~(PAGE_SIZE - 1)
            if vma.vm_end - start > RLIMIT_STACK:
                return self.bad_area(fault, "SEGV_MAPERR")  # acct_stack_growth: -ENOMEM
            vma.vm_start = start  # expand_stack
        if self.access_error(fault, vma):
            return self.bad_area(fault, "SEGV_ACCERR")
        try:
            how = self.handle_mm_fault(proc, vma, fault.address, fault.write)
        except OutOfMemory as exc:
            return FaultResolution("oom", "pagefault_out_of_memory",
                                   f"Out of memory: {exc}\nKilled process {proc.pid} ({proc.comm})")
        return FaultResolution("retry", how)

    @staticmethod
    def access_error(fault: Fault, vma: Vma) -> bool:
        """arch/x86/mm/fault.c access_error()."""
        if fault.write:
            return not vma.vm_flags & VM_WRITE
        if fault.protection:
            return True  # read (or fetch) from a present page: a protection violation
        return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)

    def handle_mm_fault(self, proc: Process, vma: Vma, address: int, write: bool) -> str:
        """``handle_pte_fault``: returns the name of the function that resolved it. The pte
        is looked up once and stays mapped (HIGHPTE) while the fault is handled."""
        va = address & ~(PAGE_SIZE - 1)
        slot, kmapped = self.pte_lookup(proc, va, alloc=True)
        try:
            pte = self.read_slot(slot)
            m = self.paging
            if not pte & self._pte_present_bits:
                return self.do_anonymous_page(proc, vma, va, write, slot)
            if write and not pte & m.write:
                return self.do_wp_page(proc, vma, va, pte, slot)
            # present and allowed: a stale TLB entry (flush_tlb_fix_spurious_fault)
            new = pte | m.accessed | (m.dirty if write else 0)
            if new != pte:
                self.write_slot(slot, va, new, "handle_pte_fault")
        finally:
            self.pte_unmap(kmapped)
        self.flush_tlb_one_kernel(va)
        return "handle_pte_fault (spurious)"

    def do_anonymous_page(self, proc: Process, vma: Vma, va: int, write: bool, slot) -> str:
        prot = self.vm_page_prot(vma.vm_flags)
        # Shared anonymous memory is shmem in the kernel (shmem_fault): never the zero page,
        # which a shared writable pte (PAGE_SHARED) would let the process write into.
        if not write and self.anon_zero_page and not vma.vm_flags & VM_SHARED:
            # the shared zero page, read-only (pte_mkspecial; no reference taken)
            self.write_slot(slot, va, self.mk_pte(self.zero_pfn, prot), "do_anonymous_page")
            return "do_anonymous_page (zero page)"
        page = self.alloc_pages(0, "HighMem", owner=proc.anon_owner, zero=True)
        m = self.paging
        entry = self.mk_pte(page.pfn, prot)
        # maybe_mkwrite(pte_mkdirty(...)): the page is private to this process, so a read
        # fault of the kernels without the zero page (2.6.24-2.6.31) maps it writable and
        # dirty too (do_anonymous_page had no write_access branch left)
        if write or not self.anon_zero_page:
            entry |= m.dirty | (m.write if vma.vm_flags & VM_WRITE else 0)
        self.write_slot(slot, va, entry, "do_anonymous_page")
        return "do_anonymous_page"

    def do_wp_page(self, proc: Process, vma: Vma, va: int, pte: int, slot) -> str:
        """A write to a present read-only page of a writable VMA: reuse the page if this
        process holds the only reference, else copy it (and from the zero page: a fresh
        zeroed page). The old translation is flushed (ptep_clear_flush)."""
        m = self.paging
        pfn = self.pte_pfn(pte)
        prot = self.vm_page_prot(vma.vm_flags)
        if pfn != self.zero_pfn and self._exclusive(pfn):
            self.write_slot(slot, va, pte | m.write | m.dirty | m.accessed, "wp_page_reuse")
            self.flush_tlb_one_kernel(va)
            return "do_wp_page (reuse)"
        new = self.alloc_pages(0, "HighMem", owner=proc.anon_owner, zero=pfn == self.zero_pfn)
        if pfn != self.zero_pfn:
            self.mem.write(new.phys, self.mem.read(pfn << PAGE_SHIFT, PAGE_SIZE))  # copy_user_highpage
        self.write_slot(slot, va, 0, "ptep_clear_flush")
        self.flush_tlb_one_kernel(va)
        self.write_slot(slot, va, self.mk_pte(new.pfn, prot) | m.write | m.dirty, "wp_page_copy")
        if pfn != self.zero_pfn:
            self.frames.free_pages(pfn)  # put_page on the old one
        return "do_wp_page (copy)"

    # -- the ends ---------------------------------------------------------------------

    def bad_area(self, fault: Fault, code: str) -> FaultResolution:
        if fault.user:
            return FaultResolution("sigsegv", code, self.segfault_report(fault, code))
        return self.no_context(fault)

    def no_context(self, fault: Fault, why: str = "") -> FaultResolution:
        """No fixup: the oops."""
        from ..render.oops import oops_report

        self.die_counter += 1
        return FaultResolution("oops", why or "page_fault_oops", oops_report(self, fault, self.die_counter, why))

    def segfault_report(self, fault: Fault, code: str) -> str:
        """show_signal_msg(): ``comm[pid]: segfault at addr ip ... sp ... error ...``."""
        from ..render.oops import segfault_line

        return segfault_line(self, fault, fault.sp)

    # -- accesses through the API ------------------------------------------------------

    def access(self, va: int, access: str = "read", user: bool = False, process: Process | None = None,
               max_faults: int = 4) -> int:
        """Make one access the way code would: walk the current page directory (or
        *process*'s), take the page faults it raises through the fault path, and return
        the physical address reached. An oops raises :class:`~mmemu.errors.Oops`, a user
        fault the kernel answers with SIGSEGV :class:`~mmemu.errors.SegmentationFault`."""
        from ..errors import Oops, SegmentationFault

        proc = process if process is not None else self.current
        if user and proc is None:
            raise MmemuError("a user-mode access needs a process")
        root = self.pgd if proc is None else proc.pgd
        for _ in range(max_faults + 1):
            walk = self.pgtable.walk(root, va)
            code = walk.fault(access, user)
            if code is None:
                return walk.phys
            res = self.handle_page_fault(Fault(va, code, None, "api", proc))
            if res.action == "oops":
                raise Oops(res.report)
            if res.action == "sigsegv":
                raise SegmentationFault(res.report)
            if res.action == "oom":
                raise OutOfMemory(res.report)
        raise MmemuError(f"access to {va:#x} still faults after {max_faults} handled faults")

    def read(self, va: int, size: int, user: bool = False, process: Process | None = None) -> bytes:
        """Read *size* bytes at a virtual address, page by page, faulting as needed."""
        out = bytearray()
        while size > 0:
            n = min(size, PAGE_SIZE - (va & 0xFFF))
            out += self.mem.read(self.access(va, "read", user, process), n)
            va, size = va + n, size - n
        return bytes(out)

    def write(self, va: int, data: bytes, user: bool = False, process: Process | None = None) -> None:
        """Write bytes at a virtual address, page by page, faulting as needed."""
        pos = 0
        while pos < len(data):
            n = min(len(data) - pos, PAGE_SIZE - (va & 0xFFF))
            self.mem.write(self.access(va, "write", user, process), data[pos:pos + n])
            va, pos = va + n, pos + n
