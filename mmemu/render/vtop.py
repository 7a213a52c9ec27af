"""The crash utility's ``vtop`` output for one address (memory.c ``cmd_vtop``/``do_vtop``,
crash-utility/crash read at commit 004218c5), followed by the ``struct page`` line crash
prints from ``dump_mem_map``.

The header (``VIRTUAL  PHYSICAL``, the address and where it leads), the VMA of a user
address (``vm_area_dump``) and the blank lines between the parts are crash's generic part;
the walk lines in between are the arch's (:meth:`mmemu.arch.Arch.vtop_lines`: x86.c,
x86_64.c, riscv64.c, arm64.c), and so is what counts as present
(:meth:`mmemu.arch.Arch.vtop_paddr`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MmemuError
from .text import center, page_line

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.process import Process


def _unity_paddr(kernel, va: int) -> int | None:
    """``VTOP(kvaddr)`` of an address crash does not take for a vmalloc one (the direct map,
    the kernel image's own mapping): x86_64.c x86_64_kvtop, x86.c x86_kvtop, riscv64.c
    riscv64_kvtop ``if (!IS_VMALLOC_ADDR(kvaddr)) { *paddr = VTOP(kvaddr); if (!verbose)
    return TRUE; }``: do_vtop prints that physical address (and its struct page) whatever the
    verbose walk after it finds."""
    try:
        return kernel.virt_to_phys(va)
    except MmemuError:
        return None


def vma_lines(kernel, vma) -> list[str]:
    """memory.c vm_area_dump(UVADDR): the ``vma_header`` (``VMA`` centred in VADDR_PRLEN,
    ``START`` and ``END`` centred right in UVADDR_PRLEN, MINSPACE (2 blanks) between, then
    ``  FLAGS`` and ``FILE``) and PRINT_VMA_DATA: ``%s  %s  %s %6llx  %s`` of the
    vm_area_struct's address, vm_start, vm_end, vm_flags and the file's path (empty for
    anonymous memory, so the row ends in two blanks). mmemu's VMAs live nowhere in kernel
    memory: their address prints as ``-``."""
    vp = up = 2 * kernel.ptr_size
    head = f"{center('VMA', vp)}  {center('START', up, True)}  {center('END', up, True)}  FLAGS  FILE"
    row = f"{center('-', vp)}  {vma.vm_start:>{up}x}  {vma.vm_end:>{up}x} {vma.vm_flags:6x}  "
    return [head, row]


def vtop(kernel: "Kernel", va: int, root: int | None = None, process: "Process | None" = None) -> str:
    """crash's ``vtop``: a kernel address through the master table (or *root*); a user
    address (below TASK_SIZE) as ``vtop -c PID`` in *process*, followed by its VMA. Without a
    process crash's context is a kernel thread, which has no VMA: ``(not accessible)``.

    do_vtop: ``VIRTUAL`` and ``PHYSICAL`` left-justified in VADDR_PRLEN (UVADDR_PRLEN for
    the user one: both 8 on i386, 16 on the 64-bit arches, defs.h), the address and the
    physical address (or ``(not mapped)``) the same way, a blank line, the verbose walk, a
    blank line (``fprintf(fp, "\\n")``), then for a page that exists its struct page."""
    prlen = 2 * kernel.ptr_size
    out = [f"{'VIRTUAL':<{prlen}}  {'PHYSICAL':<{prlen}}"]
    arch = kernel.arch
    if va < kernel.task_size:  # vaddr_type: UVADDR
        vma = process.find_vma(va) if process is not None else None
        if vma is None or vma.vm_start > va:  # IN_TASK_VMA
            out += [f"{va:<{prlen}x}  (not accessible)", ""]
            return "\n".join(out) + "\n"
        root = kernel.root_for(va, process)
        walk = kernel.pgtable.walk(root, va)
        paddr = arch.vtop_paddr(kernel, walk, True)
        out.append(f"{va:<{prlen}x}  " + (f"{paddr:<{prlen}x}" if paddr is not None else "(not mapped)"))
        out.append("")
        out += arch.vtop_lines(kernel, walk, root, process)
        out.append("")
        out += vma_lines(kernel, vma)
    else:
        if process is not None:
            root = kernel.root_for(va, process)
        root = kernel.pgd if root is None else root
        walk = kernel.pgtable.walk(root, va)
        paddr = _unity_paddr(kernel, va)
        if paddr is None:
            paddr = arch.vtop_paddr(kernel, walk, False)
        out.append(f"{va:<{prlen}x}  " + (f"{paddr:<{prlen}x}" if paddr is not None else "(not mapped)"))
        out.append("")
        out += arch.vtop_lines(kernel, walk, root, None)
    out.append("")
    if paddr is not None:  # page_exists && phys_to_page(paddr)
        out += page_line(kernel, paddr)
    return "\n".join(out) + "\n"
