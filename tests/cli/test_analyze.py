"""`nemo-tui analyze` as a user runs it: a fake Ollama on loopback writes known scripts; the
script runs in a real child process only with --run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import Cli, assert_one_line_error, cli, ollama, with_model_server
from tests.fakes import FakeOllama

__all__ = ["cli", "ollama"]  # fixtures

QUESTION = "How many patients are older than 60?"


def reply(code: str) -> list[str]:
    text = f"This script answers it:\n\n```python\n{code}```\n"
    return [text[i : i + 9] for i in range(0, len(text), 9)]


def counting_script(marker: Path) -> str:
    """Counts rows over 60 and leaves a file behind, so a test can tell whether it ran."""
    return (
        "import csv, sys\n"
        f"open({str(marker)!r}, 'w').close()\n"
        "with open(sys.argv[1], newline='') as f:\n"
        "    older = sum(1 for row in csv.DictReader(f) if int(row['age']) > 60)\n"
        "print('older than 60:', older)\n"
    )


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    path.write_text("age,sex\n" + "".join(f"{age},F\n" for age in (30, 45, 61, 70, 82)))
    return path


@pytest.mark.integration
def test_analyze_shows_the_script_and_does_not_run_it_without_run(
    cli: Cli, ollama: FakeOllama, data: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    ollama.answer = reply(counting_script(marker))
    result = with_model_server(cli, "analyze", QUESTION, "--data", str(data))
    assert result.returncode == 0, result.stderr
    assert "```python\nimport csv, sys\n" in result.stdout
    assert "script: 5 lines, parses" in result.stderr
    assert "not run: add --run" in result.stderr
    assert not marker.exists()


@pytest.mark.integration
def test_analyze_run_prints_the_scripts_output_and_how_it_ended(
    cli: Cli, ollama: FakeOllama, data: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    ollama.answer = reply(counting_script(marker))
    result = with_model_server(cli, "analyze", QUESTION, "--data", str(data), "--run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("older than 60: 3\n")
    assert "running the script on patients.csv (memory " in result.stderr
    assert "script: exit 0 in " in result.stderr
    assert marker.exists()


@pytest.mark.integration
def test_analyze_json_ends_with_the_analysis_and_its_run(
    cli: Cli, ollama: FakeOllama, data: Path, tmp_path: Path
) -> None:
    code = counting_script(tmp_path / "ran")
    ollama.answer = reply(code)
    result = with_model_server(cli, "analyze", QUESTION, "--data", str(data), "--run", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events][-2:] == ["done", "analysis"]
    analysis = events[-1]
    assert analysis["code"] == code
    assert analysis["problem"] is None and analysis["repaired"] is False
    run = analysis["run"]
    assert set(run) == {
        "exit_code",
        "stdout",
        "stderr",
        "wall_s",
        "peak_rss_mb",
        "limit_hit",
        "cancelled",
    }
    assert run["exit_code"] == 0 and run["stdout"] == "older than 60: 3\n"
    assert run["limit_hit"] is None and run["peak_rss_mb"] > 0


@pytest.mark.integration
def test_analyze_repairs_a_failed_script_once(
    cli: Cli, ollama: FakeOllama, data: Path, tmp_path: Path
) -> None:
    broken = (
        "import csv, sys\n"
        "rows = list(csv.DictReader(open(sys.argv[1])))\n"
        "print(rows[0]['weight'])\n"
    )
    fixed = counting_script(tmp_path / "ran")
    ollama.next_answers = [reply(broken), reply(fixed)]
    result = with_model_server(
        cli, "analyze", QUESTION, "--data", str(data), "--run", "--repair", "--json"
    )
    assert result.returncode == 0, result.stderr
    analysis = json.loads(result.stdout.splitlines()[-1])
    assert analysis["repaired"] is True
    assert analysis["first_run"]["exit_code"] == 1
    assert "KeyError: 'weight'" in analysis["first_run"]["stderr"]
    assert analysis["code"] == fixed and analysis["run"]["exit_code"] == 0
    chats = ollama.requests_to("/api/chat")
    repair_prompt = chats[-1].body["messages"][-1]["content"]
    assert "print(rows[0]['weight'])" in repair_prompt
    assert "KeyError: 'weight'" in repair_prompt


@pytest.mark.integration
def test_a_reply_without_code_is_shown_as_such(cli: Cli, ollama: FakeOllama, data: Path) -> None:
    ollama.answer = ["About ", "three ", "patients."]
    result = with_model_server(cli, "analyze", QUESTION, "--data", str(data), "--run")
    assert result.returncode == 1
    assert result.stdout == "About three patients.\n"
    assert "no script to run: the answer has no code block" in result.stderr
    assert "running the script" not in result.stderr


def test_repair_without_run_is_a_usage_error(cli: Cli, data: Path) -> None:
    result = cli.run("analyze", QUESTION, "--data", str(data), "--repair")
    line = assert_one_line_error(result, 2)
    assert "--repair needs --run" in line


def test_analyze_needs_an_existing_data_file(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("analyze", QUESTION, "--data", str(tmp_path / "missing.csv"))
    line = assert_one_line_error(result, 2)
    assert "no such data file" in line
