"""Direct calls into libunicorn for the fault path, without the Python binding's layers.

The binding's ``context_update`` and ``context_restore`` are Python methods that read a
property and call the C function through ctypes; on the fault path (every page fault saves
the CPU state to read it, and x86 restores it to reset ``old_exception``) those layers cost
as much as the copy itself. :func:`context_calls` binds the C functions to one engine and one
context once: each call is then a ctypes call and nothing else.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from unicorn import Uc
from unicorn.unicorn_py3.unicorn import uclib


def context_calls(uc: Uc, ctx) -> tuple[Callable[[], int], Callable[[], int]]:
    """(update, restore): ``uc.context_update(ctx)`` and ``uc.context_restore(ctx)`` for one
    engine and one context (a ``uc.context_save()``), each returning Unicorn's error code
    (0: done) for the caller to raise ``UcError`` on, as the binding would."""
    return (partial(uclib.uc_context_save, uc._uch, ctx._context),
            partial(uclib.uc_context_restore, uc._uch, ctx._context))
