"""The built-in demo: a headless tour of the four kinds of kernel mapping and of demand
paging, on an i386 machine with HighMem and on an x86_64 one, printed in the formats of
the kernel's own tools (crash's vtop and kmem -v, ptdump, /proc/PID/maps, the oops)."""

from __future__ import annotations

from typing import Callable

from . import boot
from .kernel import PROT_EXEC, PROT_READ
from .render.layout import layout_table
from .render.ptdump import ptdump
from .render.vtop import vtop


def touch_pages_code(bits: int, base: int, n: int) -> bytes:
    """User code: write one byte in each of *n* pages from *base*, then exit(0)."""
    if bits == 64:  # mov rbx,base; mov rcx,n; 1: mov [rbx],al; add rbx,4096; dec rcx; jnz 1b; exit
        return bytes.fromhex("48bb" + base.to_bytes(8, "little").hex() + "48b9" + n.to_bytes(8, "little").hex()
                             + "8803" "4881c300100000" "48ffc9" "75f2" "b83c000000" "31ff" "0f05")
    # mov ebx,base; mov ecx,n; 1: mov [ebx],al; add ebx,4096; dec ecx; jnz 1b; mov eax,1; xor ebx,ebx; int 0x80
    return bytes.fromhex("bb" + base.to_bytes(4, "little").hex() + "b9" + n.to_bytes(4, "little").hex()
                         + "8803" "81c300100000" "49" "75f5" "b801000000" "31db" "cd80")


def read_byte_code(bits: int) -> bytes:
    """Kernel code: return the byte at the address in the first argument."""
    return bytes.fromhex("0fb607c3") if bits == 64 else bytes.fromhex("0fb600c3")  # movzx eax,byte [rdi|eax]; ret


def _section(out: Callable[[str], None], title: str) -> None:
    out("")
    out(f"== {title} " + "=" * max(0, 74 - len(title)))


def tour(arch: str, kernel: str, ram: str, out: Callable[[str], None] = print) -> None:
    from .cpu import Cpu

    k = boot(arch=arch, kernel=kernel, ram=ram)
    try:
        cpu = Cpu(k)
        bits = cpu.bits
        _section(out, f"{arch} {k.paging.name}, kernel {kernel}, {ram} RAM: the layout")
        out(layout_table(k.layout, 16 if bits == 64 else 8).split("\n\n")[0])

        _section(out, "the direct mapping: __va(0x123456)")
        out(vtop(k, k.phys_to_virt(0x123456)))

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
        data = k.mmap(p, n * 4096)
        text = k.mmap(p, 4096, PROT_READ | PROT_EXEC)
        k.install_user_pages(p, text, touch_pages_code(bits, data, n))
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
        k.write(code, read_byte_code(bits))
        guard = v + 3 * 4096
        result = cpu.call(code, guard)
        out(result.report)
        out("(the emulated kernel is still alive: "
            f"{cpu.call(code, v).reason} from the mapped part)")

        _section(out, "ptdump: the vmalloc area now")
        start, end = k.layout["VMALLOC_START"], v + 16 * 4096
        lines = [line for line in ptdump(k).splitlines()
                 if line.startswith("0x") and start <= int(line[2:line.index("-")], 16) < end]
        out("\n".join(lines[:12]))
        k.check_invariants()
    finally:
        k.close()


def run(out: Callable[[str], None] = print) -> None:
    tour("i386", "3.10", "1G", out)
    tour("x86_64", "6.6", "4G", out)
