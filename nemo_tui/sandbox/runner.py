"""Run an analysis script in a child process, under limits, and report what it did.

What this protects against: a runaway or greedy script, and keys leaking through the
environment. The script gets a fresh temporary working directory (removed afterwards), a cap on
its address space, on its CPU seconds, on its wall-clock time, on the output captured from it and
on the size of any file it writes; a limit that stops it is named in the result. Its environment
is built from an allowlist, so API keys, nemo-tui's own settings and anything else the user
exported are not in it. It runs in its own process group, which is killed when it ends, when it is
stopped and when the caller stops waiting, so nothing it started lingers.

What it does not protect against: hostile code. This is not a security sandbox. The script runs
as the same user, so it can read and write every file that user can (a key in a config file
included), and it can open network connections. Run only scripts you would run yourself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, TypeAlias

from nemo_tui.core.analysis.run import AnalysisRun, LimitHit, RunLimits
from nemo_tui.sandbox.libraries import cannot_run, interpreter
from nemo_tui.units import MB

SCRIPT_NAME = "analysis.py"
"""The script's file name in its working directory (tracebacks show it)."""

MEMORY_EXIT_STATUS = 211
"""The exit status the launcher (`child.py`, which gets it as an argument) gives a script a
MemoryError stopped; far from the small statuses scripts exit with. A script that exits with it
by itself is reported as stopped at the memory cap."""

_LAUNCHER = Path(__file__).with_name("child.py")

_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
"""The only variables of nemo-tui's environment a script sees."""

_PINNED_ENV = {
    # One thread per pool: each thread's stack and arena count against the address-space cap,
    # and a shared machine is not flooded by one script.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
    # A plot is saved to a file; there is no display to open a window on.
    "MPLBACKEND": "Agg",
}

_READ_CHUNK = 65536
_SAMPLE_INTERVAL_S = 0.2
"""How often the script's peak memory is read while it runs, for a kill at a CPU or file limit
(the launcher reports it at every other end)."""
_PIPE_GRACE_S = 1.0
"""How long output is still read once the process group is gone: a process that left the group
may hold the pipes open forever."""

_PROC = Path("/proc/self/status").exists()
_WAITID = hasattr(os, "waitid")
_MAXRSS_MB = 1 / MB if sys.platform == "darwin" else 1 / 1024
"""`ru_maxrss` is in bytes on macOS and in KiB elsewhere."""

_WANTED = ("VmRSS:", "VmHWM:")
"""The lines of /proc/<pid>/status read: memory now, and the peak so far."""

_Stop: TypeAlias = LimitHit | Literal["user"]


@dataclass(frozen=True)
class _Exit:
    """What the kernel and the launcher said when the process was reaped."""

    code: int
    cpu_s: float
    maxrss_mb: float
    reported_peak_mb: float | None
    wall_s: float


class _Capture:
    """Reads stdout and stderr as they come, up to a total number of bytes."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pipes: tuple[IO[bytes], IO[bytes]],
        room: int,
        on_full: Callable[[], object],
    ) -> None:
        self.room = room
        self.full = False
        self.chunks: tuple[list[bytes], list[bytes]] = ([], [])
        self.closed = [loop.create_future() for _ in pipes]
        self._loop = loop
        self._on_full = on_full
        self._fds = [pipe.fileno() for pipe in pipes]
        for index, fd in enumerate(self._fds):
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._read, index)

    def _read(self, index: int) -> None:
        try:
            data = os.read(self._fds[index], min(_READ_CHUNK, self.room + 1))
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(index)
        elif len(data) > self.room:
            self.chunks[index].append(data[: self.room])
            self.room = 0
            self.full = True
            self.stop()
            self._on_full()
        else:
            self.chunks[index].append(data)
            self.room -= len(data)

    def _close(self, index: int) -> None:
        if not self.closed[index].done():
            self._loop.remove_reader(self._fds[index])
            self.closed[index].set_result(None)

    def stop(self) -> None:
        """Read no more."""
        for index in range(len(self._fds)):
            self._close(index)

    def text(self, index: int) -> str:
        """What one stream said, decoded (a character cut at the cap is replaced)."""
        return b"".join(self.chunks[index]).decode("utf-8", errors="replace")


class ScriptRun:
    """One run of an analysis script in a child process; make it with `start`, then `wait`.

    Thread-safe: `kill` and `rss_mb` may be called from any thread.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        workdir: Path,
        limits: RunLimits,
        cpu_limit_s: int,
        report_fd: int,
        started: float,
    ) -> None:
        self._popen = popen
        self._workdir = workdir
        self._limits = limits
        self._cpu_limit_s = cpu_limit_s
        self._report_fd = report_fd
        self._started = started
        # A child's `ru_maxrss` starts from this process's peak: exec keeps the larger of the
        # two. Above this it is the script's own; at or below, the launcher's report counts.
        self._parent_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_MB
        self._lock = threading.Lock()
        self._reaped = False
        self._exit: _Exit | None = None
        self._failure: BaseException | None = None
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._stop: _Stop | None = None
        self._sampled_peak_mb: float | None = None
        threading.Thread(target=self._reap, name=f"nemo-script-{popen.pid}", daemon=True).start()

    @classmethod
    def start(
        cls, code: str, data_file: Path, limits: RunLimits, *, python: str | None = None
    ) -> ScriptRun:
        """Start a script: written to a fresh temporary folder, which is its working directory.

        Args:
            code: The script.
            data_file: The file it reads; its absolute path is the script's `sys.argv[1]`.
            limits: The limits it runs under.
            python: The interpreter to run it in; None for the one running nemo-tui.

        Returns:
            The running script; `wait` for it (once).

        Raises:
            NemoError: the interpreter cannot be started.
        """
        workdir = Path(tempfile.mkdtemp(prefix="nemo-analysis-"))
        try:
            script = workdir / SCRIPT_NAME
            script.write_text(code, encoding="utf-8")
            cpu_limit_s = max(1, math.ceil(limits.cpu_s))
            report_fd, report_child_fd = os.pipe()
            argv = [
                interpreter(python),
                "-I",
                "-X",
                "utf8",
                str(_LAUNCHER),
                str(int(limits.memory_mb * MB)),
                str(cpu_limit_s),
                str(int(limits.file_mb * MB)),
                str(MEMORY_EXIT_STATUS),
                str(report_child_fd),
                str(script),
                str(Path(data_file).resolve()),
            ]
            try:
                started = time.perf_counter()
                popen = subprocess.Popen(
                    argv,
                    cwd=workdir,
                    env=_child_env(workdir),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    close_fds=True,
                    pass_fds=(report_child_fd,),
                    start_new_session=True,
                )
            except OSError as error:
                os.close(report_fd)
                raise cannot_run(python, f"cannot be started: {error.strerror or error}") from error
            finally:
                os.close(report_child_fd)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        os.set_blocking(report_fd, False)
        return cls(popen, workdir, limits, cpu_limit_s, report_fd, started)

    @property
    def pid(self) -> int:
        """The child's process id, which is also its process group's."""
        return self._popen.pid

    def rss_mb(self) -> float | None:
        """The script's resident memory now, in MB; None once it has ended."""
        with self._lock:
            return None if self._reaped else self._sample()

    def kill(self) -> None:
        """Stop the script and everything it started; `wait` returns it as cancelled."""
        self._kill_group("user")

    async def wait(self) -> AnalysisRun:
        """Capture the script's output until it ends, stopping it at the wall-clock timeout.

        Call it once. Cancelling it kills the script and everything it started; the temporary
        folder is removed either way.

        Returns:
            What the run did: exit status, output up to the cap, wall time, peak memory, and the
            limit that stopped it or whether it was cancelled.
        """
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._reaped:
                ended.set_result(None)
            else:
                self._waiter = (loop, ended)
        assert self._popen.stdout is not None and self._popen.stderr is not None
        pipes = (self._popen.stdout, self._popen.stderr)
        capture = _Capture(
            loop, pipes, self._limits.output_bytes, lambda: self._kill_group(LimitHit.OUTPUT)
        )
        wall_left = self._started + self._limits.wall_s - time.perf_counter()
        wall_timer = loop.call_later(max(0.0, wall_left), self._kill_group, LimitHit.WALL)
        sampler: asyncio.TimerHandle

        def sample() -> None:
            nonlocal sampler
            if self.rss_mb() is not None:
                sampler = loop.call_later(_SAMPLE_INTERVAL_S, sample)

        sampler = loop.call_later(_SAMPLE_INTERVAL_S, sample)
        try:
            try:
                await asyncio.shield(ended)
            except asyncio.CancelledError:
                self._kill_group(None)
                # Reaped within milliseconds of SIGKILL; if cancelled again, the reaper thread
                # still reaps and removes the folder.
                await ended
                raise
            await asyncio.wait(capture.closed, timeout=_PIPE_GRACE_S)
        finally:
            wall_timer.cancel()
            sampler.cancel()
            capture.stop()
            for pipe in pipes:
                pipe.close()
        if self._failure is not None:
            raise self._failure
        assert self._exit is not None
        return self._result(self._exit, capture)

    def _kill_group(self, stop: _Stop | None) -> None:
        with self._lock:
            if self._reaped:
                return
            if self._stop is None:
                self._stop = stop
            self._sample()
            # Until the child is reaped its pid, and so its group id, cannot be reused.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)

    def _sample(self) -> float | None:
        """Current RSS in MB, noting the peak so far; the lock is held."""
        if not _PROC:
            return _psutil_rss_mb(self._popen.pid)
        try:
            status = Path(f"/proc/{self._popen.pid}/status").read_text(encoding="ascii")
        except OSError:
            return None
        values = dict(_status_kib(line) for line in status.splitlines() if line[:6] in _WANTED)
        if "VmHWM:" in values:
            peak = values["VmHWM:"] / 1024
            self._sampled_peak_mb = max(peak, self._sampled_peak_mb or 0.0)
        # A zombie has no memory lines: it has ended.
        rss = values.get("VmRSS:")
        return rss / 1024 if rss is not None else None

    def _reap(self) -> None:
        pid = self._popen.pid
        try:
            if _WAITID:
                # Wait without reaping, so what is left of the group can be killed while the pid,
                # and so the group id, is still reserved.
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            # Python before 3.13 on macOS has no waitid: the leftovers are killed just after.
            reaped = None if _WAITID else os.wait4(pid, 0)
            with self._lock:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                _, status, usage = reaped or os.wait4(pid, 0)
                self._reaped = True
                wall_s = time.perf_counter() - self._started
                code = os.waitstatus_to_exitcode(status)
                self._popen.returncode = code
                self._exit = _Exit(
                    code=code,
                    cpu_s=usage.ru_utime + usage.ru_stime,
                    maxrss_mb=usage.ru_maxrss * _MAXRSS_MB,
                    reported_peak_mb=_read_report(self._report_fd),
                    wall_s=wall_s,
                )
        except Exception as error:
            # Only if something else reaped the child; `wait` raises it rather than hang.
            self._failure = error
        finally:
            with self._lock:
                self._reaped = True
                waiter = self._waiter
            os.close(self._report_fd)
            shutil.rmtree(self._workdir, ignore_errors=True)
            if waiter is not None:
                loop, ended = waiter
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(_resolve, ended)

    def _result(self, end: _Exit, capture: _Capture) -> AnalysisRun:
        killed = end.code == -signal.SIGKILL
        cancelled = self._stop == "user" and killed
        # A kill the script had already outrun (it exited by itself) stopped nothing.
        limit_hit: LimitHit | None = None
        if cancelled:
            pass
        elif self._stop is LimitHit.WALL and killed:
            limit_hit = LimitHit.WALL
        elif capture.full:
            limit_hit = LimitHit.OUTPUT
        else:
            limit_hit = self._limit_from_status(end)
        return AnalysisRun(
            exit_code=end.code,
            stdout=capture.text(0),
            stderr=capture.text(1),
            wall_s=end.wall_s,
            peak_rss_mb=self._peak_mb(end),
            limit_hit=limit_hit,
            limits=self._limits,
            cancelled=cancelled,
        )

    def _limit_from_status(self, end: _Exit) -> LimitHit | None:
        if end.code == MEMORY_EXIT_STATUS:
            return LimitHit.MEMORY
        # SIGKILL at the CPU limit is the hard limit, for a script that handled SIGXCPU.
        if end.code == -signal.SIGXCPU or (
            end.code == -signal.SIGKILL and end.cpu_s >= self._cpu_limit_s
        ):
            return LimitHit.CPU
        if end.code == -signal.SIGXFSZ:
            return LimitHit.FILE
        return None

    def _peak_mb(self, end: _Exit) -> float | None:
        if end.maxrss_mb > self._parent_peak_mb:
            return end.maxrss_mb
        known = [mb for mb in (end.reported_peak_mb, self._sampled_peak_mb) if mb is not None]
        return max(known, default=None)


async def run_script(
    code: str, data_file: Path, limits: RunLimits, *, python: str | None = None
) -> AnalysisRun:
    """Run a script to its end (see `ScriptRun.start` for the arguments).

    Raises:
        NemoError: the interpreter cannot be started.
    """
    return await ScriptRun.start(code, data_file, limits, python=python).wait()


def _child_env(workdir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env["HOME"] = env["TMPDIR"] = str(workdir)
    env.update(_PINNED_ENV)
    return env


def _status_kib(line: str) -> tuple[str, int]:
    name, value, *_ = line.split()
    return name, int(value)


def _read_report(fd: int) -> float | None:
    try:
        return int(os.read(fd, 64)) / 1024
    except (OSError, ValueError):
        return None


def _psutil_rss_mb(pid: int) -> float | None:
    # Only where /proc is missing: importing psutil costs the dashboard start-up time.
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / MB
    except psutil.Error:
        return None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
