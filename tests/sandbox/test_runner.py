"""Scripts run in a real child process under limits: each ends as the user would need to see it,
nothing hangs, and nothing is left behind (process, temporary folder, open file)."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nemo_tui.core.analysis.run import AnalysisRun, LimitHit, RunLimits
from nemo_tui.errors import NemoError
from nemo_tui.sandbox import runner
from nemo_tui.sandbox.runner import SCRIPT_NAME, ScriptRun, run_script

LIMITS = RunLimits(memory_mb=512, cpu_s=30, wall_s=60, output_bytes=1024 * 1024, file_mb=16)
ENDS_WITHIN_S = 10.0
"""A generous bound for a run stopped at a 1 s limit: the machine is shared and noisy."""


@pytest.fixture(autouse=True)
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put the runs' temporary folders in a folder of their own, and check none is left."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "measurements.csv"
    path.write_text("name,value\na,1.5\nb,2.5\nc,4\n", encoding="utf-8")
    return path


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def ended(pid: int) -> bool:
    """The process is gone, or a zombie waiting for an init that reaps slowly."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def timed(code: str, data: Path, run_limits: RunLimits = LIMITS) -> tuple[AnalysisRun, float]:
    started = time.perf_counter()
    run = await run_script(code, data, run_limits)
    return run, time.perf_counter() - started


async def test_a_good_script_reads_the_data_file_and_prints_its_answer(data: Path) -> None:
    fds = open_fds()
    code = (
        "import csv, sys\n"
        "with open(sys.argv[1], newline='') as f:\n"
        "    rows = list(csv.DictReader(f))\n"
        "print('total', sum(float(r['value']) for r in rows))\n"
    )
    run = await run_script(code, data, LIMITS)
    assert run.ok, run.stderr
    assert run.exit_code == 0
    assert run.stdout == "total 8.0\n"
    assert run.stderr == ""
    assert run.limit_hit is None and not run.cancelled
    assert run.peak_rss_mb is not None and run.peak_rss_mb > 0
    assert 0 < run.wall_s < ENDS_WITHIN_S
    assert open_fds() == fds


async def test_the_script_runs_in_a_fresh_folder_with_the_absolute_data_path(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scratch: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    code = "import os, sys\nprint(os.getcwd())\nprint(sys.argv[0])\nprint(sys.argv[1])\n"
    code += "print(__name__, __file__ == sys.argv[0])\n"
    run = await run_script(code, Path(data.name), LIMITS)
    cwd, script, data_arg, main = run.stdout.splitlines()
    assert Path(cwd).parent == scratch
    assert Path(cwd) != tmp_path
    assert script == str(Path(cwd) / SCRIPT_NAME)
    assert main == "__main__ True"
    assert data_arg == str(data)
    assert not Path(cwd).exists()


async def test_an_exception_shows_a_traceback_of_the_script_alone(data: Path) -> None:
    code = "total = 0\ndef mean(values):\n    return total / len(values)\nmean([])\n"
    run = await run_script(code, data, LIMITS)
    assert run.exit_code == 1
    assert run.limit_hit is None and not run.ok
    assert run.stderr.startswith("Traceback (most recent call last):\n")
    assert f'{SCRIPT_NAME}", line 4, in <module>' in run.stderr
    assert f'{SCRIPT_NAME}", line 3, in mean' in run.stderr
    assert run.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "runpy" not in run.stderr
    assert "child.py" not in run.stderr


async def test_a_syntax_error_reads_as_python_prints_it(data: Path) -> None:
    run = await run_script("print('a'\n", data, LIMITS)
    assert run.exit_code == 1
    assert "SyntaxError" in run.stderr
    assert SCRIPT_NAME in run.stderr
    assert "Traceback" not in run.stderr and "runpy" not in run.stderr


async def test_sys_exit_passes_through(data: Path) -> None:
    run = await run_script("import sys\nprint('partial')\nsys.exit(3)\n", data, LIMITS)
    assert run.exit_code == 3
    assert run.stdout == "partial\n"
    assert run.limit_hit is None


async def test_an_endless_loop_stops_at_the_cpu_limit(data: Path) -> None:
    code = "print('started')\nwhile True:\n    pass\n"
    run, took = await timed(code, data, replace(LIMITS, cpu_s=1))
    assert run.limit_hit is LimitHit.CPU
    assert run.exit_code == -signal.SIGXCPU
    assert run.stdout == "started\n", "what was printed before the kill is kept"
    assert run.outcome().startswith(run.limits.describe(LimitHit.CPU))
    assert took < ENDS_WITHIN_S


async def test_a_loop_that_ignores_sigxcpu_stops_at_the_hard_cpu_limit(data: Path) -> None:
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    run, took = await timed(code, data, replace(LIMITS, cpu_s=1))
    assert run.exit_code == -signal.SIGKILL
    assert run.limit_hit is LimitHit.CPU
    assert took < ENDS_WITHIN_S


async def test_a_script_that_sleeps_stops_at_the_wall_clock_timeout(data: Path) -> None:
    run, took = await timed("import time\ntime.sleep(60)\n", data, replace(LIMITS, wall_s=1))
    assert run.limit_hit is LimitHit.WALL
    assert run.exit_code == -signal.SIGKILL
    assert run.wall_s >= 1.0
    assert took < ENDS_WITHIN_S


async def test_allocating_past_the_cap_stops_at_the_memory_cap(data: Path) -> None:
    code = "print('before')\nb = bytearray(1024 * 1024 * 1024)\nprint('after')\n"
    run, took = await timed(code, data, replace(LIMITS, memory_mb=256))
    assert run.limit_hit is LimitHit.MEMORY
    assert run.limits.describe(LimitHit.MEMORY) == "stopped at the 256 MB memory cap"
    assert run.outcome().startswith("stopped at the 256 MB memory cap")
    assert run.stdout == "before\n"
    assert "MemoryError" in run.stderr and f'{SCRIPT_NAME}", line 2' in run.stderr
    assert "runpy" not in run.stderr
    assert took < ENDS_WITHIN_S


async def test_growing_into_the_cap_bit_by_bit_still_names_the_cap(data: Path) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(1024 * 1024))\n"
    run, took = await timed(code, data, replace(LIMITS, memory_mb=256))
    assert run.limit_hit is LimitHit.MEMORY
    assert run.stderr.rstrip().endswith("MemoryError")
    assert run.peak_rss_mb is not None and 150 < run.peak_rss_mb < 300
    assert took < ENDS_WITHIN_S


async def test_printing_100_mb_stops_at_the_output_cap(data: Path) -> None:
    code = "import sys\nsys.stdout.write('x' * 100_000_000)\n"
    run, took = await timed(code, data, replace(LIMITS, output_bytes=1024 * 1024))
    assert run.limit_hit is LimitHit.OUTPUT
    assert len(run.stdout) + len(run.stderr) <= 1024 * 1024
    assert run.stdout.startswith("xxxx")
    assert run.outcome().startswith("stopped at the 1 MB output cap")
    assert took < ENDS_WITHIN_S


async def test_stdout_and_stderr_share_the_output_cap(data: Path) -> None:
    code = (
        "import sys\n"
        "for _ in range(100):\n"
        "    print('o' * 999)\n"
        "    print('e' * 999, file=sys.stderr)\n"
    )
    run = await run_script(code, data, replace(LIMITS, output_bytes=150_000))
    assert run.limit_hit is LimitHit.OUTPUT
    assert len(run.stdout) + len(run.stderr) == 150_000
    assert run.stdout and run.stderr


async def test_output_up_to_the_cap_is_not_stopped(data: Path) -> None:
    run = await run_script("print('é' * 499)\n", data, replace(LIMITS, output_bytes=999))
    assert run.ok
    assert run.stdout == "é" * 499 + "\n"


async def test_a_character_cut_at_the_cap_is_replaced(data: Path) -> None:
    run = await run_script("print('é' * 1000)\n", data, replace(LIMITS, output_bytes=101))
    assert run.limit_hit is LimitHit.OUTPUT
    assert run.stdout == "é" * 50 + "\ufffd"


async def test_writing_a_big_file_stops_at_the_file_size_limit(data: Path) -> None:
    code = "with open('big.bin', 'wb') as f:\n    f.write(b'0' * 5 * 1024 * 1024)\n"
    run, took = await timed(code, data, replace(LIMITS, file_mb=1))
    assert run.limit_hit is LimitHit.FILE
    assert run.exit_code == -signal.SIGXFSZ
    assert run.outcome().startswith("stopped at the 1 MB file size limit")
    assert took < ENDS_WITHIN_S


async def test_no_key_or_setting_reaches_the_script(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "GEMINI_API_KEY": "gemini-secret-7f3a9c",
        "OPENAI_API_KEY": "sk-openai-secret-41d2e8",
        "MY_LAB_KEY": "lab-secret-95b0c1",
        "NEMO_TUI_CONFIG": "/somewhere/nemo-config-3e71.yaml",
        "OLLAMA_HOST": "http://127.0.0.1:65000",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    code = "import os\nprint(dict(os.environ))\nprint(os.environ.get('GEMINI_API_KEY'))\n"
    run = await run_script(code, data, LIMITS)
    assert run.ok, run.stderr
    for name, value in secrets.items():
        assert name not in run.stdout
        assert value not in run.stdout
    assert run.stdout.splitlines()[-1] == "None"
    assert "'OMP_NUM_THREADS': '1'" in run.stdout


async def test_kill_stops_the_script_promptly_as_cancelled(data: Path) -> None:
    fds = open_fds()
    run = ScriptRun.start("import time\ntime.sleep(60)\n", data, LIMITS)
    asyncio.get_running_loop().call_later(0.3, run.kill)
    started = time.perf_counter()
    result = await run.wait()
    assert time.perf_counter() - started < ENDS_WITHIN_S
    assert result.cancelled
    assert result.limit_hit is None and not result.ok
    assert result.outcome().startswith("stopped by you after")
    assert run.rss_mb() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(run.pid, os.WNOHANG)
    assert open_fds() == fds


async def test_rss_is_read_while_the_script_runs(data: Path) -> None:
    code = "import time\nheld = bytearray(64 * 1024 * 1024)\ntime.sleep(60)\n"
    run = ScriptRun.start(code, data, LIMITS)
    waiting = asyncio.create_task(run.wait())
    deadline = time.perf_counter() + ENDS_WITHIN_S
    rss = run.rss_mb()
    while (rss is None or rss < 64) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
        rss = run.rss_mb()
    assert rss is not None and rss >= 64
    run.kill()
    result = await waiting
    assert result.cancelled
    assert result.peak_rss_mb is not None and result.peak_rss_mb >= 64


async def test_cancelling_the_wait_kills_the_script_and_cleans_up(data: Path) -> None:
    fds = open_fds()
    run = ScriptRun.start("import time\ntime.sleep(60)\n", data, LIMITS)
    waiting = asyncio.create_task(run.wait())
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)
    assert open_fds() == fds


async def test_a_process_the_script_leaves_behind_is_killed(data: Path) -> None:
    code = "import subprocess\nchild = subprocess.Popen(['sleep', '60'])\nprint(child.pid)\n"
    run, took = await timed(code, data)
    assert run.ok, run.stderr
    grandchild = int(run.stdout)
    deadline = time.perf_counter() + ENDS_WITHIN_S
    while not ended(grandchild) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    assert ended(grandchild)
    assert took < ENDS_WITHIN_S


async def test_without_waitid_the_leftovers_are_killed_just_after(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on macOS before Python 3.13, which has no os.waitid.
    monkeypatch.setattr(runner, "_WAITID", False)
    code = "import subprocess\nchild = subprocess.Popen(['sleep', '60'])\nprint(child.pid)\n"
    run = await run_script(code, data, LIMITS)
    assert run.ok, run.stderr
    grandchild = int(run.stdout)
    deadline = time.perf_counter() + ENDS_WITHIN_S
    while not ended(grandchild) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    assert ended(grandchild)


async def test_the_peak_is_the_scripts_own_not_the_parents(data: Path) -> None:
    # A child's kernel-reported peak starts from its parent's peak; a big parent must not show.
    held = bytearray(400 * 1024 * 1024)  # zero-filled, so resident
    run = await run_script("print(1)\n", data, LIMITS)
    del held
    assert run.peak_rss_mb is not None and 0 < run.peak_rss_mb < 200


async def test_a_python_that_cannot_start_is_a_clear_error(data: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-python")
    with pytest.raises(NemoError) as raised:
        ScriptRun.start("print(1)\n", data, LIMITS, python=missing)
    assert missing in raised.value.message
    assert "analysis.python" in raised.value.fix
