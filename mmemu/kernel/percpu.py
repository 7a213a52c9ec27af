"""Per-cpu areas: the first chunk an SMP kernel embeds in the direct map, and its reserved
region, where module per-cpu variables live (mm/percpu.c, include/linux/percpu.h).

Every CPU has a *unit* of the chunk: the kernel's static per-cpu variables (a copy of
vmlinux's ``.data..percpu``), then ``PERCPU_MODULE_RESERVE`` bytes for modules
(``__alloc_reserved_percpu``: a module's ``.data..percpu`` must stay within 32-bit reach of
the per-cpu base, which the dynamic chunks in vmalloc space are not), then the first dynamic
part. A per-cpu pointer is the address in CPU 0's unit moved to the link address of the
static section (``__addr_to_pcpu_ptr``); CPU n's copy is at ``ptr + __per_cpu_offset[n]``,
the base the CPU's segment register holds (x86_64 %gs, i386 %fs).

The emulated kernel has no static per-cpu variables of its own: their part of each unit is
reserved and zero, sized as the arch's vmlinux has it (:class:`mmemu.arch.PercpuPlan`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..units import PAGE_SHIFT, PAGE_SIZE

#: include/linux/percpu.h (CONFIG_MODULES): the first chunk's region for module per-cpu data
PERCPU_MODULE_RESERVE = 8 << 10
#: include/linux/percpu.h: PCPU_MIN_UNIT_SIZE = PFN_ALIGN(32 << 10)
PCPU_MIN_UNIT_SIZE = 32 << 10
#: include/linux/percpu.h: PCPU_MIN_ALLOC_SIZE = 1 << PCPU_MIN_ALLOC_SHIFT (2)
PCPU_MIN_ALLOC_SIZE = 4
#: include/linux/percpu.h: PERCPU_DYNAMIC_RESERVE, (28 << 10) with BITS_PER_LONG > 32, else (20 << 10)
PERCPU_DYNAMIC_RESERVE = {64: 28 << 10, 32: 20 << 10}


def _pfn_align(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


@dataclass(frozen=True)
class PcpuAllocInfo:
    """``struct pcpu_alloc_info`` of a single-node machine (one group)."""

    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int
    atom_size: int
    alloc_size: int
    #: units in the group (``nr_units``: the CPUs rounded up to units per allocation)
    nr_units: int

    @property
    def size_sum(self) -> int:
        """The part of each unit in use (the rest of the unit is given back to memblock)."""
        return self.static_size + self.reserved_size + self.dyn_size

    def embedded(self) -> str:
        """pcpu_embed_first_chunk's boot line (6.x words: no ``@%p`` since 4.19)."""
        return (f"percpu: Embedded {self.size_sum >> PAGE_SHIFT} pages/cpu s{self.static_size} "
                f"r{self.reserved_size} d{self.dyn_size} u{self.unit_size}")


def pcpu_build_alloc_info(static_size: int, reserved_size: int, dyn_size: int, atom_size: int,
                          nr_cpus: int) -> PcpuAllocInfo:
    """mm/percpu.c ``pcpu_build_alloc_info`` for one NUMA node: the unit size is the smallest
    that fits the three parts (at least PCPU_MIN_UNIT_SIZE), grown so that a whole number of
    units fills each atom-sized allocation with the fewest allocations and at most a third
    of the CPUs' worth wasted."""
    size_sum = _pfn_align(static_size + reserved_size + dyn_size)
    dyn_size = size_sum - static_size - reserved_size
    min_unit_size = max(size_sum, PCPU_MIN_UNIT_SIZE)
    alloc_size = -(-min_unit_size // atom_size) * atom_size  # roundup(min_unit_size, atom_size)

    def fits(upa: int) -> bool:
        return not alloc_size % upa and not (alloc_size // upa) % PAGE_SIZE

    upa = alloc_size // min_unit_size
    while not fits(upa):
        upa -= 1
    best_upa, last_allocs = 0, None
    for upa in range(upa, 0, -1):
        if not fits(upa):
            continue
        allocs = -(-nr_cpus // upa)
        wasted = allocs * upa - nr_cpus
        if wasted > nr_cpus // 3:  # don't waste more than a third of the CPUs' units
            continue
        if last_allocs is not None and allocs > last_allocs:
            break
        last_allocs, best_upa = allocs, upa
    unit_size = alloc_size // best_upa
    nr_units = -(-nr_cpus // best_upa) * best_upa
    return PcpuAllocInfo(static_size, reserved_size, dyn_size, unit_size, atom_size, alloc_size, nr_units)


@dataclass
class PercpuFirstChunk:
    """The first chunk as mm/percpu.c keeps it: ``pcpu_base_addr``, the unit offsets, and
    the reserved region's allocations (``pcpu_reserved_chunk``)."""

    info: PcpuAllocInfo
    #: physical and virtual (direct map) address of CPU 0's unit: ``pcpu_base_addr``
    base_phys: int
    base: int
    #: ``__per_cpu_start``: what a per-cpu pointer is relative to
    static_start: int
    nr_cpus: int
    #: the address width's mask (per-cpu offsets wrap on i386)
    mask: int
    #: allocations in the reserved region: unit offset -> size
    areas: dict[int, int] = field(default_factory=dict)

    def unit_offset(self, cpu: int) -> int:
        return cpu * self.info.unit_size  # pcpu_unit_offsets[cpu]: one group, CPUs in order

    def per_cpu_offset(self, cpu: int) -> int:
        """``__per_cpu_offset[cpu]`` (arch/x86/kernel/setup_percpu.c, mm/percpu.c
        setup_per_cpu_areas): ``pcpu_base_addr - __per_cpu_start + pcpu_unit_offsets[cpu]``."""
        return (self.base - self.static_start + self.unit_offset(cpu)) & self.mask


def memblock_find_top_down(size: int, align: int, reserved: list, usable: list, floor: int,
                           limit: int) -> int | None:
    """mm/memblock.c ``memblock_find_in_range_node`` top-down (the default since 3.13's
    memblock_set_bottom_up(false); x86 memblock since 2.6.35): the highest *align*-ed
    address where *size* bytes of usable memory (pfn ranges *usable*) lie in [*floor*,
    *limit*) clear of every *reserved* (start_pfn, end_pfn, owner) range; None if none fits."""
    for start, end in sorted(usable, reverse=True):
        s, e = max(start << PAGE_SHIFT, floor), min(end << PAGE_SHIFT, limit)
        cand = (e - size) & ~(align - 1)
        while cand >= s:
            clash = [rs << PAGE_SHIFT for rs, re_, _ in reserved
                     if rs << PAGE_SHIFT < cand + size and re_ << PAGE_SHIFT > cand]
            if not clash:
                return cand
            cand = (min(clash) - size) & ~(align - 1)
    return None


def place_first_chunk(plan, nr_cpus: int, bits: int, reserved: list, usable: list,
                      lowmem_end: int) -> tuple[PcpuAllocInfo, int]:
    """Where ``pcpu_embed_first_chunk`` puts the first chunk: ``pcpu_fc_alloc`` is a top-down
    memblock allocation of the whole group (``nr_units * unit_size``, aligned to the atom)
    in the direct-mapped memory, above ``__pa(MAX_DMA_ADDRESS)`` (the plan's ``alloc_floor``)
    when it can (memblock_alloc_from retries from 0). Returns the alloc info and the
    chunk's physical base."""
    info = pcpu_build_alloc_info(plan.static_size, PERCPU_MODULE_RESERVE, PERCPU_DYNAMIC_RESERVE[bits],
                                 plan.atom_size, nr_cpus)
    size, align = info.nr_units * info.unit_size, info.atom_size
    for floor in dict.fromkeys((plan.alloc_floor, 0)):
        base = memblock_find_top_down(size, align, reserved, usable, floor, lowmem_end)
        if base is not None:
            return info, base
    raise ConfigError(f"no room in low memory for the per-cpu first chunk of {nr_cpus} CPU(s) "
                      f"({size:#x} bytes aligned to {align:#x}): more RAM or fewer --cpus")


class PercpuMixin:
    """The per-cpu areas of an SMP kernel (``k.pcpu``; None on a UP kernel)."""

    def per_cpu_offset(self, cpu: int) -> int:
        """``__per_cpu_offset[cpu]``: what the CPU's per-cpu segment base holds."""
        if self.pcpu is None:
            raise ConfigError("a UP kernel has no per-cpu areas (boot with --cpus 2 or more on i386)")
        if not 0 <= cpu < self.pcpu.nr_cpus:
            raise ConfigError(f"no CPU {cpu}: the machine has {self.pcpu.nr_cpus}")
        return self.pcpu.per_cpu_offset(cpu)

    def per_cpu_ptr(self, ptr: int, cpu: int) -> int:
        """``per_cpu_ptr(ptr, cpu)``: CPU *cpu*'s copy of the per-cpu variable at *ptr*."""
        return (ptr + self.per_cpu_offset(cpu)) & self.pcpu.mask

    def alloc_reserved_percpu(self, size: int, align: int) -> int | None:
        """``__alloc_reserved_percpu(size, align)`` (mm/percpu.c pcpu_alloc, reserved): first
        fit in the reserved region, in PCPU_MIN_ALLOC_SIZE units; the per-cpu pointer, or
        None when the region is full. Undone with the operation it is part of."""
        pc = self.pcpu
        align = max(align, PCPU_MIN_ALLOC_SIZE)
        size = -(-size // PCPU_MIN_ALLOC_SIZE) * PCPU_MIN_ALLOC_SIZE
        lo = pc.info.static_size
        hi = lo + pc.info.reserved_size
        cur = lo
        for off, sz in sorted(pc.areas.items()):
            cand = -(-cur // align) * align
            if cand + size <= off:
                break
            cur = max(cur, off + sz)
        cand = -(-cur // align) * align
        if cand + size > hi:
            return None
        self.journal.setitem(pc.areas, cand, size)
        return (pc.static_start + cand) & pc.mask

    def free_percpu(self, ptr: int) -> None:
        """``free_percpu(ptr)`` of a reserved-region allocation."""
        pc = self.pcpu
        off = (ptr - pc.static_start) & pc.mask
        if off not in pc.areas:
            raise ConfigError(f"free_percpu({ptr:#x}): not an allocation of the reserved region")
        self.journal.delitem(pc.areas, off)

    def percpu_copies(self, ptr: int) -> list[int]:
        """The physical address of every CPU's copy of the per-cpu variable at *ptr*."""
        pc = self.pcpu
        off = (ptr - pc.static_start) & pc.mask
        return [pc.base_phys + pc.unit_offset(cpu) + off for cpu in range(pc.nr_cpus)]
