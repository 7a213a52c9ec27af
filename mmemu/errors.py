"""mmemu's one exception hierarchy.

Every error a user can cause derives from :class:`MmemuError`; the CLI prints its message
on one line and exits non-zero, so a message must name what was wrong on its own.
Where the kernel has words for a condition (``vmap allocation for size … failed``), the
message uses them.
"""


class MmemuError(Exception):
    """Base of every error mmemu raises on purpose."""


class ConfigError(MmemuError, ValueError):
    """A machine description that cannot be built: unknown arch, RAM size the arch cannot
    address, malformed size/option/command line, unsupported kernel version."""


class PluginError(MmemuError):
    """A plugin broke the contract: misspelt hook, duplicate arch name, bad Arch object."""


class AddressError(MmemuError, ValueError):
    """An address that is malformed or outside the arch's virtual or physical space."""


class OutOfMemory(MmemuError):
    """The frame allocator could not satisfy a request (the kernel's -ENOMEM)."""

    errno = 12  # ENOMEM


class MappingError(MmemuError):
    """A page-table operation that the engine refuses: overlapping a large page the wrong
    way, unmapping what is not mapped, a misaligned range."""


class KernelBug(MmemuError):
    """A condition on which the kernel would ``BUG()``: the emulator reports it and leaves
    the state as it was before the call."""


class KernelWarning(MmemuError):
    """A condition on which the kernel would ``WARN()`` and refuse the operation (``vfree`` of
    an address that is no vmap area, an out-of-order ``kunmap_local``...)."""


class WouldBlock(MmemuError):
    """The kernel would put the caller to sleep (every pkmap slot busy): nothing changed."""


class Oops(MmemuError):
    """A kernel-mode page fault the kernel cannot fix: ``report`` is the oops text in the
    kernel's words. The emulated kernel stays usable."""

    def __init__(self, report: str, fault=None):
        super().__init__(report.splitlines()[0] if report else "Oops")
        self.report = report
        self.fault = fault


class SegmentationFault(MmemuError):
    """A user-mode access the kernel answers with SIGSEGV (outside any VMA, or against its
    permissions): ``report`` is the kernel's ``segfault at`` line."""

    signal = 11

    def __init__(self, report: str, fault=None):
        super().__init__(report)
        self.report = report
        self.fault = fault


class ModuleError(MmemuError):
    """A module the kernel's loader refuses: a malformed or foreign ELF file, an unknown
    symbol, a relocation it cannot apply, an init that failed. ``errno`` is the error the
    kernel's ``load_module`` returns (ENOEXEC 8 by default, ENOENT 2 for an unknown symbol)."""

    def __init__(self, message: str, errno: int = 8):
        super().__init__(message)
        self.errno = errno
