"""The machine's RAM: one anonymous mapping, shared zero-copy with Unicorn.

The mapping is private, anonymous and ``MAP_NORESERVE``: the host commits a page only when
it is first written, so a 64 GiB machine costs what its page tables and touched frames cost.
Unicorn maps the same bytes through ``mem_map_ptr`` (see :mod:`mmemu.cpu`), so an entry the
engine writes here is the entry the CPU walks, with no copy in between.
"""

from __future__ import annotations

import ctypes
import mmap
import struct

from .errors import AddressError, ConfigError

_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Linux's value; Python < 3.12 lacks the name

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class PhysMem:
    """``size`` bytes of physical memory at physical address 0."""

    def __init__(self, size: int):
        if size <= 0 or size % mmap.PAGESIZE:
            raise ConfigError(f"RAM size {size} is not a positive multiple of the page size")
        try:
            self.mem = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        except (OSError, OverflowError) as exc:
            raise ConfigError(f"cannot reserve {size >> 20} MiB of host address space for the emulated RAM: {exc}") from exc
        self.size = size
        self.view = memoryview(self.mem)
        self._cbuf = ctypes.c_char.from_buffer(self.mem)

    @property
    def host_address(self) -> int:
        """Address of the RAM in this process, for Unicorn's ``mem_map_ptr``."""
        return ctypes.addressof(self._cbuf)

    def _check(self, pa: int, n: int) -> None:
        if pa < 0 or pa + n > self.size:
            raise AddressError(f"physical range {pa:#x}-{pa + n:#x} is outside RAM (0-{self.size:#x})")

    def read(self, pa: int, n: int) -> bytes:
        self._check(pa, n)
        return self.mem[pa:pa + n]

    def write(self, pa: int, data: bytes) -> None:
        self._check(pa, len(data))
        self.view[pa:pa + len(data)] = data

    _ZERO_PAGE = bytes(4096)

    def zero(self, pa: int, n: int) -> None:
        self._check(pa, n)
        self.view[pa:pa + n] = self._ZERO_PAGE if n == 4096 else bytes(n)

    def read_u32(self, pa: int) -> int:
        return _U32.unpack_from(self.mem, pa)[0]

    def read_u64(self, pa: int) -> int:
        return _U64.unpack_from(self.mem, pa)[0]

    def write_u32(self, pa: int, value: int) -> None:
        _U32.pack_into(self.mem, pa, value)

    def write_u64(self, pa: int, value: int) -> None:
        _U64.pack_into(self.mem, pa, value)

    def close(self) -> None:
        """Release the host mapping (only once nothing else holds a view of it)."""
        del self._cbuf
        self.view.release()
        self.mem.close()
