"""Analysis mode end to end with the real SmolLM2 model over the demo cohort, as a user runs it:
`nemo-tui demo-data`, then `nemo-tui analyze --run`. Whatever code the small model writes, the
path from question to shown result must hold: a script found and run with its outcome, or the
reason there is none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli, cli

__all__ = ["cli"]  # fixture

EMBEDDED_ONLY = "backends:\n  ollama:\n    enabled: false\n  gemini:\n    enabled: false\n"


@pytest.mark.integration
def test_the_small_model_writes_a_script_for_the_demo_cohort_and_it_runs_under_limits(
    cli: Cli, smollm2_path: Path
) -> None:
    config = cli.config(EMBEDDED_ONLY)
    cohort = cli.home / "cohort.csv"
    made = cli.run("demo-data", "--patients", "300", "-o", str(cohort))
    assert made.returncode == 0, made.stderr
    result = cli.run(
        "analyze",
        "What is the average age of the patients?",
        "--data",
        str(cohort),
        "--model",
        "smollm2:135m",
        "--run",
        "--json",
        "--config",
        config,
        # Up to 1,024 tokens of a script on two shared cores: a busy machine can take minutes.
        timeout_s=300,
    )
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[-2:] == ["done", "analysis"], result.stderr
    done, analysis = events[-2], events[-1]
    assert done["model"] == "smollm2:135m" and done["backend"] == "embedded"
    prompt = next(e for e in events if e["event"] == "promptoptimized")
    assert prompt["model"] == "smollm2:135m"
    if analysis["code"] is None:
        # No usable script: the reason is given and nothing ran.
        assert analysis["problem"] and analysis["run"] is None
        assert result.returncode == 1
        return
    run = analysis["run"]
    assert run is not None, analysis["problem"]
    assert isinstance(run["exit_code"], int) and run["wall_s"] >= 0
    assert run["limit_hit"] in (None, "memory", "cpu", "wall", "output", "file")
    assert run["cancelled"] is False
    assert result.returncode == (0 if run["exit_code"] == 0 and run["limit_hit"] is None else 1)
