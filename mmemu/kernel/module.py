"""Kernel modules: the loader of kernel/module.c (kernel/module/main.c from 6.4).

A load is a sequence of the kernel's own steps, each a :class:`LoadStep` naming the kernel
function and the page-table operations it made: the ELF checks, ``check_modinfo``,
``layout_sections``, ``module_alloc`` of each region, the copy of each section
(``move_module``), ``simplify_symbols``, the relocations of each section
(``apply_relocate``/``apply_relocate_add``, from the arch plugin's table), the permissions
(``module_enable_ro``/``module_enable_nx``, from the era's rules), and the freeing of the
init part. :meth:`ModuleMixin.load_module` runs them all; :meth:`ModuleMixin.load_module_steps`
hands them out one at a time. The whole load is one transaction: a step that fails
leaves the kernel exactly as it was before the first.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field

from ..errors import MmemuError, ModuleError, Oops
from ..module.elf import (
    SHF_ALLOC,
    SHN_ABS,
    SHN_COMMON,
    SHN_LORESERVE,
    SHN_UNDEF,
    STB_LOCAL,
    STB_WEAK,
    STT_FUNC,
    STT_OBJECT,
    STT_SECTION,
    ModuleFile,
)
from ..module.layout import (
    DATA,
    RO_AFTER_INIT,
    RODATA,
    TEXT,
    LayoutRules,
    ModuleLayout,
    layout_sections,
)
from ..module.reloc import RelocError, RelocOverflow, RelocSection, RelocTable
from ..units import PAGE_SHIFT, PAGE_SIZE
from .base import operation

#: the instructions a module's init or exit function may run before it counts as runaway
MODULE_CODE_BUDGET = 10_000_000

#: linux/module.h: module_state
UNFORMED, COMING, LIVE, GOING = "MODULE_STATE_UNFORMED", "MODULE_STATE_COMING", "MODULE_STATE_LIVE", \
    "MODULE_STATE_GOING"
#: include/uapi/asm-generic/errno-base.h
ENOENT, ENOEXEC, ENOMEM, EEXIST = 2, 8, 12, 17
#: SHN_LIVEPATCH (include/uapi/linux/elf.h): resolved by the livepatch core, not the loader
SHN_LIVEPATCH = 0xFF20


@dataclass
class LoadStep:
    """One step of a module load: the kernel function, what it did, and the page-table
    operations it made (:class:`mmemu.pagetable.Operation`)."""

    function: str
    what: str
    operations: list = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.function}: {self.what}"


@dataclass
class Module:
    """``struct module``: a loaded module as the kernel keeps it."""

    name: str
    file: ModuleFile
    layout: ModuleLayout
    state: str = UNFORMED
    #: the init and exit functions (``mod->init``, ``mod->exit``), None if it has none
    init: int | None = None
    exit: int | None = None
    #: its defined symbols (what kallsyms lists), by name
    symbols: dict[str, int] = field(default_factory=dict)
    #: the kernel symbols it uses, by name, with the address each resolved to
    resolved: dict[str, int] = field(default_factory=dict)
    #: undefined symbols bound to a stub (``stub_missing``)
    stubbed: list[str] = field(default_factory=list)
    #: relocations applied, by type name
    relocations: Counter = field(default_factory=Counter)
    #: relocation entries of sections the kernel does not load (debug info...), skipped
    skipped_relocations: int = 0
    vermagic: str = ""
    license: str = ""
    #: the module's taint letters (what ``Modules linked in:`` shows in parentheses)
    taints: str = ""
    #: kallsyms: (address, size, name, in the init part) of its functions and objects
    kallsyms: list = field(default_factory=list)
    #: ``mod_percpu(mod)``: the per-cpu pointer of its per-cpu section, and its size (0: none)
    percpu: int | None = None
    percpu_size: int = 0
    #: ``mod->arch`` (struct mod_arch_specific): what the arch's loader keeps per module
    #: (arm64's PLT sections, riscv64's PLT and GOT sections and their entries)
    arch: dict = field(default_factory=dict)

    def flags(self) -> str:
        """``module_flags``: the taints, then ``+`` while COMING or ``-`` while GOING, in
        parentheses when there is any."""
        f = self.taints + ("+" if self.state == COMING else "-" if self.state == GOING else "")
        return f"({f})" if f else ""

    def section_address(self, name: str) -> int | None:
        for p in self.layout.placements.values():
            if p.section.name == name:
                return p.address
        return None


class ModuleLoad:
    """A module load run one step at a time (an iterator of :class:`LoadStep`).

    Between two steps the load's transaction is held open (:meth:`mmemu.journal.Journal.hold`):
    the kernel may be inspected (walks, reads of RAM, ptdump), but no other operation runs
    until the load ends, by its last step or by :meth:`abandon`, which undoes every step.
    A step that fails undoes every step and raises."""

    def __init__(self, kernel):
        self.kernel = kernel
        self._steps = None  # the generator of ModuleMixin._load_steps (it needs this object)
        self._held = None
        self.steps: list[LoadStep] = []
        self.module: Module | None = None
        self.done = False

    def __iter__(self):
        return self

    def __next__(self) -> LoadStep:
        if self.done:
            raise StopIteration
        k = self.kernel
        j = k.journal
        if self._held is None:
            if j.undo is not None or j.held is not None:
                raise MmemuError(f"a module load cannot start: {j.held or 'another operation'} is in progress")
            j.begin()
        else:
            j.resume(self._held)
            self._held = None
        ops: list = []
        k.pgtable.observers.append(ops.append)
        try:
            step = next(self._steps)
        except StopIteration:
            k.pgtable.observers.remove(ops.append)
            self.done = True
            j.commit()
            raise
        except Oops:
            # the kernel's answer, not a refusal: the module stays where the oops left it
            k.pgtable.observers.remove(ops.append)
            self.done = True
            j.commit()
            raise
        except BaseException:
            k.pgtable.observers.remove(ops.append)
            self.done = True
            j.rollback()
            k._after_rollback()
            raise
        k.pgtable.observers.remove(ops.append)
        step.operations = ops
        self.steps.append(step)
        self._held = j.hold(f"the load of module {self.module.name if self.module else '?'}")
        return step

    def run(self) -> Module:
        """Every step left; the module, live."""
        for _ in self:
            pass
        return self.module

    def abandon(self) -> None:
        """Stop the load here and undo every step made."""
        if self.done:
            return
        self.done = True
        if self._held is not None:
            j = self.kernel.journal
            j.resume(self._held)
            self._held = None
            j.rollback()
            self.kernel._after_rollback()


class ModuleMixin:
    """``init_module``/``delete_module`` and what they need: the kernel's symbol table of
    exports, the list of modules."""

    def _init_modules(self) -> None:
        #: the loaded modules, newest first (``modules`` list; lsmod's order)
        self.modules: list[Module] = []
        self._reloc_table: RelocTable | None = self.arch.module_relocations(self.spec)
        #: the exported kernel functions (``__ksymtab``) by name, and by address the
        #: functions and stubs a call can reach (the CPU's trap at each)
        self.ksymtab: dict[str, int] = {}
        self.kcall_addresses: dict[int, str] = {}
        self._stub_syms: dict[str, int] = {}
        if self._reloc_table is not None:
            from ..module.exports import export_names

            names = export_names(self)
            for extra in self.pm.hook.mmemu_kernel_symbols(kernel=self):
                names += [n for n in extra if n not in names]
            for name in names:
                self._place_kernel_function(self.ksymtab, name)

    def _place_kernel_function(self, table: dict, name: str) -> int:
        """Give *name* the next 16 bytes of the kernel functions' area (from the second page
        of the kernel's text: the first holds the head code in a real image) and put the
        arch's trap there."""
        text = next(s for s in self.layout.image if s.name == "text")
        addr = text.virt + PAGE_SIZE + 16 * (len(self.ksymtab) + len(self._stub_syms))
        stub = getattr(self.arch, "kcall_stub", b"")
        if stub:
            self.mem.write(text.phys + (addr - text.virt), stub)
            self.code_generation += 1
        self.journal.setitem(table, name, addr)
        self.journal.setitem(self.kcall_addresses, addr, name)
        return addr

    def kernel_symbol_name(self, address: int) -> str | None:
        """The exported function or stub at *address*, if any."""
        return self.kcall_addresses.get(address)

    def symbol_at(self, address: int) -> str | None:
        """``%pS`` of *address* in a module or an exported kernel function: ``name+0xoff/0xsize
        [module]`` (kallsyms; a module's init symbols only while it is not live), or None."""
        for mod in self.modules:
            for start, size, name, init in mod.kallsyms:
                if init and mod.state == LIVE:
                    continue
                if start <= address < start + max(size, 1):
                    return f"{name}+{address - start:#x}/{size:#x} [{mod.name}]"
        name = self.kcall_addresses.get(address & ~15)
        if name is not None:
            return f"{name}+{address & 15:#x}/0x10"
        return None

    def wx_ranges(self, root: int | None = None) -> list[tuple[int, int]]:
        """The kernel's mappings that are writable and executable (at kernel privilege), as
        (start, size) runs of the master table's kernel half (or of the table at *root*)."""
        from ..arch import KW, KX

        pt = self.pgtable
        root = self.pgd if root is None else root
        out: list[list[int]] = []
        start = self.paging.kernel_half or self.layout["PAGE_OFFSET"]
        for va, size, _pa, _raw, _li in pt.iter_leaves(root, start):
            r = pt.walk(root, va).rights
            if r & KW and r & KX:
                if out and out[-1][0] + out[-1][1] == va:
                    out[-1][1] += size
                else:
                    out.append([va, size])
        return [(a, n) for a, n in out]

    def check_wx(self) -> list[str]:
        """The W+X audit the kernel logs at boot and after module loads that change
        permissions (``debug_checkwx``), in the arch's words."""
        return self.arch.check_wx(self, self.wx_ranges())

    def lsmod(self) -> str:
        """What kmod's ``lsmod`` prints from /proc/modules: name, size (the module's core
        memory: core_layout.size, or its non-init mod_mem regions from 6.4) and users
        (``%-19s %8lu  %d`` then the users' names)."""
        lines = ["Module                  Size  Used by"]
        for m in self.modules:
            size = sum(r.size for r in m.layout.regions if not r.init)
            lines.append(f"{m.name:<19} {size:8d}  0")
        return "\n".join(lines) + "\n"

    def modules_linked_in(self) -> str:
        """``print_modules``: ``Modules linked in: hello(O+) ...``."""
        return "Modules linked in:" + "".join(f" {m.name}{m.flags()}" for m in self.modules)

    def find_module(self, name: str) -> Module | None:
        """``find_module``: the loaded module of this name, or None."""
        return next((m for m in self.modules if m.name == name), None)

    # -- loading ------------------------------------------------------------------------

    def load_module_steps(self, data: bytes, name: str | None = None, *, stub_missing: bool = False,
                          force_vermagic: bool = False, run_init: bool = True,
                          budget: int = MODULE_CODE_BUDGET) -> ModuleLoad:
        """A load of the module in *data* (a relocatable ELF object), to run one step at a
        time: iterate the returned :class:`ModuleLoad`. *name*: what messages call the
        file. *stub_missing*: bind every undefined symbol the kernel does not export to a
        stub (which stops the module if it is ever called) instead of failing the load.
        *force_vermagic*: ``modprobe --force-vermagic`` (MODULE_INIT_IGNORE_VERMAGIC on a
        kernel with CONFIG_MODULE_FORCE_LOAD): a version magic that differs is ignored, and
        the kernel tainted (F). *run_init*: run the module's init function on the CPU
        (within an instruction *budget*); without it the module goes live as loaded."""
        if self._reloc_table is None:
            raise ModuleError(f"arch {self.arch.name}: mmemu loads no modules on this arch (it supplies no "
                              "relocation table)")
        mf = ModuleFile(data, name or "module")
        load = ModuleLoad(self)
        load._steps = self._load_steps(load, mf, stub_missing, force_vermagic, run_init, budget)
        return load

    def load_module(self, data: bytes, name: str | None = None, *, stub_missing: bool = False,
                    force_vermagic: bool = False, run_init: bool = True, budget: int = MODULE_CODE_BUDGET) -> Module:
        """``init_module(2)``: load the module in *data*, all steps. Raises
        :class:`ModuleError` (the kernel's message, also printed to the kernel log) with
        the kernel as it was."""
        load = self.load_module_steps(data, name, stub_missing=stub_missing, force_vermagic=force_vermagic,
                                      run_init=run_init, budget=budget)
        try:
            return load.run()
        except ModuleError as exc:
            self.printk(str(exc), "err")
            raise

    def _layout_rules(self) -> LayoutRules:
        era = self.era
        return LayoutRules(mem_types=era.module_mem_types, ro_after_init=era.module_ro_after_init_sections,
                           page_aligned=self.arch.module_strict_rwx(self.spec))

    def _load_steps(self, load: ModuleLoad, mf: ModuleFile, stub_missing: bool, force_vermagic: bool,
                    run_init: bool, budget: int):
        table = self._reloc_table
        # -- elf_validity_check / elf_header_check: the arch's machine and class
        want_class = 64 if self.paging.bits64 else 32
        if mf.machine != self.arch.elf_machine or mf.elfclass != want_class:
            raise ModuleError(f"{mf.name}: Invalid architecture in ELF header: {mf.e_machine} (ELFCLASS"
                              f"{mf.elfclass}, {mf.machine}; this kernel loads ELFCLASS{want_class} "
                              f"{self.arch.elf_machine})")
        yield LoadStep("elf_validity_check", f"{mf.name}: ELFCLASS{mf.elfclass} relocatable object for "
                       f"{mf.machine}, {len(mf.sections)} sections, {len(mf.symbols)} symbols")

        # -- check_modinfo: the version magic, the name, the license
        name = mf.get_modinfo("name") or _name_from_file(mf.name)
        vermagic = mf.get_modinfo("vermagic")
        expected = self.arch.vermagic(self.spec)
        forced = ""
        if vermagic is None or (vermagic != expected and force_vermagic):
            # kernel/module.c check_modinfo: try_to_force_load(mod, "bad vermagic") fails
            # silently without CONFIG_MODULE_FORCE_LOAD, taints with it (modprobe --force-vermagic)
            if not force_vermagic:
                raise ModuleError(f"{name}: the module has no vermagic in .modinfo: the kernel refuses it "
                                  "(-ENOEXEC, no message)")
            forced = "bad vermagic"
        elif vermagic != expected:
            raise ModuleError(f"{name}: version magic '{vermagic}' should be '{expected}'")
        if self.find_module(name) is not None:
            raise ModuleError(f"{name}: a module of this name is already loaded (-EEXIST)", EEXIST)
        mod = Module(name, mf, ModuleLayout([], {}), vermagic=vermagic or "", license=mf.get_modinfo("license") or "")
        load.module = mod
        messages = self._module_taints(mod, forced, intree=mf.get_modinfo("intree") == "Y")
        yield LoadStep("check_modinfo", f"module {name}: vermagic '{vermagic}'"
                       + (f", license {mod.license}" if mod.license else ", no license")
                       + (f", taints {mod.taints}" if mod.taints else "") + "".join(f"; {m}" for m in messages))

        # -- module_frob_arch_sections: the arch sizes sections of its own (arm64's .plt, riscv64's PLT and GOT)
        frobbed = self.arch.module_frob_arch_sections(self, mf, mod)
        if frobbed:
            yield LoadStep("module_frob_arch_sections", frobbed)

        # -- layout_sections: .modinfo and __versions are not loaded (their SHF_ALLOC is
        # cleared in setup_load_info/rewrite_section_headers), nor is the per-cpu section of
        # an SMP kernel ("We will do a special allocation for per-cpu sections later.")
        pcpusec = self._find_pcpusec(mf)
        skip = frozenset(s.index for s in mf.sections if s.name in (".modinfo", "__versions")
                         or (pcpusec is not None and s.index == pcpusec.index))
        mod.layout = layout_sections(mf, self._layout_rules(), skip)
        if not mod.layout.regions:
            raise ModuleError(f"{name}: the module has no section to load")
        yield LoadStep("layout_sections", ", ".join(f"{r.name} {r.size:#x} bytes" for r in mod.layout.regions))

        # -- percpu_modalloc: the per-cpu section in the first chunk's reserved region
        if pcpusec is not None:
            yield LoadStep("percpu_modalloc", self._percpu_modalloc(mod, pcpusec))

        # -- move_module: module_alloc each region, zero it, copy the sections in
        start, end, prot = self.arch.module_alloc(self.spec, self.layout)
        for region in mod.layout.regions:
            region.base = self.vmalloc_range(region.size, start, end, prot, caller="module_alloc")
            self._module_write(region.base, bytes(region.size))
            yield LoadStep("module_alloc", f"{region.name}: {region.size:#x} bytes at {region.base:#x} ({prot})")
        for p in sorted(mod.layout.placements.values(), key=lambda p: (p.region.base or 0, p.offset)):
            if p.address is None:
                continue  # an empty section of a region with nothing in it (never allocated)
            if not p.section.nobits and p.section.size:
                self._module_write(p.address, mf.section_data(p.section))
            yield LoadStep("move_module", f"{p.section.name or '?'}: {p.section.size:#x} bytes at {p.address:#x}"
                           + (" (zeroed: SHT_NOBITS)" if p.section.nobits else ""))

        # -- simplify_symbols
        values = self._simplify_symbols(mod, stub_missing, pcpusec)
        init = mf.symbol("init_module")
        exit_ = mf.symbol("cleanup_module")
        mod.init = values[init.index] if init else None
        mod.exit = values[exit_.index] if exit_ else None
        yield LoadStep("simplify_symbols", f"{len(mod.resolved)} kernel symbols resolved"
                       + (f", {len(mod.stubbed)} stubbed" if mod.stubbed else "")
                       + f", {len(mod.symbols)} defined")

        # -- apply_relocations: the relocation sections of loaded sections
        for rel in mf.relocations:
            target = mod.layout.placements.get(rel.target)
            if target is None:
                mod.skipped_relocations += len(rel)
                continue
            if rel.rela != table.rela:
                # kernel/module.c: the __weak apply_relocate/apply_relocate_add of an arch
                # that has only the other kind
                raise ModuleError(f"module {mod.name}: {'RELA' if rel.rela else 'REL'} relocation unsupported")
            counts = self._apply_relocations(mod, rel, target, values, table)
            yield LoadStep("apply_relocate_add" if table.rela else "apply_relocate",
                           f"{rel.section.name}: {len(rel)} relocations of {target.section.name} ("
                           + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) + ")")

        # -- the entry points as the kernel reads them: mod->init and mod->exit of the
        # relocated struct module in .gnu.linkonce.this_module (modpost's .mod.c sets them to
        # init_module and cleanup_module); a bare object has no struct: its symbols name them
        self._entry_points_from_this_module(mod)

        # -- post_relocation: percpu_modcopy, the section's initial image into every CPU's copy
        if pcpusec is not None and mod.percpu_size:
            yield LoadStep("percpu_modcopy", self._percpu_modcopy(mod, pcpusec))

        # -- module_enable_ro / module_enable_nx (set_memory_*): per kind of memory, in the
        # eras that protect module memory at all
        mod.state = COMING
        strict = self.arch.module_strict_rwx(self.spec)
        if strict:
            self._set_module_permissions(mod, after_init=False)
            yield LoadStep("module_enable_ro", "text read-only and executable, rodata read-only, data not "
                                               "executable")

        # -- do_init_module: the init function on the CPU, then ro_after_init read-only and
        # the init part freed
        # on the modules list, COMING, while init runs (add_unformed_module put it there
        # long before: kallsyms and an oops see it)
        self.journal.insert(self.modules, 0, mod)
        ran = ""
        if run_init and mod.init is not None:
            ran = self._run_module_function(mod, mod.init, "init", budget) + "; "
        if strict:
            self._set_module_permissions(mod, after_init=True)
        freed = []
        for region in mod.layout.regions:
            if region.init:
                self._module_free(region.base)
                freed.append(f"{region.name} {region.size:#x} bytes at {region.base:#x}")
        mod.state = LIVE
        yield LoadStep("do_init_module", f"{ran}module {name} live"
                       + (f"; init freed: {', '.join(freed)}" if freed else ""))

    def _module_cpu(self):
        """The CPU module code runs on: the kernel's first, or one brought up for the call
        (closed after it; its frames go back)."""
        if self.cpus:
            return self.cpus[0], False
        from ..cpu import Cpu

        return Cpu(self), True

    def _run_module_function(self, mod: Module, func: int, what: str, budget: int) -> str:
        """Run the module's init (or exit) function at kernel privilege with an instruction
        budget; return what it did. An oops leaves the module where the kernel leaves it
        (listed, COMING or GOING: insmod/rmmod was killed) and raises it; any other
        failure (a negative return, a runaway function, a call of a stub) raises
        ModuleError, the load undone."""
        cpu, temporary = self._module_cpu()
        try:
            first = len(self.log)
            with cpu.journal_stores():  # the module's own stores are undone with a failed load
                res = cpu.call(func, budget=budget, timeout=30.0)
        finally:
            if temporary:
                cpu.close()
        if res.reason == "return":
            ret = ctypes.c_int(res.value).value  # init returns an int
            if what == "exit":
                return "exit ran"
            if ret < 0:
                # do_init_module's fail path: no message of its own; insmod reports the errno
                raise ModuleError(f"{mod.name}: init_module returned {ret}: the load is undone (insmod: ERROR: "
                                  f"could not insert module: {_strerror(-ret)})", -ret)
            if ret > 0:
                self.printk(f"do_init_module: '{mod.name}'->init suspiciously returned {ret}, it should follow 0/-E "
                            f"convention\ndo_init_module: loading module anyway...", "warn")
            logged = len(self.log) - first
            return f"init returned {ret}" + (f", {logged} lines logged" if logged else "")
        if res.reason == "oops":  # (the fault path logged it)
            raise Oops(res.report)
        if res.reason == "stack":
            # the kernel would hit its stack's guard page (CONFIG_VMAP_STACK) and die; here
            # the store is stopped before it lands and the load undone
            raise ModuleError(f"{mod.name}: the {what} function overflowed the kernel stack ({res.report}): stopped, "
                              "and the load undone")
        if res.reason in ("budget", "timeout"):
            raise ModuleError(f"{mod.name}: the {what} function did not return ({res.report}): stopped, and the load "
                              "undone" if what == "init" else f"{mod.name}: the exit function did not return "
                              f"({res.report})")
        raise ModuleError(f"{mod.name}: the {what} function stopped: {res.report}")

    def _module_taints(self, mod: Module, forced: str, intree: bool) -> list[str]:
        """The taints of check_modinfo / module_augment_kernel_taints and the messages the
        kernel prints for them (kernel/module.c; kernel/module/main.c from 6.4), in the
        kernel's order: the forced load (try_to_force_load), then the out-of-tree module,
        then the licence (set_license, at the end of check_modinfo). Each message only
        while the kernel is not yet tainted with that flag (``if (!test_taint(...))``), and
        kernel/panic.c add_taint's ``Disabling lock debugging due to kernel taint`` after the
        first taint that makes lockdep unreliable (LOCKDEP_NOW_UNRELIABLE: F and P) -- the
        order a real log shows, e.g. ``mhal: loading out-of-tree module taints kernel.`` /
        ``mhal: module license 'PROPRIETARY' taints kernel.`` / ``Disabling lock debugging
        due to kernel taint`` (tests/golden/dmesg_module_taints.txt)."""
        era = self.era
        messages: list[str] = []
        letters: list[str] = []

        def taint(letter: str, message: str | None) -> None:
            if message and letter not in self.taints:
                messages.append(message)
                self.printk(message, "warn")
            if letter in "PF" and not self.taints & {"P", "F"}:  # __debug_locks_off() was still 1
                messages.append("Disabling lock debugging due to kernel taint")
                self.printk(messages[-1], "warn")
            letters.append(letter)
            self.add_taint(letter)

        if forced:
            taint("F", f"{mod.name}: {forced}: kernel tainted.")
        if era.module_oot_taint and not intree:
            taint("O", f"{mod.name}: loading out-of-tree module taints kernel."
                  if era.module_oot_taint == "warn" else None)
        if not license_is_gpl_compatible(mod.license or "unspecified"):
            taint("P", f"{mod.name}: module license '{mod.license or 'unspecified'}' taints kernel.")
        # taint_flags[] order (kernel/panic.c): P F ... O E
        mod.taints = "".join(c for c in "PFCOE" if c in letters)
        return messages

    def _module_pieces(self, va: int, n: int):
        """(physical address, offset in the data, length) of the page-sized pieces of *n*
        bytes of module memory at *va*: the loader reaches it through the vmalloc area's
        own frames (its memcpy on the module's mapping)."""
        area = self.find_vmap_area(va)
        pages = area.vm.pages
        off = va - area.va_start
        pos = 0
        while pos < n:
            in_page = off & (PAGE_SIZE - 1)
            take = min(n - pos, PAGE_SIZE - in_page)
            yield (pages[off >> PAGE_SHIFT] << PAGE_SHIFT) + in_page, pos, take
            off += take
            pos += take

    def _module_write(self, va: int, data: bytes) -> None:
        for pa, pos, take in self._module_pieces(va, len(data)):
            self.mem.write(pa, data[pos:pos + take])
        self.code_generation += 1  # code a CPU translated from these bytes is stale

    def _module_read(self, va: int, n: int) -> bytes:
        return b"".join(self.mem.read(pa, take) for pa, _pos, take in self._module_pieces(va, n))

    def _module_free(self, va: int) -> None:
        """``module_memfree``: vfree of the region."""
        self.vfree(va)

    def _entry_points_from_this_module(self, mod: Module) -> None:
        """Read ``.init``/``.exit`` from the relocated ``__this_module``: the fields are
        found by the relocations that fill them (the struct's layout changes with the
        config), and read back from the module's memory."""
        mf = mod.file
        this = mf.section_by_name(".gnu.linkonce.this_module")
        placement = mod.layout.placements.get(this.index) if this is not None else None
        if placement is None or placement.address is None:
            return
        for rel in mf.relocations:
            if rel.target != this.index:
                continue
            for offset, sym in zip(rel.offsets, rel.symbols):
                name = mf.symbols[sym].name if sym < len(mf.symbols) else ""
                if name in ("init_module", "cleanup_module") and offset + self.ptr_size <= this.size:
                    value = int.from_bytes(self._module_read(placement.address + offset, self.ptr_size), "little")
                    setattr(mod, "init" if name == "init_module" else "exit", value)

    def _find_pcpusec(self, mf: ModuleFile):
        """``find_pcpusec``: the module's per-cpu section on an SMP kernel (a UP kernel has no
        per-cpu areas: there the section, if any, is ordinary data)."""
        if self.pcpu is None:
            return None
        name = self.era.module_percpu_section
        return next((s for s in mf.sections if s.name == name and s.flags & SHF_ALLOC), None)

    def _percpu_modalloc(self, mod: Module, sec) -> str:
        """kernel/module.c ``percpu_modalloc``: the section's size from the reserved region,
        its alignment capped at a page."""
        if not sec.size:
            return f"{sec.name}: empty, nothing allocated"
        align = sec.align or 1
        warning = ""
        if align > PAGE_SIZE:
            warning = f"{mod.name}: per-cpu alignment {align} > {PAGE_SIZE}"
            self.printk(warning, 4)
            align = PAGE_SIZE
        ptr = self.alloc_reserved_percpu(sec.size, align)
        if ptr is None:
            raise ModuleError(self.era.module_percpu_nomem.format(module=mod.name, size=sec.size), ENOMEM)
        mod.percpu, mod.percpu_size = ptr, sec.size
        return (f"{sec.name}: {sec.size:#x} bytes at per-cpu {ptr:#x} (cpu 0: "
                f"{self.per_cpu_ptr(ptr, 0):#x})" + (f"; {warning}" if warning else ""))

    def _percpu_modcopy(self, mod: Module, sec) -> str:
        """``percpu_modcopy``: for every possible CPU, memcpy of the section's image (as in
        the file: relocations of the per-cpu section itself are never applied, its SHF_ALLOC
        was cleared) to ``per_cpu_ptr(mod->percpu, cpu)``."""
        data = bytes(sec.size) if sec.nobits else mod.file.section_data(sec)
        copies = self.percpu_copies(mod.percpu)
        for phys in copies:
            self.mem.write(phys, data)
        return f"{sec.size:#x} bytes to the {len(copies)} CPU(s)' copies"

    def _simplify_symbols(self, mod: Module, stub_missing: bool, pcpusec=None) -> list[int]:
        """``simplify_symbols``: every symbol's final value (by symbol index). A symbol of
        the per-cpu section is ``mod_percpu(mod) + st_value``: a per-cpu pointer."""
        mf = mod.file
        values = [0] * len(mf.symbols)
        ksyms = self.ksymtab
        placements = mod.layout.placements
        missing = []
        for sym in mf.symbols[1:]:
            if sym.shndx == SHN_COMMON:
                # kernel/module.c simplify_symbols
                raise ModuleError(f"{mod.name}: please compile with -fno-common")
            if sym.shndx == SHN_ABS or sym.shndx == SHN_LIVEPATCH:
                values[sym.index] = sym.value
            elif sym.shndx == SHN_UNDEF:
                addr = ksyms.get(sym.name)
                if addr is None and sym.name in self._stub_syms:
                    addr = self._stub_syms[sym.name]
                if addr is None:
                    if sym.bind == STB_WEAK:
                        continue  # an undefined weak symbol is 0
                    if stub_missing:
                        addr = self._stub_for(sym.name)
                        mod.stubbed.append(sym.name)
                    else:
                        missing.append(sym.name)
                        continue
                values[sym.index] = addr
                mod.resolved[sym.name] = addr
            elif pcpusec is not None and sym.shndx == pcpusec.index:
                values[sym.index] = (mod.percpu + sym.value) & self.pcpu.mask
                if sym.bind != STB_LOCAL and sym.type != STT_SECTION and sym.name:
                    mod.symbols[sym.name] = values[sym.index]
            elif sym.shndx < SHN_LORESERVE:
                p = placements.get(sym.shndx)
                if p is None:
                    continue  # a symbol of a section not loaded (debug info): never relocated against
                values[sym.index] = (p.address or 0) + sym.value  # sh_addr 0: an empty, unallocated region
                if sym.bind != STB_LOCAL and sym.type != STT_SECTION and sym.name:
                    mod.symbols[sym.name] = values[sym.index]
                if sym.type in (STT_FUNC, STT_OBJECT) and sym.name and p.address is not None:
                    mod.kallsyms.append((values[sym.index], sym.size, sym.name, p.region.init))
        if missing:
            # kernel/module.c resolve_symbol_wait / simplify_symbols: "%s: Unknown symbol %s (err %d)"
            raise ModuleError("\n".join(self.era.module_unknown_symbol.format(module=mod.name, name=n)
                                        for n in missing), ENOENT)
        return values

    def _stub_for(self, name: str) -> int:
        """An address for an undefined symbol bound with ``stub_missing``: after the exports,
        in the kernel's text; a call there stops the module, naming the function."""
        addr = self._stub_syms.get(name)
        if addr is None:
            addr = self._place_kernel_function(self._stub_syms, name)
        return addr

    def _apply_relocations(self, mod: Module, rel, target, values: list[int], table: RelocTable) -> Counter:
        """One relocation section, in the order of its entries: the target section is read
        once, relocated in a host buffer, and written back once."""
        base = target.address
        size = target.section.size
        buf = bytearray(self._module_read(base, size)) if size else bytearray()
        types = table.types
        rela = table.rela
        addends = rel.addends
        counts = dict.fromkeys(set(rel.types), 0)
        zero = bytes(8)
        resolve = table.resolve
        section = (RelocSection(rel.offsets, rel.types, rel.symbols, addends, values, base, mod, self._module_write)
                   if resolve is not None or table.finish is not None else None)
        for i, (off, rtype, symi) in enumerate(zip(rel.offsets, rel.types, rel.symbols)):
            kind = types.get(rtype)
            if kind is None:
                raise ModuleError(table.unknown.format(module=mod.name, type=rtype))
            width = kind.width
            end = off + width
            if end > size and width:
                raise ModuleError(f"{mod.name}: relocation {i} of {rel.section.name} at offset {off:#x} is outside "
                                  f"{target.section.name} ({size:#x} bytes)")
            S = values[symi]
            A = addends[i] if rela else int.from_bytes(buf[off:end], "little", signed=True)
            try:
                if resolve is not None:
                    S, A = resolve(section, i, S, A)
                if kind.insn:
                    width, value = kind.apply(S, A, base + off, int.from_bytes(buf[off:end], "little"))
                else:
                    width, value = kind.apply(S, A, base + off)
            except RelocOverflow as exc:
                if not (kind.veneer and table.veneer):
                    raise ModuleError(table.overflow.format(module=mod.name, type=rtype, value=exc.value)) from None
                width, value = table.veneer(self, mod, kind, S, A, base + off,
                                            int.from_bytes(buf[off:end], "little"), exc)
            except RelocError as exc:
                raise ModuleError(exc.message.replace("{module}", mod.name)) from None
            if width:
                end = off + width
                if kind.zero_target and buf[off:end] != zero[:width]:
                    raise ModuleError(table.nonzero.format(type=rtype, place=base + off, value=value))
                buf[off:end] = value.to_bytes(width, "little")
            counts[rtype] += 1
        if table.finish is not None:
            try:
                writes = table.finish(section, buf)
            except RelocError as exc:
                raise ModuleError(exc.message.replace("{module}", mod.name)) from None
            for off, data in sorted(writes.items()):
                if off + len(data) > size:
                    raise ModuleError(f"{mod.name}: a relocation of {rel.section.name} at offset {off:#x} is "
                                      f"outside {target.section.name} ({size:#x} bytes)")
                buf[off:off + len(data)] = data
        if size:
            self._module_write(base, bytes(buf))
        named = Counter({types[t].name: n for t, n in counts.items()})
        mod.relocations.update(named)
        return named

    def _set_module_permissions(self, mod: Module, after_init: bool) -> None:
        """``module_enable_ro``/``module_enable_nx``/``module_enable_x`` (before init: text
        RX, rodata RO, ro_after_init and data RW+NX) and, after init, ro_after_init RO.
        Each change is ``set_memory_*`` on the module's mapping, with its TLB flush."""
        prots = {TEXT: "PAGE_KERNEL_RX", RODATA: "PAGE_KERNEL_RO", DATA: "PAGE_KERNEL",
                 RO_AFTER_INIT: "PAGE_KERNEL_RO" if after_init else "PAGE_KERNEL"}
        for region in mod.layout.regions:
            if region.init and after_init:
                continue
            for span in region.spans:
                if after_init and span.kind != RO_AFTER_INIT:
                    continue
                start = region.base + (span.start & ~(PAGE_SIZE - 1))
                end = region.base + ((span.end + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
                if end > start:
                    self.pgtable.protect(self.pgd, start, end - start, self.pgprot[prots[span.kind]],
                                         writer="set_memory_" + {TEXT: "rox", RODATA: "ro", DATA: "nx"}.get(
                                             span.kind, "ro" if after_init else "nx"))
                    self.flush_tlb_kernel_range(start, end)

    # -- unloading ----------------------------------------------------------------------

    @operation
    def delete_module(self, name: str, run_exit: bool = True, budget: int = MODULE_CODE_BUDGET) -> None:
        """``delete_module(2)``: run the module's exit function on the CPU (*run_exit*),
        free every region and drop it from the list. A module that is not live (its init
        oopsed) cannot be removed, as in the kernel (-EBUSY)."""
        if not isinstance(name, str):
            raise MmemuError(f"delete_module: name must be a str, not {type(name).__name__}")
        mod = self.find_module(name)
        if mod is None:
            raise ModuleError(f"delete_module: no module {name!r} is loaded (-ENOENT)", ENOENT)
        if mod.state != LIVE:
            raise ModuleError(f"delete_module: module {name} is {mod.state}, not live (-EBUSY)", 16)
        self.journal.set(mod, "state", GOING)
        if run_exit and mod.exit is not None:
            self._run_module_function(mod, mod.exit, "exit", budget)
        for region in mod.layout.regions:
            if not region.init:
                self._module_free(region.base)
        if mod.percpu is not None:
            self.free_percpu(mod.percpu)  # free_module: percpu_modfree
        self.journal.remove(self.modules, mod)


_ERRNO_NAMES = {1: "Operation not permitted", 2: "No such file or directory", 5: "Input/output error",
                8: "Exec format error", 12: "Cannot allocate memory", 14: "Bad address", 16: "Device or resource busy",
                17: "File exists", 19: "No such device", 22: "Invalid argument", 28: "No space left on device"}


def _strerror(errno: int) -> str:
    """strerror() of the errno a failed init returned (what insmod prints)."""
    return _ERRNO_NAMES.get(errno, f"Unknown error {errno}")


#: include/linux/license.h license_is_gpl_compatible
GPL_COMPATIBLE = ("GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL")


def license_is_gpl_compatible(license: str) -> bool:
    return license in GPL_COMPATIBLE


def _name_from_file(path: str) -> str:
    """The module's name from its file when .modinfo has no ``name=`` (before 5.3's modpost
    added it): the file's stem, ``-`` as ``_`` (kbuild's KBUILD_MODNAME)."""
    stem = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko", ".o"):
        if stem.endswith(ext):
            stem = stem[:-len(ext)]
            break
    return stem.replace("-", "_")
