"""The crash utility's ``vtop`` output for one address (memory.c ``do_vtop``), followed by
the frame record where crash prints the ``struct page`` line.

The header (``VIRTUAL  PHYSICAL``, the address and where it leads) and the VMA line of a
user address are crash's generic part; the walk lines in between are the arch's
(:meth:`mmemu.arch.Arch.vtop_lines`: x86.c, x86_64.c, riscv64.c, arm64.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .text import page_line

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..kernel.process import Process


def vtop(kernel: "Kernel", va: int, root: int | None = None, process: "Process | None" = None) -> str:
    """crash's ``vtop``: a kernel address through the master table (or *root*), a user
    address through *process*'s page directory, followed by its VMA, as ``vtop -u``."""
    user = process is not None and va < kernel.task_size
    if process is not None:
        root = kernel.root_for(va, process)
    root = kernel.pgd if root is None else root
    prlen = 2 * kernel.ptr_size
    walk = kernel.pgtable.walk(root, va)
    out = [f"{'VIRTUAL':<{prlen}}  {'PHYSICAL':<{prlen}}"]
    # do_vtop: fprintf(fp, "%-8lx  %-8lx\n\n", vaddr, paddr) (so: padded, as crash pads)
    out.append(f"{va:<8x}  {walk.phys:<8x}" if walk.mapped else f"{va:<8x}  (not mapped)")
    out.append("")
    out += kernel.arch.vtop_lines(kernel, walk, root, process if user else None)
    out.append("")
    if user:
        vma = process.find_vma(va)
        if vma is not None and vma.vm_start <= va:
            out.append(f"{'VMA':^{prlen}}  {'START':^{prlen}}  {'END':^{prlen}}  FLAGS  FILE")
            out.append(f"{'-':^{prlen}}  {vma.vm_start:>{prlen}x}  {vma.vm_end:>{prlen}x}  {vma.vm_flags:5x}  "
                       f"{vma.name}")
            out.append("")
    if walk.mapped:
        out += page_line(kernel, walk.phys)
    return "\n".join(out).rstrip("\n") + "\n"
