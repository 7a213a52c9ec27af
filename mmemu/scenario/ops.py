"""The operations a scenario step can name: a table keyed by the ``op`` field, each entry a
small function with the kernel call it makes in its docstring (the first line is what
``mmemu run --list-ops`` prints). Field names are the kernel's argument names.

An operation returns a :class:`Result`: the value ``as = "name"`` binds (an int: an
address, a pfn, a pid), the fields bound with it (``name.phys``...), the object it made
(a page, a process, a module) for steps that refer to it, and one line saying what it did.
``expect_*`` operations check and return ``ok``/``why``; they change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError, MmemuError
from ..units import PAGE_SHIFT
from .checks import Check, check_fault, check_log, check_translation
from .fields import Bool, FieldError, Hex, Int, IntOrStr, Name, Ref, RefList, Str

ZONES = ("DMA", "DMA32", "Normal", "HighMem")
ACCESSES = ("read", "write", "exec")


@dataclass
class Result:
    value: int | None = None
    fields: dict = field(default_factory=dict)
    obj: tuple | None = None  # (kind, object)
    text: str = ""
    ok: bool | None = None  # expectations: held or not
    why: str = ""


@dataclass(frozen=True)
class Op:
    name: str
    fields: dict
    fn: object
    #: the kind of object ``as`` binds (None: a number)
    binds: str | None = None

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]

    @property
    def is_expect(self) -> bool:
        return self.name.startswith("expect_")


#: every operation, by name
OPS: dict[str, Op] = {}

#: fields every step may have
COMMON = {"op": Str(required=True), "as": Name(help="bind the result to this name"),
          "repeat": Int(help="run the operation this many times; i counts 0, 1, ... in its fields"),
          "expect_error": Str(help="the step must fail with a message containing this text"),
          "note": Str(help="a comment shown with the step")}


def op(op_name: str, binds: str | None = None, /, **fields):
    def deco(fn):
        OPS[op_name] = Op(op_name, fields, fn, binds)
        return fn
    return deco


def _page(run, page):
    return page.pfn if hasattr(page, "pfn") else page


def _page_result(k, page) -> Result:
    pfn = page.pfn
    addr = k.page_address(pfn)
    f = {"pfn": pfn, "phys": pfn << PAGE_SHIFT, "order": page.order}
    if addr is not None:
        f["addr"] = addr
    where = f"{addr:#x}" if addr is not None else "no kernel address (HighMem)"
    return Result(pfn, f, ("page", page), f"pfn {pfn:#x} ({page.zone}, order {page.order}), {where}")


def _addr(value: int) -> Result:
    return Result(value, {}, None, f"{value:#x}")


def _prot(text: str) -> int:
    from ..kernel import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE

    if text in ("none", "---"):
        return PROT_NONE
    if len(text) != 3 or any(c not in (want, "-") for c, want in zip(text, "rwx")):
        raise FieldError(f"prot {text!r}: expected three letters such as \"rw-\", \"r-x\" or \"---\"")
    return ((PROT_READ if text[0] == "r" else 0) | (PROT_WRITE if text[1] == "w" else 0)
            | (PROT_EXEC if text[2] == "x" else 0))


PROT = Str(default="rw-", help='"rw-", "r-x", "---"...')
PROCESS = Ref(kind="process", required=True)
OPT_PROCESS = Ref(kind="process")


# -- the page allocator and the slab ---------------------------------------------------------

@op("alloc_pages", "page", order=Int(default=0), zone=Str(default="Normal", choices=ZONES),
    zero=Bool(default=False))
def _alloc_pages(run, a):
    """alloc_pages(gfp, order): 2^order frames from the zone; binds the page (.pfn .phys .addr)."""
    return _page_result(run.k, run.k.alloc_pages(a["order"], a["zone"], owner="scenario", zero=a["zero"]))


@op("__free_pages", page=Ref(kind="page", required=True))
def _free_pages_page(run, a):
    """__free_pages(page, order): give a page block back."""
    run.k.free_page_block(a["page"])
    return Result(text="freed")


@op("__get_free_pages", order=Int(default=0), zone=Str(default="Normal", choices=ZONES))
def _get_free_pages(run, a):
    """__get_free_pages(gfp, order): frames by their direct-map address."""
    return _addr(run.k.get_free_pages(a["order"], a["zone"]))


@op("free_pages", addr=Int(required=True), order=Int(default=0))
def _free_pages(run, a):
    """free_pages(addr, order): give frames back by their direct-map address."""
    run.k.free_pages(a["addr"], a["order"])
    return Result(text="freed")


@op("kmalloc", size=Int(required=True), zero=Bool(default=False))
def _kmalloc(run, a):
    """kmalloc(size, GFP_KERNEL): slab memory in the direct map."""
    return _addr(run.k.kmalloc(a["size"], zero=a["zero"]))


@op("kfree", addr=Int(required=True))
def _kfree(run, a):
    """kfree(addr)."""
    run.k.kfree(a["addr"])
    return Result(text="freed")


# -- vmalloc -------------------------------------------------------------------------------

@op("vmalloc", size=Int(required=True))
def _vmalloc(run, a):
    """vmalloc(size): frames one by one behind contiguous vmalloc space."""
    return _addr(run.k.vmalloc(a["size"]))


@op("vzalloc", size=Int(required=True))
def _vzalloc(run, a):
    """vzalloc(size): vmalloc, zeroed."""
    return _addr(run.k.vzalloc(a["size"]))


@op("vfree", addr=Int(required=True))
def _vfree(run, a):
    """vfree(addr): unmap (the range waits for the lazy purge) and free the frames."""
    run.k.vfree(a["addr"])
    return Result(text="freed")


@op("vmap", pages=RefList(kind="page", required=True), prot=Str(default="PAGE_KERNEL"))
def _vmap(run, a):
    """vmap(pages, count, VM_MAP, prot): given pages behind contiguous vmalloc space."""
    return _addr(run.k.vmap([_page(run, p) for p in a["pages"]], a["prot"]))


@op("vunmap", addr=Int(required=True))
def _vunmap(run, a):
    """vunmap(addr)."""
    run.k.vunmap(a["addr"])
    return Result(text="unmapped")


@op("purge_vmap_area_lazy")
def _purge(run, a):
    """purge_vmap_area_lazy(): flush the lazily freed vmalloc ranges."""
    return Result(text=f"{run.k.purge_vmap_area_lazy()} areas purged")


# -- HighMem and the fixmap ------------------------------------------------------------------

@op("kmap", page=Ref(kind="page", required=True))
def _kmap(run, a):
    """kmap(page): a lowmem page's direct-map address, a HighMem page a pkmap slot."""
    return _addr(run.k.kmap(a["page"]))


@op("kunmap", page=Ref(kind="page", required=True))
def _kunmap(run, a):
    """kunmap(page)."""
    run.k.kunmap(a["page"])
    return Result(text="unmapped")


@op("kmap_atomic", page=Ref(kind="page", required=True), km_type=Str(), cpu=Int(default=0))
def _kmap_atomic(run, a):
    """kmap_atomic(page[, km_type]): a per-CPU fixmap slot."""
    return _addr(run.k.kmap_atomic(a["page"], a["km_type"], a["cpu"]))


@op("kunmap_atomic", addr=Int(required=True), km_type=Str(), cpu=Int(default=0))
def _kunmap_atomic(run, a):
    """kunmap_atomic(addr[, km_type])."""
    run.k.kunmap_atomic(a["addr"], a["km_type"], a["cpu"])
    return Result(text="unmapped")


@op("kmap_local_page", page=Ref(kind="page", required=True), cpu=Int(default=0))
def _kmap_local(run, a):
    """kmap_local_page(page): the next per-CPU fixmap slot (5.11+)."""
    return _addr(run.k.kmap_local_page(a["page"], a["cpu"]))


@op("kunmap_local", addr=Int(required=True), cpu=Int(default=0))
def _kunmap_local(run, a):
    """kunmap_local(addr): the most recent local mapping first."""
    run.k.kunmap_local(a["addr"], a["cpu"])
    return Result(text="unmapped")


@op("set_fixmap", idx=IntOrStr(required=True), phys=Int(required=True), prot=Str(default="PAGE_KERNEL"))
def _set_fixmap(run, a):
    """set_fixmap(idx, phys): a compile-time address for a physical page."""
    return _addr(run.k.set_fixmap_offset(a["idx"], a["phys"], a["prot"]))


@op("clear_fixmap", idx=IntOrStr(required=True))
def _clear_fixmap(run, a):
    """clear_fixmap(idx)."""
    run.k.clear_fixmap(a["idx"])
    return Result(text="cleared")


# -- processes -----------------------------------------------------------------------------

def _proc_result(p) -> Result:
    return Result(p.pid, {"pid": p.pid, "pgd": p.pgd}, ("process", p), f"{p.comm}[{p.pid}], pgd at {p.pgd:#x}")


@op("create_process", "process", comm=Str(default="init"))
def _create_process(run, a):
    """A new process: an empty address space and its stack VMA; binds the process (.pid .pgd)."""
    return _proc_result(run.k.create_process(a["comm"]))


@op("fork", "process", process=PROCESS, comm=Str())
def _fork(run, a):
    """fork(): dup_mmap, private writable pages shared read-only (copy-on-write)."""
    return _proc_result(run.k.fork(a["process"], a["comm"]))


@op("exit", process=PROCESS)
def _exit(run, a):
    """exit_mmap: every VMA unmapped, the page tables and the pgd freed."""
    run.k.exit_mm(a["process"])
    return Result(text="exited")


@op("switch_to", process=OPT_PROCESS)
def _switch_to(run, a):
    """switch_mm: load the process's page directory (none: the kernel's)."""
    run.k.switch_to(a["process"])
    return Result(text=f"cr3 = {run.k.current_pgd():#x}")


@op("mmap", process=PROCESS, length=Int(required=True), prot=PROT, addr=Int(), shared=Bool(default=False),
    name=Str(default=""))
def _mmap(run, a):
    """mmap(addr, length, prot, MAP_PRIVATE|MAP_ANONYMOUS): a VMA, no page yet."""
    from ..kernel import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, MAP_SHARED

    flags = (MAP_SHARED if a["shared"] else MAP_PRIVATE) | MAP_ANONYMOUS | (MAP_FIXED if a["addr"] is not None else 0)
    return _addr(run.k.mmap(a["process"], a["addr"], a["length"], _prot(a["prot"]), flags, name=a["name"]))


@op("munmap", process=PROCESS, addr=Int(required=True), length=Int(required=True))
def _munmap(run, a):
    """munmap(addr, length)."""
    run.k.munmap(a["process"], a["addr"], a["length"])
    return Result(text="unmapped")


@op("mprotect", process=PROCESS, addr=Int(required=True), length=Int(required=True), prot=PROT)
def _mprotect(run, a):
    """mprotect(addr, length, prot)."""
    run.k.mprotect(a["process"], a["addr"], a["length"], _prot(a["prot"]))
    return Result(text="changed")


@op("brk", process=PROCESS, addr=Int(required=True))
def _brk(run, a):
    """brk(addr): move the program break; binds the new break."""
    return _addr(run.k.brk(a["process"], a["addr"]))


# -- accesses and code -----------------------------------------------------------------------

@op("access", addr=Int(required=True), access=Str(default="read", choices=ACCESSES), user=Bool(default=False),
    process=OPT_PROCESS)
def _access(run, a):
    """One access through the MMU's rules and the kernel's fault path; binds the physical address."""
    phys = run.k.access(a["addr"], a["access"], a["user"], a["process"])
    return Result(phys, {}, None, f"{a['access']} reached phys {phys:#x}")


@op("write", addr=Int(required=True), bytes=Hex(required=True), user=Bool(default=False), process=OPT_PROCESS)
def _write(run, a):
    """Store bytes at a virtual address (faulting as code would)."""
    run.k.write(a["addr"], a["bytes"], a["user"], a["process"])
    return Result(text=f"{len(a['bytes'])} bytes written")


SNIPPETS = ("touch_pages", "loop")


@op("run_user", process=PROCESS, code=Hex(), snippet=Str(choices=SNIPPETS), base=Int(default=0), pages=Int(default=1),
    budget=Int(default=1_000_000))
def _run_user(run, a):
    """Run user code on the CPU (hex bytes, or a snippet: touch_pages base pages, loop) in a
    fresh r-x mapping of the process; its faults go through the kernel (demand paging)."""
    from ..kernel import PROT_EXEC, PROT_READ

    k, cpu = run.k, run.cpu()
    if (a["code"] is None) == (a["snippet"] is None):
        raise FieldError("give exactly one of code (hex bytes) and snippet")
    if a["snippet"] == "touch_pages":
        code = cpu.adapter.program_touch_pages(a["base"], a["pages"])
    elif a["snippet"] == "loop":
        code = cpu.adapter.program_loop()
    else:
        code = a["code"]
    proc = a["process"]
    text = k.mmap(proc, None, max(len(code), 1), PROT_READ | PROT_EXEC)
    k.install_user_pages(proc, text, code)
    with cpu.journal_stores(kernel_stack=False):  # the step can be taken back, RAM included
        r = cpu.run_user(proc, text, budget=a["budget"])
    res = Result(r.value if r.value is not None else 0, {"faults": r.faults}, None,
                 f"{r.reason} {r.value if r.value is not None else ''} after {r.faults} page faults")
    if not r.ok:
        raise MmemuError(f"user code stopped: {r.reason}" + (f": {r.report.splitlines()[0]}" if r.report else ""))
    return res


# -- modules -------------------------------------------------------------------------------

@op("insmod", "module", file=Str(required=True), stub_missing=Bool(default=False),
    force_vermagic=Bool(default=False), init=Bool(default=True), stepwise=Bool(default=False))
def _insmod(run, a):
    """load_module: a .ko/.o (a path relative to the scenario, or an example module's name:
    "hello" is examples/modules/build/<arch>-<era>/hello.o); stepwise: one step per loader step."""
    data, label = run.module_file(a["file"])
    load = run.k.load_module_steps(data, label, stub_missing=a["stub_missing"], force_vermagic=a["force_vermagic"],
                                   run_init=a["init"])
    if a["stepwise"]:
        return load  # the runner makes a step of each loader step
    mod = load.run()
    return Result(None, {}, ("module", mod), f"{mod.name} {mod.state}, {len(mod.layout.regions)} regions")


@op("rmmod", name=Str(required=True), exit=Bool(default=True))
def _rmmod(run, a):
    """delete_module(name): exit runs, every page freed."""
    run.k.delete_module(a["name"], run_exit=a["exit"])
    return Result(text="removed")


# -- expectations --------------------------------------------------------------------------

def _check(ok: bool, why: str, text: str = "") -> Result:
    return Result(ok=ok, why="" if ok else why, text=text or ("holds" if ok else why))


def _held(c: Check) -> Result:
    """A check of mmemu.scenario.checks as an expectation's result."""
    return _check(c.ok, c.why, c.text)


@op("expect_translation", addr=Int(required=True), process=OPT_PROCESS, phys=Int(), page_size=Int(),
    kernel=Str(help='kernel rights, e.g. "rw-"'), user=Str(help='user rights, e.g. "---"'),
    mapped=Bool(default=True))
def _expect_translation(run, a):
    """The walk of addr (in the process's tables, or the kernel's) ends as said."""
    return _held(check_translation(run.k, a["addr"], process=a["process"], phys=a["phys"], page_size=a["page_size"],
                                   kernel=a["kernel"], user=a["user"], mapped=a["mapped"]))


@op("expect_fault", addr=Int(required=True), access=Str(default="read", choices=ACCESSES),
    user=Bool(default=False), process=OPT_PROCESS, code=Int(), kind=Str())
def _expect_fault(run, a):
    """An access to addr raises a page fault (with the arch's code, e.g. the x86 error code);
    nothing is handled."""
    return _held(check_fault(run.k, a["addr"], a["access"], a["user"], process=a["process"], code=a["code"],
                             kind=a["kind"]))


@op("expect_bytes", addr=Int(required=True), bytes=Hex(required=True), process=OPT_PROCESS)
def _expect_bytes(run, a):
    """The bytes at addr (read without faulting anything in) are these."""
    k = run.k
    want = a["bytes"]
    got = bytearray()
    va = a["addr"]
    while len(got) < len(want):
        w = k.walk_mm(va, a["process"]) if a["process"] is not None else k.walk(va)
        if not w.mapped:
            return _check(False, f"{va:#x} is not mapped")
        n = min(len(want) - len(got), 4096 - (va & 0xFFF))
        got += k.mem.read(w.phys, n)
        va += n
    return _check(bytes(got) == want, f"read {bytes(got).hex(' ')}, expected {want.hex(' ')}", want.hex(" "))


COUNTS = ("free_pages", "free_pages.DMA", "free_pages.DMA32", "free_pages.Normal", "free_pages.HighMem",
          "vmap_areas", "vmap_areas.lazy", "modules", "processes", "pkmap_used", "log_lines")


def count(k, what: str) -> int:
    """The counters ``expect_count`` knows (see COUNTS); ``pkmap_count.N`` and
    ``module.NAME`` too."""
    if what == "free_pages":
        return k.frames.nr_free_pages()
    if what.startswith("free_pages."):
        zone = k.frames.zones.get(what.split(".", 1)[1])
        return zone.nr_free if zone is not None else 0
    if what == "vmap_areas":
        return sum(1 for va in k.vmap_areas if not va.lazy)  # busy ones (kmem -v lists them)
    if what == "vmap_areas.lazy":
        return sum(1 for va in k.vmap_areas if va.lazy)
    if what == "modules":
        return len(k.modules)
    if what == "processes":
        return sum(1 for p in k.processes.values() if p.alive)
    if what == "pkmap_used":
        return sum(1 for c in getattr(k, "pkmap_count", []) if c)
    if what == "log_lines":
        return len(k.log)
    if what.startswith("pkmap_count."):
        slots = getattr(k, "pkmap_count", [])
        try:
            nr = int(what.split(".", 1)[1], 0)
        except ValueError:
            raise FieldError(f"{what!r}: pkmap_count.N takes a slot number") from None
        if not 0 <= nr < len(slots):
            # mm/highmem.c: LAST_PKMAP slots, 0 .. LAST_PKMAP-1; a kernel without highmem has none
            raise ConfigError(f"no pkmap slot {nr}: the kernel has {len(slots)} (LAST_PKMAP)"
                              + ("" if slots else ", no highmem"))
        return slots[nr]
    raise FieldError(f"unknown counter {what!r}: one of {', '.join(COUNTS)}, pkmap_count.N")


@op("expect_count", what=Str(required=True), value=Int(required=True, minimum=None))
def _expect_count(run, a):
    """A counter (free_pages[.ZONE], vmap_areas, modules, processes, pkmap_used,
    pkmap_count.N, log_lines) has this value."""
    got = count(run.k, a["what"])
    return _check(got == a["value"], f"{a['what']} is {got}, expected {a['value']}", f"{a['what']} = {got}")


@op("expect_module", name=Str(required=True), state=Str(default="live", choices=("live", "coming", "going", "gone")))
def _expect_module(run, a):
    """A module is loaded in this state (or gone)."""
    mod = run.k.find_module(a["name"])
    state = "gone" if mod is None else mod.state.removeprefix("MODULE_STATE_").lower()
    return _check(state == a["state"], f"module {a['name']} is {state}, expected {a['state']}", state)


@op("expect_log", contains=Str(required=True))
def _expect_log(run, a):
    """A line of the kernel log contains this text."""
    return _held(check_log(run.k, a["contains"]))


@op("expect_event", writer=Str(required=True), kind=Str(), step=Int(help="the step's number (default: the last "
                                                                      "step that was not an expectation)"))
def _expect_event(run, a):
    """A step (the last one that changed something, by default) made a page-table operation
    of this kernel function (writer: do_anonymous_page, vmalloc_fault, kmap_atomic...)."""
    recs = [r for r in run.records if not r.op.startswith("expect_")]
    if a["step"] is not None:
        recs = [r for r in recs if r.step.split(".")[0] == str(a["step"])]
    elif recs:
        last = recs[-1].step.split(".")[0]
        recs = [r for r in recs if r.step.split(".")[0] == last]
    if not recs:
        return _check(False, "no step to look at")
    events = [e for r in recs for e in r.events]
    hit = next((e for e in events if e["writer"] == a["writer"] and (a["kind"] is None or e["kind"] == a["kind"])),
               None)
    writers = sorted({e["writer"] for e in events})
    return _check(hit is not None, f"step {recs[0].step.split('.')[0]} made no {a['kind'] or ''} operation of "
                                   f"{a['writer']} (it made: {', '.join(writers) or 'none'})",
                  f"{a['writer']}: {hit['kind']} {hit['va']:#x}" if hit else "")
