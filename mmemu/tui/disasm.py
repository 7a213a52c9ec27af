"""A module's code around an address, disassembled with capstone from the bytes the kernel's
page tables map there (not from the file: what runs is what was relocated)."""

from __future__ import annotations

#: the ELF machine of the arch's modules (mmemu.arch.Arch.elf_machine) -> capstone's
#: (architecture, mode) names; 32/64 where the machine has both
_CAPSTONE = {
    "EM_X86_64": ("CS_ARCH_X86", ("CS_MODE_64",)),
    "EM_386": ("CS_ARCH_X86", ("CS_MODE_32",)),
    "EM_AARCH64": ("CS_ARCH_ARM64", ("CS_MODE_ARM",)),
    "EM_RISCV": ("CS_ARCH_RISCV", ("CS_MODE_RISCV64", "CS_MODE_RISCVC")),
}


def disassembler(k):
    """A capstone Cs for the machine's arch, or None if capstone does not know it."""
    import capstone

    spec = _CAPSTONE.get(getattr(k.arch, "elf_machine", ""))
    if spec is None:
        return None
    arch, modes = spec
    mode = 0
    for m in modes:
        mode |= getattr(capstone, m)
    return capstone.Cs(getattr(capstone, arch), mode)


def _read_mapped(k, va: int, n: int) -> bytes:
    """The bytes at [va, va+n) through the kernel's tables; stops at the first unmapped page."""
    out = bytearray()
    while n > 0:
        try:
            w = k.walk_mm(va)
        except Exception:  # not an address of this mode
            break
        if not w.mapped:
            break
        chunk = min(n, 4096 - (va & 4095))
        out += k.mem.read(w.phys, chunk)
        va += chunk
        n -= chunk
    return bytes(out)


def disassemble(k, addr: int, before: int = 4, after: int = 10) -> list[tuple[int, str, str, bool]]:
    """(address, hex bytes, ``mnemonic operands``, is *addr*) for the instructions around
    *addr*: decoding starts at the function's start where kallsyms knows it (x86 cannot be
    decoded backwards), else a little before."""
    cs = disassembler(k)
    if cs is None:
        return []
    start, end = addr, addr + 16 * (after + 1)
    sym = k.symbol_at(addr) or ""
    if "+0x" in sym:  # name+0xoff/0xsize [module]
        off, _, size = sym.split("+", 1)[1].split(" ", 1)[0].partition("/")
        start = addr - int(off, 16)
        if size:
            end = min(end, start + int(size, 16))
    code = _read_mapped(k, start, end - start)
    rows = []
    for insn in cs.disasm(code, start):
        rows.append((insn.address, insn.bytes.hex(" "), f"{insn.mnemonic} {insn.op_str}".strip(),
                     insn.address == addr))
        if insn.address > addr and sum(1 for r in rows if r[0] > addr) >= after:
            break
    i = next((n for n, r in enumerate(rows) if r[0] >= addr), len(rows))
    return rows[max(0, i - before):]
