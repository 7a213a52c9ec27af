"""The page-fault path: one handler for every fault, from code on the CPU or from an access
made through the emulator's API (arch/x86/mm/fault.c, mm/memory.c).

Kernel addresses: the arch's lazy fixups first (x86's and RISC-V's ``vmalloc_fault`` copy
a missing top-level entry from the master page table, :meth:`copy_kernel_pgd_entry`); a
fault that the tables would not raise now (a stale TLB entry) is spurious; anything else
is an oops, reported in the arch's words. User addresses: ``find_vma``, ``access_error``, then ``handle_mm_fault`` (the
zero page on a read, a fresh zeroed page on a write, copy-on-write on a write to a shared
page); outside any VMA or against its permissions: SIGSEGV for user mode, an oops for
the kernel. Plugins see every fault first (``mmemu_handle_fault``, first result wins).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MmemuError, OutOfMemory
from ..faults import RESERVED, Fault
from ..plugins import live_hookimpls
from ..units import PAGE_SHIFT, PAGE_SIZE
from .base import need_int, operation
from .lifetimes import new_anon_vma
from .process import VM_EXEC, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE, Process, Vma

#: the default stack limit (include/uapi/linux/resource.h _STK_LIM, 8 MiB), which
#: acct_stack_growth() holds a growing stack VMA to
RLIMIT_STACK = 8 << 20


@dataclass(frozen=True, slots=True)
class FaultResolution:
    """What the fault path decided: ``retry`` (the tables now allow the access), ``oops``
    or ``sigsegv`` (with the kernel's report)."""

    action: str
    how: str = ""  # the kernel function that resolved it, or why it could not
    report: str = ""


#: the resolutions of the handled faults, one per kernel function (made once: every demand
#: fault returns one)
_RETRY: dict[str, FaultResolution] = {}


def _retry(how: str) -> FaultResolution:
    res = _RETRY.get(how)
    if res is None:
        res = _RETRY[how] = FaultResolution("retry", how)
    return res


class FaultMixin:
    """``handle_page_fault`` and the accesses made through the API."""

    def _init_faults(self) -> None:
        self.die_counter = 0
        self.fault_count = 0
        self._fault_hook = self.pm.hook.mmemu_handle_fault
        self._fault_impls = live_hookimpls(self._fault_hook)  # true: a plugin sees faults first
        # the arch's test, with this kernel's layout bound once (asked on every fault)
        self._in_kernel_space = self.arch.kernel_space_test(self.layout)
        # 2.6.24-2.6.31 had no zero page for anonymous read faults: a fresh zeroed page
        self.anon_zero_page = self.era.anon_zero_page
        #: the zone of GFP_HIGHUSER (user pages): HighMem where the machine has it
        self._highuser_zone = "HighMem" if "HighMem" in self.frames.zones else "Normal"

    # -- the entry point --------------------------------------------------------------

    @operation
    def handle_page_fault(self, fault: Fault) -> FaultResolution:
        """``exc_page_fault``: decide and do what the kernel would."""
        count = self.fault_count  # (journal.set, inline: every fault counts)
        self.journal.undo.append((setattr, (self, "fault_count", count)))
        self.fault_count = count + 1
        proc = fault.process
        if proc is None:
            fault.process = proc = self.current
        # what the mapping events of this fault were done for: ``page fault at 0x... in
        # comm[pid]``, as a format and its values (made into words only if an event is read)
        prev = self.event_context
        self.event_context = ("page fault at {:#x} in {}[{}]", fault.address, proc.comm, proc.pid) \
            if proc is not None else ("page fault at {:#x} in the kernel", fault.address)
        try:
            if self._fault_impls:
                plugged = self._fault_hook(kernel=self, fault=fault)
                if plugged is not None:
                    return plugged
            if self._in_kernel_space(fault.address):
                return self._kernel_address_fault(fault)
            return self._user_address_fault(fault)
        finally:
            self.event_context = prev

    def fault_in_kernel_space(self, address: int) -> bool:
        """The address belongs to the kernel's half (the arch decides: x86_64's vsyscall
        page counts as user)."""
        return self._in_kernel_space(address)

    # -- kernel addresses ---------------------------------------------------------------

    def _kernel_address_fault(self, fault: Fault) -> FaultResolution:
        if not fault.user:
            how = self.arch.kernel_fault_fixup(self, fault)
            if how:
                return _retry(how)
        if self.spurious_kernel_fault(fault):
            return _retry("spurious_kernel_fault")
        if fault.user:
            return self.bad_area(fault, "SEGV_MAPERR")
        return self.no_context(fault)

    def fault_pgd(self, fault: Fault) -> int:
        """The root table the faulting access went through: its process's page directory,
        or init_mm's for a kernel thread (and the kernel root for the kernel half of a
        mode with one). An API access made for a process that is not the current one
        faults in that process's directory, not in the current one."""
        return self.root_for(fault.address, fault.process, fault.user)

    def copy_kernel_pgd_entry(self, root: int, address: int, writer: str = "vmalloc_fault") -> bool:
        """The lazy half of keeping page directories in step (``vmalloc_sync_one``): copy
        the master's kernel entry for *address*, at the level the directories hold copies
        of (the top level, or the pmd below it: BootPlan ``kernel_copy_level``), into the
        directory at *root* when it is missing there and present in the master. True if an
        entry was copied. The copy happens even if the lower levels of the master do not
        map the address (the kernel copies first and checks after)."""
        if root == self.pgd or not self.plan.copies_kernel_pgd:
            return False
        top = self.paging.levels[0]
        index = (address >> top.shift) & (top.entries - 1)
        if index < self.KERNEL_PGD_BOUNDARY:
            return False
        part = index - self.KERNEL_PGD_BOUNDARY if self.plan.kernel_copy_level else 0
        src, li, _first, base = self.kernel_part(self.pgd)[part]
        dst = self.kernel_part(root)[part][0]
        if src is None or dst is None:
            return False
        lv = self.paging.levels[li]
        i = (address >> lv.shift) & (lv.entries - 1)
        mine, master = self.pgtable.read_entry(dst, i, li), self.pgtable.read_entry(src, i, li)
        if mine or self.pgtable.decode(li, master)[0] == 0:
            return False  # already there (or different: not something a sync repairs), or nothing to copy
        self._set_kernel_entry(dst, li, i, base, master, root, writer)
        return True

    def spurious_kernel_fault(self, fault: Fault) -> bool:
        """The tables (of the faulting directory) allow this access now: the fault came
        from a stale TLB entry. Only faults on a translation that exists qualify, as in
        the kernel."""
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
        if not fault.user:
            why = self.arch.kernel_access_to_user(self, fault)
            if why:
                return self.no_context(fault, why)
        if fault.kind == RESERVED:  # (fault.rsvd, inline: every user fault asks)
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
            self.journal.set(vma, "vm_start", start)  # expand_stack
        if self.access_error(fault, vma):
            return self.bad_area(fault, "SEGV_ACCERR")
        try:
            how = self.handle_mm_fault(proc, vma, fault.address, fault.access == "write")
        except OutOfMemory as exc:
            return FaultResolution("oom", "pagefault_out_of_memory",
                                   f"Out of memory: {exc}\nKilled process {proc.pid} ({proc.comm})")
        return _RETRY.get(how) or _retry(how)

    @staticmethod
    def access_error(fault: Fault, vma: Vma) -> bool:
        """access_error() (arch/x86/mm/fault.c; arm64 and RISC-V check the same VMA flags):
        a write needs VM_WRITE, a fetch VM_EXEC, a read any access; a read or fetch that
        faulted on a permission of a present page is an error (the kernel maps what the VMA
        allows: the page forbids what the VMA forbids)."""
        access = fault.access  # (the properties fault.write and fault.instr, inline: every fault asks)
        if access == "write":
            return not vma.vm_flags & VM_WRITE
        if fault.kind == "protection":
            return True
        if access == "exec":
            return not vma.vm_flags & VM_EXEC
        return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)

    def handle_mm_fault(self, proc: Process, vma: Vma, address: int, write: bool) -> str:
        """``handle_pte_fault``: returns the name of the function that resolved it. The pte
        is looked up once and stays mapped (HIGHPTE) while the fault is handled."""
        va = address & ~(PAGE_SIZE - 1)
        # pte_lookup's common case first: a page table in lowmem (no kmap), the entry read with it
        found = None if self.highpte else self.pgtable.pte_entry(proc.pgd, va)
        if found is None:
            slot, kmapped = self.pte_lookup(proc, va, alloc=True)
            pte = self.pgtable.read_entry(slot[0], slot[1])  # ptep_get
        else:
            (slot, pte), kmapped = found, None
        codec = self.codec
        try:
            if not codec.pte_present(pte):
                return self.do_anonymous_page(proc, vma, va, write, slot)
            if write and not codec.pte_write(pte):
                return self.do_wp_page(proc, vma, va, pte, slot)
            # present and allowed: a stale TLB entry (flush_tlb_fix_spurious_fault), or the
            # access flag to set (arm64 without hardware AF): pte_mkyoung, pte_mkdirty
            new = codec.pte_mkyoung(pte)
            if write:
                new = codec.pte_mkdirty(new)
            if new != pte:
                self.write_slot(slot, va, new, "handle_pte_fault")
        finally:
            if kmapped is not None:
                self.pte_unmap(kmapped)
        self.flush_tlb_one_kernel(va)
        return "handle_pte_fault (spurious)"

    def do_anonymous_page(self, proc: Process, vma: Vma, va: int, write: bool, slot) -> str:
        prot = self._protection_map[vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]  # vm_page_prot
        if vma.shm is not None:
            return self.shmem_fault(vma, va, write, slot, prot)
        if not write and self.anon_zero_page:
            # the shared zero page, read-only, no reference taken: pte_mkspecial(pfn_pte(
            # my_zero_pfn(address), vma->vm_page_prot)) since its return in 2.6.32 (the era's
            # zero_page_special); no anon_vma either, so fork leaves it to fault
            entry = self.mk_pte(self.zero_pfn, prot)
            if self.era.zero_page_special:
                entry = self.codec.pte_mkspecial(entry)
            self.write_slot(slot, va, entry, "do_anonymous_page")
            return "do_anonymous_page (zero page)"
        if vma.anon_vma is None:
            self.journal.set(vma, "anon_vma", new_anon_vma())  # anon_vma_prepare
        # alloc_zeroed_user_highpage_movable (the fault is the operation: the allocation joins
        # it without a nested one; _alloc_pages, inline)
        pfn = self.frames.alloc_pages(0, self._highuser_zone, proc.anon_owner).pfn
        self.mem.clear_page(pfn << PAGE_SHIFT)
        exclusive = self.anon_exclusive  # page_add_new_anon_rmap: exclusive (journal.add, inline)
        if pfn not in exclusive:
            exclusive.add(pfn)
            self.journal.undo.append((exclusive.discard, (pfn,)))
        codec = self.codec
        entry = codec.pfn_pte(pfn, prot)  # mk_pte, inline: a private page is never PROT_NONE (no L1TF inversion)
        # maybe_mkwrite(pte_mkdirty(...)): the page is private to this process, so a read
        # fault of the kernels without the zero page (2.6.24-2.6.31) maps it writable and
        # dirty too (do_anonymous_page had no write_access branch left)
        if write or not self.anon_zero_page:
            entry = codec.pte_mkdirty(entry)
            if vma.vm_flags & VM_WRITE:
                entry = codec.pte_mkwrite(entry)
        self.pgtable.write_pte_slot(slot[0], slot[1], entry, "do_anonymous_page", va)  # set_pte_at
        return "do_anonymous_page"

    def shmem_fault(self, vma: Vma, va: int, write: bool, slot, prot: int) -> str:
        """A fault in shared anonymous memory (mm/shmem.c shmem_fault, then finish_fault's
        do_set_pte): the object's page at this offset, allocated zeroed the first time
        (never the zero page: PAGE_SHARED is writable); the pte takes a reference of its
        own besides the object's. Whoever shares the object (a forked child) finds the
        same page."""
        obj = vma.shm
        pgoff = vma.pgoff + ((va - vma.vm_start) >> PAGE_SHIFT)
        pfn = obj.pages.get(pgoff)
        if pfn is None:
            page = self.alloc_pages(0, "HighMem", owner=f"shmem (/dev/zero inode {obj.ino})", zero=True)
            pfn = page.pfn
            pages = dict(obj.pages)
            pages[pgoff] = pfn
            self.journal.set(obj, "pages", pages)  # the page cache's reference
        self.frames.get_page(pfn)  # the pte's
        entry = self.mk_pte(pfn, prot)
        if write:  # maybe_mkwrite(pte_mkdirty(entry), vma)
            entry = self.codec.pte_mkdirty(entry)
            if vma.vm_flags & VM_WRITE:
                entry = self.codec.pte_mkwrite(entry)
        self.write_slot(slot, va, entry, "shmem_fault")
        return "shmem_fault"

    def do_wp_page(self, proc: Process, vma: Vma, va: int, pte: int, slot) -> str:
        """A write to a present read-only page of a writable VMA: reuse the page if this
        process holds the only reference, else copy it (and from the zero page: a fresh
        zeroed page). The old translation is flushed (ptep_clear_flush)."""
        codec = self.codec
        pfn = self.pte_pfn(pte)
        prot = self.vm_page_prot(vma.vm_flags)
        if pfn != self.zero_pfn and self._exclusive(pfn):
            self.journal.add(self.anon_exclusive, pfn)  # page_move_anon_rmap: exclusive again
            self.write_slot(slot, va, codec.pte_mkyoung(codec.pte_mkdirty(codec.pte_mkwrite(pte))), "wp_page_reuse")
            self.flush_tlb_one_kernel(va)
            return "do_wp_page (reuse)"
        if vma.anon_vma is None:
            self.journal.set(vma, "anon_vma", new_anon_vma())  # anon_vma_prepare (wp_page_copy)
        new = self.alloc_pages(0, "HighMem", owner=proc.anon_owner, zero=pfn == self.zero_pfn)
        self.journal.add(self.anon_exclusive, new.pfn)
        if pfn != self.zero_pfn:
            self.mem.write(new.phys, self.mem.read(pfn << PAGE_SHIFT, PAGE_SIZE))  # copy_user_highpage
        self.write_slot(slot, va, 0, "ptep_clear_flush")
        self.flush_tlb_one_kernel(va)
        self.write_slot(slot, va, codec.pte_mkdirty(codec.pte_mkwrite(self.mk_pte(new.pfn, prot))), "wp_page_copy")
        if pfn != self.zero_pfn:
            self.frames.free_pages(pfn)  # put_page on the old one
        return "do_wp_page (copy)"

    # -- the ends ---------------------------------------------------------------------

    def bad_area(self, fault: Fault, code: str) -> FaultResolution:
        if fault.user:
            # show_signal_msg: the line goes to the kernel log (show_unhandled_signals is 1);
            # an arch whose kernel of this era logs none says so with an empty report
            report = self.segfault_report(fault, code)
            if report:
                self.printk(report, "info")
            else:
                proc = fault.process
                who = f"{proc.comm}[{proc.pid}]" if proc is not None else "swapper[0]"
                report = f"{who}: SIGSEGV at {fault.address:#x} (this kernel logs no segfault line)"
            return FaultResolution("sigsegv", code, report)
        return self.no_context(fault)

    def no_context(self, fault: Fault, why: str = "") -> FaultResolution:
        """No fixup: the oops, in the arch's words."""
        self.journal.set(self, "die_counter", self.die_counter + 1)
        report = self.arch.oops_report(self, fault, self.die_counter, why)
        self.printk(report, "alert")  # the oops is in the kernel log (dmesg), as __die prints it
        return FaultResolution("oops", why or "page_fault_oops", report)

    def segfault_report(self, fault: Fault, code: str) -> str:
        """The line the kernel logs for a user SIGSEGV (show_signal_msg), in the arch's words."""
        return self.arch.segfault_report(self, fault)

    # -- accesses through the API ------------------------------------------------------

    @operation
    def access(self, va: int, access: str = "read", user: bool = False, process: Process | None = None,
               max_faults: int = 4, uaccess: bool = False) -> int:
        """Make one access the way code would: walk the current page directory (or
        *process*'s), take the page faults it raises through the fault path, and return
        the physical address reached. An oops raises :class:`~mmemu.errors.Oops`, a user
        fault the kernel answers with SIGSEGV :class:`~mmemu.errors.SegmentationFault`.
        *uaccess*: a kernel access made the way ``copy_to_user`` makes it, with user access
        open (RISC-V sets sstatus.SUM); a plain kernel access to user memory is what the
        arch makes of it (RISC-V 5.12+: an oops)."""
        from ..errors import Oops, SegmentationFault

        need_int(va, "access: va", 0)
        proc = process if process is not None else self.current
        if proc is not None:
            self._live(proc, "access")
        if user and proc is None:
            raise MmemuError("a user-mode access needs a process")
        if access not in ("read", "write", "exec"):
            raise MmemuError(f"access must be 'read', 'write' or 'exec', not {access!r}")
        if not self.paging.is_valid(va):
            raise MmemuError(f"access: {self.paging.describe_invalid(va)}")
        root = self.root_for(va, proc, user)
        for _ in range(max_faults + 1):
            walk = self.pgtable.walk(root, va)
            fault = walk.fault(access, user, uaccess)
            if fault is None:
                return walk.phys
            fault.source, fault.process = "api", proc
            res = self.handle_page_fault(fault)
            if res.action == "oops":
                raise Oops(res.report)
            if res.action == "sigsegv":
                raise SegmentationFault(res.report)
            if res.action == "oom":
                raise OutOfMemory(res.report)
        raise MmemuError(f"access to {va:#x} still faults after {max_faults} handled faults")

    @operation
    def read(self, va: int, size: int, user: bool = False, process: Process | None = None,
             uaccess: bool = False) -> bytes:
        """Read *size* bytes at a virtual address, page by page, faulting as needed
        (*uaccess*: as :meth:`access`)."""
        need_int(size, "read: size", 0)
        out = bytearray()
        while size > 0:
            n = min(size, PAGE_SIZE - (va & 0xFFF))
            out += self.mem.read(self.access(va, "read", user, process, uaccess=uaccess), n)
            va, size = va + n, size - n
        return bytes(out)

    @operation
    def write(self, va: int, data: bytes, user: bool = False, process: Process | None = None,
              uaccess: bool = False) -> None:
        """Write bytes at a virtual address, page by page, faulting as needed (*uaccess*: as
        :meth:`access`)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MmemuError(f"write: data must be bytes, not {type(data).__name__}")
        pos = 0
        self.code_generation += 1  # whatever was translated from these bytes is stale
        while pos < len(data):
            n = min(len(data) - pos, PAGE_SIZE - (va & 0xFFF))
            self.mem.write(self.access(va, "write", user, process, uaccess=uaccess), data[pos:pos + n])
            va, pos = va + n, pos + n
