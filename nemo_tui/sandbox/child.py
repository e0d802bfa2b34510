"""The main program of an analysis script's child process: set the limits, then run the script.

`nemo_tui.sandbox.runner` starts it as

    python -I -X utf8 child.py MEMORY_BYTES CPU_S FILE_BYTES MEMORY_STATUS REPORT_FD SCRIPT DATA

in whichever interpreter runs scripts (`analysis.python`), which need not have nemo-tui
installed. So this file uses the standard library only, keeps to syntax Python 3.9 reads, and
learns everything it shares with the parent from its arguments:

- MEMORY_BYTES: the address-space cap (RLIMIT_AS).
- CPU_S: whole CPU seconds (RLIMIT_CPU): SIGXCPU then, SIGKILL one second later.
- FILE_BYTES: the largest file the script may write (RLIMIT_FSIZE).
- MEMORY_STATUS: the exit status that tells the parent a MemoryError stopped the script.
- REPORT_FD: a pipe to the parent; the script's peak resident memory is written there at the end.
- SCRIPT, DATA: the script, and the data file it gets as `sys.argv[1]`.

The script runs in this interpreter, as the `__main__` module, not in a second one: one
interpreter start per run. It is compiled and run here rather than with `runpy`, and `traceback`
is imported only when there is one to print: `runpy`, `signal` and `traceback` bring in
`pkgutil`, `enum`, `collections` and `tokenize`, which about double the cost of starting a trivial
script (`bench/bench_sandbox.py`). Its traceback is cut to start at its own first frame, so it
reads as if the script had been run directly (it goes back to the model that wrote the script).
"""

import io
import os
import resource
import sys

try:
    import _signal as signals  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # an interpreter other than CPython
    import signal as signals

MEMORY_HEADROOM_BYTES = 64 * 1024 * 1024
"""Room above the memory cap, used only to print the traceback of the MemoryError the cap caused
(the hard limit; the soft limit is the cap)."""


def _set_limit(which: int, soft: int, hard: int) -> None:
    # An unprivileged process cannot raise its hard limit: stay under one set from outside.
    _, ceiling = resource.getrlimit(which)
    if ceiling != resource.RLIM_INFINITY:
        hard = min(hard, ceiling)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def _print_script_traceback(error: BaseException, script: str) -> None:
    import traceback

    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename != script:
        frames = frames.tb_next
    # With no frame of the script left (a SyntaxError), this prints what Python prints for one.
    traceback.print_exception(type(error), error, frames)
    sys.stderr.flush()


def _peak_kib() -> bytes:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return line.split()[1]
    return b""


def _report_peak(report_fd: int) -> None:
    try:
        os.write(report_fd, _peak_kib())
    except (OSError, MemoryError, IndexError):
        # Without /proc (macOS), or with a script that closed the pipe, the parent goes by what
        # the kernel reports at exit.
        return


def _run(script: str) -> None:
    with io.open_code(script) as file:
        source = file.read()
    code = compile(source, script, "exec", dont_inherit=True)
    module = type(sys)("__main__")  # a new module, as `types.ModuleType` makes one
    module.__file__ = script
    sys.modules["__main__"] = module
    exec(code, vars(module))


def main(argv: list[str]) -> int:
    """Set the limits, run the script, and return the exit status for the parent.

    Args:
        argv: This program's arguments, as in the module docstring.

    Returns:
        0 when the script ran to its end, 1 when an exception escaped it, MEMORY_STATUS when
        that exception was a MemoryError (numpy's allocation error is one). A `sys.exit` in
        the script passes through unchanged.
    """
    memory, cpu, file_size, memory_status, report_fd = (int(value) for value in argv[1:6])
    script, data = argv[6], argv[7]
    # The pipe reached this process through `pass_fds`; the script's own children get none of it.
    os.set_inheritable(report_fd, False)
    _set_limit(resource.RLIMIT_AS, memory, memory + MEMORY_HEADROOM_BYTES)
    _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    _set_limit(resource.RLIMIT_FSIZE, file_size, file_size)
    _set_limit(resource.RLIMIT_CORE, 0, 0)
    # Python ignores SIGXFSZ, so a write past the file cap would be an OSError the script may
    # swallow; with the default action the write ends the process and the parent names the cap.
    signals.signal(signals.SIGXFSZ, signals.SIG_DFL)
    # A pipe makes stdout block-buffered: a script killed at a limit would lose what it printed.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.argv = [script, data]
    try:
        _run(script)
    except MemoryError as error:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        try:  # noqa: SIM105 - contextlib is not imported for this alone
            _print_script_traceback(error, script)
        except MemoryError:
            pass
        return memory_status
    except Exception as error:
        _print_script_traceback(error, script)
        return 1
    finally:
        _report_peak(report_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
