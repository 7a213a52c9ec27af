"""The checks behind a scenario's ``expect_translation``, ``expect_fault`` and ``expect_log``
(and the pytest plugin's ``assert_translation``, ``assert_fault``, ``assert_log``): each
looks at the kernel, changes nothing, and returns a :class:`Check`: whether it holds, why
not (one line naming the address and what differs), what it saw, and the object it found
(the :class:`~mmemu.pagetable.Walk`, the :class:`~mmemu.faults.Fault`, the log line).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import KR, KW, KX, UR, UW, UX


@dataclass(frozen=True)
class Check:
    ok: bool
    why: str = ""  # what is wrong ("" when it holds)
    text: str = ""  # what was seen ("": nothing more than ok/why says)
    found: object = None


def rights_text(rights: int, bits) -> str:
    """``"rw-"``: the rights of *bits* (KR, KW, KX or UR, UW, UX) in *rights*."""
    return "".join(c if rights & b else "-" for c, b in zip("rwx", bits))


def _walk(k, addr: int, process, user: bool = False):
    """The walk in *process*'s tables (or the kernel's); with *user*, in the ones user mode
    runs on (x86 PTI's user copy)."""
    if process is not None:
        return k.walk_mm(addr, process, user)
    return k.walk(addr, k.user_pgd(k.pgd) if user else None)


def check_translation(k, addr: int, *, process=None, phys: int | None = None, page_size: int | None = None,
                      kernel: str | None = None, user: str | None = None, mapped: bool = True) -> Check:
    """The walk of *addr* (in *process*'s tables, or the kernel's) ends as said: mapped (or
    not), to *phys*, by a page of *page_size*, with these kernel and user rights
    (``"rw-"``); None is "any"."""
    w = _walk(k, addr, process)
    if not mapped:
        return Check(not w.mapped, f"{addr:#x} is mapped to {w.phys or 0:#x}", f"{addr:#x} not mapped", w)
    if not w.mapped:
        return Check(False, f"{addr:#x} is not mapped ({w.missing})", "", w)
    uw = _walk(k, addr, process, user=True)  # what user mode may do, it does through its own tables
    got = {"phys": w.phys, "page_size": w.page_size, "kernel": rights_text(w.rights, (KR, KW, KX)),
           "user": rights_text(uw.rights if uw.mapped else 0, (UR, UW, UX))}
    for key, want in (("phys", phys), ("page_size", page_size), ("kernel", kernel), ("user", user)):
        if want is not None and want != got[key]:
            show = (lambda v: f"{v:#x}") if key in ("phys", "page_size") else repr
            return Check(False, f"{key} of {addr:#x} is {show(got[key])}, expected {show(want)}", "", w)
    return Check(True, "", f"{addr:#x} -> {w.phys:#x} ({got['kernel']} kernel, {got['user']} user, "
                           f"{w.page_size:#x} page)", w)


def check_fault(k, addr: int, access: str = "read", user: bool = False, *, process=None, code: int | None = None,
                kind: str | None = None) -> Check:
    """An *access* to *addr* raises a page fault (with the arch's *code*, e.g. the x86 error
    code, and of this *kind*: not-present, protection...); nothing is handled."""
    w = _walk(k, addr, process, user)
    f = w.fault(access, user)
    if f is None:
        return Check(False, f"a {access} of {addr:#x} does not fault (phys {w.phys:#x})", "", w)
    if code is not None and f.code != code:
        return Check(False, f"the fault's code is {f.code:#x}, expected {code:#x}", "", f)
    if kind is not None and f.kind != kind:
        return Check(False, f"the fault is {f.kind}, expected {kind}", "", f)
    return Check(True, "", f"{access} of {addr:#x} faults: {f.kind}, code {f.code:#x}", f)


def check_log(k, contains: str) -> Check:
    """A line of the kernel log contains *contains* (the first such line is found)."""
    hit = next((r.text for r in k.log if contains in r.text), None)
    return Check(hit is not None, f"no kernel log line contains {contains!r}", hit or "", hit)
