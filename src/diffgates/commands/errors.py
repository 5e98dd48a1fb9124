"""The command line's one error policy: every user-facing error is one line and one exit code per kind.

``cli.main`` runs a command and hands any exception to ``report``: known kinds print
``diffgates CMD: error: MESSAGE`` on stderr (the message names the path or value) and return their exit
code; anything else is a bug and keeps its traceback. The exit codes (also in ``diffgates --help``):

====  ==========================================================================================
 0    success
 1    a check failed (a compiled circuit or a simulation differs from the reference)
 2    bad arguments or configuration (a flag's value, a conflicting --resume, no CUDA for --device cuda)
 3    a missing, corrupt or foreign file (models, checkpoints, circuits, datasets: says where to put them)
 4    the operating system refused (disk full, permissions, a path that is a folder or too long)
 5    busy: the run folder is in use by another diffgates process
 6    a tool failed or is missing (the C compiler, a Verilog simulator, ABC)
 130  interrupted (Ctrl-C or SIGTERM; a training run keeps its last checkpoint)
====  ==========================================================================================

Classification looks at exception classes of modules already imported (``sys.modules``), so this
module imports nothing heavy and an error never triggers a new import.
"""
from __future__ import annotations

import errno
import sys

OK, CHECK_FAILED, USAGE, BAD_FILE, OS_REFUSED, BUSY, TOOL_FAILED, INTERRUPTED = 0, 1, 2, 3, 4, 5, 6, 130

EXIT_CODES_HELP = ("exit status: 0 success, 1 a check failed, 2 bad arguments, 3 missing/corrupt/foreign file, "
                   "4 the OS refused (disk full, permissions), 5 run folder in use, 6 a tool failed, "
                   "130 interrupted")

# (module, class name) -> exit code; subclasses first where they matter (checked in order).
_KNOWN = (
    ("diffgates.train.runlock", "RunFolderBusy", BUSY),
    ("diffgates.modelfiles.models", "ModelFileError", BAD_FILE),
    ("diffgates.modelfiles.tensors", "TensorFileError", BAD_FILE),
    ("diffgates.ir.circuit", "CircuitFormatError", BAD_FILE),
    ("diffgates.backends.netlist.aiger", "AigerFormatError", BAD_FILE),
    ("diffgates.data.errors", "DatasetNotFoundError", BAD_FILE),
    ("diffgates.data.errors", "ChecksumMismatchError", BAD_FILE),
    ("diffgates.data.errors", "DataFormatError", BAD_FILE),
    ("diffgates.data.errors", "UnsafePickleError", BAD_FILE),
    ("diffgates._native", "CompilationError", TOOL_FAILED),
    ("diffgates._native", "LibraryLoadError", TOOL_FAILED),  # an OSError, but the build's, not the user's
    ("diffgates.backends.verilog.simulate", "SimulatorNotFound", TOOL_FAILED),
    ("diffgates.backends.verilog.simulate", "SimulationError", TOOL_FAILED),
    ("diffgates.backends.netlist.abc", "SynthesisToolNotFound", TOOL_FAILED),
    ("diffgates.backends.netlist.abc", "SynthesisError", TOOL_FAILED),
)


def _known_code(exc: BaseException) -> int | None:
    for module_name, class_name, code in _KNOWN:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if cls is not None and isinstance(exc, cls):
            return code
    return None


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: what the system said, the path(s), and what that means for the user's files."""
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    text = exc.strerror or str(exc)
    message = f"{paths}: {text}" if paths else text
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        message += ("; nothing was half-written: every file diffgates writes replaces the old one only once "
                    "it is complete, so the files already there are intact")
    elif exc.errno == errno.ENAMETOOLONG:
        message += " (a file name may have at most 255 bytes)"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        message += " (choose a writable location)"
    return message


def exit_code(exc: BaseException) -> int | None:
    """The exit code of a user-facing error, or None for an unexpected one (a bug: keep the traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    code = _known_code(exc)
    if code is not None:
        return code
    if isinstance(exc, FileNotFoundError):
        return BAD_FILE  # an input that is not there (the message says where it was looked for)
    if isinstance(exc, FileExistsError):
        return USAGE  # e.g. --out already holds a run: choose another folder or --resume
    if isinstance(exc, OSError):
        return OS_REFUSED
    if isinstance(exc, ValueError):
        return USAGE
    return None


def message(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError) and exc.errno is not None and _known_code(exc) is None:
        return os_error_message(exc)  # the OS's own error: its text and path, not a repr
    return str(exc).strip() or type(exc).__name__


def report(command: str, exc: BaseException) -> int:
    """Print ``exc`` as the command's one error line and return its exit code; re-raise unexpected ones."""
    code = exit_code(exc)
    if code is None:
        raise exc
    print(f"diffgates {command}: error: {message(exc)}", file=sys.stderr)
    return code
