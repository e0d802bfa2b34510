"""Analysis mode through the engine: a scripted model writes known scripts, the engine runs them
in a real child process under its limits, and each ends as a user would need to see it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nemo_tui.config import Config, GeminiBackend
from nemo_tui.core.analysis.code_block import extract_script
from nemo_tui.core.analysis.prompt import ScriptRequest, failure_of
from nemo_tui.core.analysis.run import AnalysisRun, LimitHit
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.engine import Engine
from nemo_tui.engine.planning import SCRIPT_ANSWER_TOKENS
from nemo_tui.errors import NemoError
from nemo_tui.events import Done, Query, Recommended
from tests.engine.test_engine import ChangingSampler, collect, config_with, started
from tests.fakes import ScriptedBackend

KEY_NAMES = ("GEMINI_API_KEY", "OPENAI_API_KEY", "LAB_TOKEN_FOR_TEST")
KEY_VALUE = "sk-analysis-test-0123456789abcdef"


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.csv"
    rows = ["age,sex,hba1c_pct"] + [
        f"{40 + i},{'F' if i % 2 else 'M'},{5 + i / 10}" for i in range(20)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def reply(code: str) -> list[str]:
    """A model's answer: a sentence, the script in a fence, a closing sentence, as tokens."""
    text = f"Here is a script that answers it.\n\n```python\n{code}```\n\nRun it with the file."
    return [text[i : i + 7] for i in range(0, len(text), 7)]


async def script_from(engine: Engine, backend: ScriptedBackend, code: str, data: Path) -> str:
    """Ask for a script the backend answers with `code`; return the code the engine got."""
    backend.script.tokens = reply(code)
    libraries = await engine.script_libraries()
    events = await collect(
        engine, Query("mean age?", data_file=data, analysis=ScriptRequest(libraries))
    )
    done = events[-1]
    assert isinstance(done, Done)
    script = extract_script(done.text, libraries)
    assert script.code is not None, script.problem
    return script.code


async def run_reply(
    code: str, data: Path, *, config: Config | None = None
) -> tuple[AnalysisRun, Engine]:
    backend = ScriptedBackend()
    engine = await started([backend], config=config)
    try:
        script = await script_from(engine, backend, code, data)
        run = await asyncio.wait_for(engine.run_analysis(script, data), 60)
    finally:
        await engine.aclose()
    return run, engine


async def test_the_prompt_asks_for_one_script_reading_argv_with_the_data_summary(
    cohort: Path,
) -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        libraries = await engine.script_libraries()
        query = Query(
            "What is the mean HbA1c by sex?", data_file=cohort, analysis=ScriptRequest(libraries)
        )
        events = await collect(engine, query)
    finally:
        await engine.aclose()
    prompt = backend.prompts[-1]
    assert prompt.startswith("Write one self-contained Python 3 script")
    assert "sys.argv[1]" in prompt
    assert "hba1c_pct" in prompt  # the column summary
    assert prompt.rstrip().endswith("Reply with the script in one ```python code block.")
    assert "What is the mean HbA1c by sex?" in prompt
    for library in libraries:
        assert library in prompt
    recommended = next(e for e in events if isinstance(e, Recommended))
    # Writing code that must run is at least a medium task.
    assert recommended.complexity.level is not Complexity.LOW


async def test_a_script_gets_room_for_a_whole_script_in_the_answer(cohort: Path) -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        plan = engine.plan_query(Query("count rows", data_file=cohort, analysis=ScriptRequest(())))
    finally:
        await engine.aclose()
    assert plan.budget_tokens == plan.recommendation.num_ctx - SCRIPT_ANSWER_TOKENS


async def test_good_code_runs_and_prints_its_result(cohort: Path) -> None:
    code = (
        "import csv, statistics, sys\n"
        "with open(sys.argv[1], newline='') as f:\n"
        "    ages = [int(r['age']) for r in csv.DictReader(f)]\n"
        "print('mean age:', statistics.mean(ages))\n"
    )
    run, engine = await run_reply(code, cohort)
    assert run.ok and run.exit_code == 0
    assert run.stdout == "mean age: 49.5\n"
    assert run.peak_rss_mb is not None and run.peak_rss_mb > 0
    assert run.outcome().startswith("exit 0 in ")
    assert engine.stats()["metrics"]["analyses"] == {  # type: ignore[index]
        "run": 1,
        "failed": 0,
        "repaired": 0,
        "peak_rss_mb": round(run.peak_rss_mb, 1),
    }


async def test_code_that_raises_shows_its_traceback_and_counts_as_failed(cohort: Path) -> None:
    run, engine = await run_reply("import sys\nrows = open(sys.argv[1]).read()\n1 / 0\n", cohort)
    assert run.exit_code == 1 and not run.ok and run.limit_hit is None
    assert "ZeroDivisionError" in run.stderr
    assert "line 3" in run.stderr
    assert engine.metrics.analyses.failed == 1


async def test_code_that_loops_forever_stops_at_the_cpu_limit(cohort: Path) -> None:
    config = config_with(analysis={"cpu_time_s": 1.0, "wall_time_s": 30.0})
    run, _ = await run_reply("import sys\nwhile True:\n    pass\n", cohort, config=config)
    assert run.limit_hit is LimitHit.CPU
    assert "stopped at the 1 s CPU time limit" in run.outcome()


async def test_code_that_sleeps_forever_stops_at_the_wall_clock_timeout(cohort: Path) -> None:
    config = config_with(analysis={"wall_time_s": 1.0})
    run, _ = await run_reply("import sys, time\ntime.sleep(600)\n", cohort, config=config)
    assert run.limit_hit is LimitHit.WALL
    assert run.wall_s < 30


async def test_code_that_allocates_past_the_cap_stops_at_the_memory_cap(cohort: Path) -> None:
    config = config_with(analysis={"max_memory_mb": 300})
    run, _ = await run_reply(
        "import sys\nblocks = [bytearray(2**20) for _ in range(4096)]\nprint(len(blocks))\n",
        cohort,
        config=config,
    )
    assert run.limit_hit is LimitHit.MEMORY
    assert run.outcome().startswith("stopped at the 300 MB memory cap")
    assert run.stdout == ""


async def test_code_that_prints_100_mb_stops_at_the_output_cap(cohort: Path) -> None:
    config = config_with(analysis={"output_limit_kb": 64})
    run, _ = await run_reply(
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)\n",
        cohort,
        config=config,
    )
    assert run.limit_hit is LimitHit.OUTPUT
    assert 0 < len(run.stdout) + len(run.stderr) <= 64 * 1024


async def test_no_key_is_visible_to_the_script(
    cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in KEY_NAMES:
        monkeypatch.setenv(name, KEY_VALUE)
    monkeypatch.setenv("NEMO_TUI_CONFIG", "/somewhere/config.yaml")
    config = config_with(backends={"gemini": GeminiBackend(api_key_env="LAB_TOKEN_FOR_TEST")})
    run, _ = await run_reply(
        "import os, sys\nfor k, v in sorted(os.environ.items()):\n    print(k, v)\n",
        cohort,
        config=config,
    )
    assert run.ok
    assert KEY_VALUE not in run.stdout
    for name in (*KEY_NAMES, "NEMO_TUI_CONFIG"):
        assert name not in run.stdout
    assert "PATH " in run.stdout  # the environment is stripped, not empty


async def test_stop_ends_a_running_script_as_stopped_by_the_user(cohort: Path) -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        code = await script_from(engine, backend, "import sys, time\ntime.sleep(600)\n", cohort)
        running = asyncio.create_task(engine.run_analysis(code, cohort))
        while engine.analysis_rss_mb() is None:
            assert not running.done()
            await asyncio.sleep(0.02)
        assert engine.stop_analysis() is True
        run = await asyncio.wait_for(running, 30)
        assert engine.analysis_rss_mb() is None
        assert engine.stop_analysis() is False
    finally:
        await engine.aclose()
    assert run.cancelled and not run.ok
    assert run.outcome().startswith("stopped by you after")


async def test_one_script_at_a_time(cohort: Path) -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        code = await script_from(engine, backend, "import sys, time\ntime.sleep(600)\n", cohort)
        running = asyncio.create_task(engine.run_analysis(code, cohort))
        while engine.analysis_rss_mb() is None:
            await asyncio.sleep(0.02)
        with pytest.raises(NemoError, match="already running"):
            await engine.run_analysis(code, cohort)
        engine.stop_analysis()
        await asyncio.wait_for(running, 30)
    finally:
        await engine.aclose()


async def test_a_repair_round_sends_the_code_and_the_traceback_back(cohort: Path) -> None:
    backend = ScriptedBackend()
    engine = await started([backend])
    try:
        broken = "import sys\nprint(undefined_name)\n"
        code = await script_from(engine, backend, broken, cohort)
        first = await engine.run_analysis(code, cohort)
        assert first.exit_code == 1
        fixed_code = "import sys\nprint('rows file:', sys.argv[1].endswith('cohort.csv'))\n"
        backend.script.tokens = reply(fixed_code)
        repair = ScriptRequest((), failure_of(code, first))
        events = await collect(engine, Query("mean age?", data_file=cohort, analysis=repair))
        done = events[-1]
        assert isinstance(done, Done)
        fixed = extract_script(done.text)
        assert fixed.code == fixed_code
        second = await engine.run_analysis(fixed.code, cohort, repaired=True)
    finally:
        await engine.aclose()
    prompt = backend.prompts[-1]
    assert "print(undefined_name)" in prompt
    assert "NameError" in prompt
    assert "Reply with the corrected complete script" in prompt
    assert second.ok and second.stdout == "rows file: True\n"
    counts = engine.metrics.analyses
    assert (counts.run, counts.failed, counts.repaired) == (2, 1, 1)
    assert counts.peak_rss_mb == max(first.peak_rss_mb or 0, second.peak_rss_mb or 0)


async def test_the_memory_cap_is_what_is_free_under_the_cache_limit() -> None:
    sampler = ChangingSampler(total_gb=16, available_gb=12)
    engine = await started([ScriptedBackend()], sampler=sampler)
    try:
        limits = engine.analysis_limits()
        # 80% of 16 GB is 12.8 GB; 4 GB are used: 8.8 GB may still be taken.
        assert limits.memory_mb == pytest.approx(16 * 1024 * 0.8 - 4 * 1024)
        sampler.set_available(3.3)
        with pytest.raises(NemoError, match="is free under the 80% cache limit") as refused:
            engine.analysis_limits()
        assert "unload a model" in (refused.value.fix or "")
    finally:
        await engine.aclose()


async def test_the_cap_never_exceeds_the_configured_maximum() -> None:
    config = config_with(analysis={"max_memory_mb": 1024})
    engine = await started([ScriptedBackend()], config=config)
    try:
        assert engine.analysis_limits().memory_mb == 1024
    finally:
        await engine.aclose()


async def test_script_runs_count_in_the_history_kept_between_runs(
    cohort: Path, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    backend = ScriptedBackend()
    engine = await started([backend], history=history)
    try:
        code = await script_from(engine, backend, "import sys\nraise SystemExit(3)\n", cohort)
        failed = await engine.run_analysis(code, cohort)
        ok = await engine.run_analysis("import sys\nprint(sys.argv[1])\n", cohort, repaired=True)
    finally:
        await engine.aclose()
    assert failed.exit_code == 3 and ok.ok
    text = history.read_text(encoding="utf-8")
    assert "raise SystemExit" not in text and str(cohort) not in text  # numbers only
    later = await started([ScriptedBackend()], history=history)
    await later.aclose()
    counts = later.metrics.analyses
    assert (counts.run, counts.failed, counts.repaired) == (2, 1, 1)
    assert later.metrics.queries == 1  # the query that wrote the script, read back as a query
