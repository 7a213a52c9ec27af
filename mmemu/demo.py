"""The built-in demo: a headless tour of the four kinds of kernel mapping and of demand
paging, on an i386 machine with HighMem and on an x86_64 one by default (any registered
arch on request), printed in the formats of the kernel's own tools (crash's vtop and
kmem -v, ptdump, /proc/PID/maps, the oops). The guest programs come from the arch's CPU
adapter, so the tour is the same on every arch."""

from __future__ import annotations

from typing import Callable

from . import boot
from .errors import ConfigError
from .kernel import PROT_EXEC, PROT_READ
from .render.layout import layout_table
from .render.ptdump import ptdump
from .render.vtop import vtop


def _section(out: Callable[[str], None], title: str) -> None:
    out("")
    out(f"== {title} " + "=" * max(0, 74 - len(title)))


def tour(arch: str, kernel: str, ram: str, out: Callable[[str], None] = print) -> None:
    from .cpu import Cpu

    k = boot(arch=arch, kernel=kernel, ram=ram)
    try:
        cpu = Cpu(k)
        ad = cpu.adapter
        _section(out, f"{arch} {k.paging.name}, kernel {kernel}, {ram} RAM: the layout")
        out(layout_table(k.layout, 2 * k.ptr_size).split("\n\n")[0])

        pa = k.PHYS_OFFSET + 0x123456  # RAM starts at PHYS_OFFSET (0 on a PC)
        _section(out, f"the direct mapping: __va({pa:#x})")
        out(vtop(k, k.phys_to_virt(pa)))

        _section(out, "vmalloc(3 pages): scattered frames behind contiguous addresses, then a guard page")
        v = k.vmalloc(3 * 4096)
        out(k.kmem_v())
        for i in range(3):
            out(f"vmalloc_to_page({v + i * 4096:#x}) = pfn {k.vmalloc_to_page(v + i * 4096):#x}")
        out(vtop(k, v))

        if k.has_highmem:
            _section(out, "kmap: a HighMem page in a pkmap slot (one page table holds them all)")
            page = k.alloc_pages(0, "HighMem", owner="demo")
            addr = k.kmap(page)
            out(f"kmap(pfn {page.pfn:#x}) = {addr:#x}   pkmap_count[{k.PKMAP_NR(addr)}] = "
                f"{k.pkmap_count[k.PKMAP_NR(addr)]}   last_pkmap_nr = {k.last_pkmap_nr}")
            out(vtop(k, addr))
            _section(out, "kmap_atomic / kmap_local: the per-CPU fixmap slots")
            other = k.alloc_pages(0, "HighMem", owner="demo")
            if k.kmap_scheme == "km_type":
                slot = k.kmap_atomic(other, "KM_USER0")
            elif k.kmap_scheme == "kmap_local":
                slot = k.kmap_local_page(other)
            else:
                slot = k.kmap_atomic(other)
            out(f"{k.kmap_scheme}: pfn {other.pfn:#x} at {slot:#x} = __fix_to_virt(FIX_KMAP_BEGIN + 0) "
                f"= {k.fix_to_virt('FIX_KMAP_BEGIN'):#x}")
            out(vtop(k, slot))

        _section(out, "a process: VMAs, and pages that exist only once touched (demand paging on the CPU)")
        p = k.create_process("demo")
        n = 64
        data = k.mmap(p, None, n * 4096)
        text = k.mmap(p, None, 4096, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, text, ad.program_touch_pages(data, n))
        out(f"$ cat /proc/{p.pid}/maps   (before)")
        out(k.proc_maps(p).rstrip())
        result = cpu.run_user(p, text)
        out(f"user code ran: {result.reason} {result.value}, {result.faults} page faults handled "
            f"(first: {result.fault_log[0][3]})")
        out(vtop(k, data + 5 * 4096, process=p))

        _section(out, "fork: copy-on-write")
        child = k.fork(p, "child")
        pfn = k.walk(data, p.pgd).phys >> 12
        out(f"after fork both map pfn {pfn:#x} read-only, refcount {k.frames.allocated[pfn].refcount}")
        k.access(data, "write", user=True, process=child)
        how = next(e.writer for e in reversed(k.recent_events) if e.writer.startswith("wp_page"))
        out(f"child's write: {how}; the child now maps pfn "
            f"{k.walk(data, child.pgd).phys >> 12:#x}, the parent keeps {pfn:#x} "
            f"(refcount {k.frames.allocated[pfn].refcount})")

        _section(out, "a kernel bug: reading the guard page after a vmalloc area")
        k.switch_to(None)
        code = k.vmalloc_range(4096, k.layout["VMALLOC_START"], k.layout["VMALLOC_END"], prot="PAGE_KERNEL_EXEC",
                               caller="module_alloc")
        k.write(code, ad.function_read_byte())
        guard = v + 3 * 4096
        result = cpu.call(code, guard)
        out(result.report)
        out("(the emulated kernel is still alive: "
            f"{cpu.call(code, v).reason} from the mapped part)")

        _section(out, "ptdump: the vmalloc area now")
        start, end = k.layout["VMALLOC_START"], v + 16 * 4096
        try:
            dump = ptdump(k)
        except ConfigError as exc:  # an era without a dump (x86 before 2.6.25) says so
            out(f"({exc})")
        else:
            lines = [line for line in dump.splitlines()
                     if line.startswith("0x") and start <= int(line[2:line.index("-")], 16) < end]
            out("\n".join(lines[:12]))
        k.check_invariants()
    finally:
        k.close()


#: the machines of the default tour: i386 with HighMem (pkmap, kmap_atomic), x86_64
DEFAULT_TOUR = (("i386", "3.10", "1G"), ("x86_64", "6.6", "4G"))


def run(out: Callable[[str], None] = print, machines=DEFAULT_TOUR) -> None:
    for arch, kernel, ram in machines:
        tour(arch, kernel, ram, out)
