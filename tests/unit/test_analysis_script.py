"""Taking the script out of a model's answer, and the prompts that ask for one."""

from __future__ import annotations

import pytest

from nemo_tui.core.analysis.code_block import extract_script
from nemo_tui.core.analysis.prompt import (
    ERROR_CHARS_SENT,
    ScriptFailure,
    ScriptRequest,
    failure_of,
    script_prompt,
)
from nemo_tui.core.analysis.run import AnalysisRun, LimitHit, RunLimits
from nemo_tui.core.reports.metrics import AnalysisRecord, Metrics

LIMITS = RunLimits(memory_mb=1228.8, cpu_s=60, wall_s=120, output_bytes=2**20, file_mb=512)
GOOD = "import sys\nprint(open(sys.argv[1]).read().count('\\n'))\n"


def test_the_python_block_is_taken_from_prose_around_it() -> None:
    answer = f"Sure. First install nothing.\n\n```python\n{GOOD}```\n\nThis prints the rows."
    script = extract_script(answer)
    assert script.ok and script.code == GOOD
    assert script.warnings == ()


def test_a_python_block_wins_over_a_shell_block_and_the_longest_python_block_wins() -> None:
    answer = (
        f"```bash\npython script.py data.csv\n```\n```python\nprint(1)\n```\n```python\n{GOOD}```\n"
    )
    assert extract_script(answer).code == GOOD


@pytest.mark.parametrize("fence", ["```", "~~~", "````"])
def test_unlabelled_and_other_fences_count(fence: str) -> None:
    assert extract_script(f"{fence}\n{GOOD}{fence}\n").code == GOOD


def test_an_answer_that_is_only_code_is_taken_whole() -> None:
    assert extract_script(GOOD).code == GOOD


@pytest.mark.parametrize("answer", ["", "The mean age is 52.", "hello"])
def test_prose_without_code_is_no_script(answer: str) -> None:
    script = extract_script(answer)
    assert not script.ok
    assert script.problem == "the answer has no code block"


def test_only_non_python_blocks_say_so() -> None:
    script = extract_script("```bash\npip install pandas\n```")
    assert script.problem == "the answer has code blocks (bash) but none in Python"


def test_code_that_does_not_parse_names_the_line() -> None:
    script = extract_script("```python\nimport sys\ndef f(:\n    pass\n```")
    assert not script.ok
    assert script.problem.startswith("the code does not parse: line 2:")


def test_a_block_cut_off_by_the_answer_limit_is_named() -> None:
    cut = extract_script("```python\nimport sys\nfor row in open(sys.argv[1]):\n")
    assert cut.problem.endswith("(the code block is not closed: the answer was cut off)")
    whole = extract_script(f"```python\n{GOOD}")
    assert whole.ok
    assert "the code block is not closed: the answer may have been cut off" in whole.warnings


def test_imports_that_will_fail_and_a_hard_coded_path_are_warned_about() -> None:
    answer = "```python\nimport pandas as pd\nimport seaborn\nprint(pd.read_csv('data.csv'))\n```"
    script = extract_script(answer, libraries=("pandas",))
    assert script.ok
    assert script.warnings == (
        "it imports seaborn, which the Python that runs it cannot import",
        "it never reads sys.argv, so it may not find the data file",
    )


def test_the_prompt_puts_rules_first_and_the_question_last() -> None:
    prompt = script_prompt("Mean age by sex?", "age: 18..90", ScriptRequest(("pandas", "numpy")))
    paragraphs = prompt.split("\n\n")
    assert "sys.argv[1]" in paragraphs[0]
    assert "only the Python standard library and pandas, numpy" in paragraphs[0]
    assert paragraphs[-1] == (
        "Question: Mean age by sex?\nReply with the script in one ```python code block."
    )
    assert "age: 18..90" in prompt


def test_without_libraries_the_prompt_names_the_standard_library_modules_to_use() -> None:
    prompt = script_prompt("How many rows?", None, ScriptRequest(()))
    assert "only the Python standard library (csv, statistics" in prompt
    assert "summarized" not in prompt


def test_a_repair_prompt_carries_the_script_and_its_error() -> None:
    failure = ScriptFailure("print(x)\n", "NameError: name 'x' is not defined\n(exit 1 in 0.1 s)")
    prompt = script_prompt("How many rows?", None, ScriptRequest((), failure))
    assert "```python\nprint(x)\n```" in prompt
    assert "NameError: name 'x' is not defined" in prompt
    assert prompt.endswith("Reply with the corrected complete script in one ```python code block.")


def test_a_failure_sends_the_end_of_a_long_error_and_how_the_run_ended() -> None:
    stderr = "x" * 10_000 + "\nMemoryError"
    run = AnalysisRun(1, "", stderr, 2.5, 300.0, LimitHit.MEMORY, LIMITS)
    failure = failure_of("print(1)\n", run)
    assert failure.code == "print(1)\n"
    assert failure.error.startswith("...\n")
    assert failure.error.endswith(
        "MemoryError\n(stopped at the 1.2 GB memory cap after 2.5 s, peak 300 MB)"
    )
    assert len(failure.error) < ERROR_CHARS_SENT + 200


def test_run_outcomes_read_as_what_happened() -> None:
    def run(**kwargs: object) -> AnalysisRun:
        values: dict[str, object] = dict(
            exit_code=0, stdout="", stderr="", wall_s=0.4, peak_rss_mb=35.0, limit_hit=None
        )
        values.update(kwargs)
        return AnalysisRun(limits=LIMITS, **values)  # type: ignore[arg-type]

    assert run().outcome() == "exit 0 in 400 ms, peak 35 MB"
    assert run(exit_code=1).outcome() == "exit 1 in 400 ms, peak 35 MB"
    assert run(exit_code=-11).outcome() == "killed by signal 11 after 400 ms, peak 35 MB"
    assert run(exit_code=-9, cancelled=True).outcome().startswith("stopped by you after 400 ms")
    assert (
        run(exit_code=-24, limit_hit=LimitHit.CPU)
        .outcome()
        .startswith("stopped at the 60 s CPU time limit")
    )
    assert (
        run(limit_hit=LimitHit.OUTPUT, exit_code=-9)
        .outcome()
        .startswith("stopped at the 1 MB output cap")
    )
    assert run(peak_rss_mb=None).outcome().endswith("peak n/a")
    assert run(exit_code=0, limit_hit=LimitHit.WALL).ok is False


def test_analysis_counts_in_stats() -> None:
    metrics = Metrics()
    metrics.analyses.record(AnalysisRecord(False, False, 120.04, 1.0))
    metrics.analyses.record(AnalysisRecord(True, True, 80.0, 2.0))
    metrics.analyses.record(AnalysisRecord(True, False, None, 3.0))
    assert metrics.to_json()["analyses"] == {
        "run": 3,
        "failed": 1,
        "repaired": 1,
        "peak_rss_mb": 120.0,
    }
