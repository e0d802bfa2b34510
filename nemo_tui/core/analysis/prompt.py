"""The prompt that asks a model for an analysis script, and the one that asks it to repair one.

The model gets one job: a self-contained Python script that reads the data file from
`sys.argv[1]`, imports only what is importable where it will run, and prints its results. The
optimizer keeps the first paragraph (the rules) and the last (the question) whole and may cut
the data summary between them, so the rules come first and the question last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nemo_tui.core.analysis.run import AnalysisRun

ERROR_CHARS_SENT = 3000
"""How much of a failed run's error output goes back to the model: the end of a traceback says
what went wrong, and a long one would crowd the data summary out of a small context."""


@dataclass(frozen=True)
class ScriptFailure:
    """A script that failed, and how, for a repair round.

    Attributes:
        code: The script as it ran.
        error: What went wrong: the end of its error output and how the run ended.
    """

    code: str
    error: str


@dataclass(frozen=True)
class ScriptRequest:
    """Ask for an analysis script rather than a prose answer.

    Attributes:
        libraries: Libraries besides the standard library that the script may import (those
            importable where it will run).
        repair: A failed script to correct, for the one repair round; None for a first script.
    """

    libraries: tuple[str, ...]
    repair: ScriptFailure | None = None


def failure_of(code: str, run: AnalysisRun) -> ScriptFailure:
    """What a repair round tells the model about a failed run."""
    error = run.stderr.strip()
    if len(error) > ERROR_CHARS_SENT:
        error = "...\n" + error[-ERROR_CHARS_SENT:]
    ending = run.outcome()
    return ScriptFailure(code, f"{error}\n({ending})" if error else f"({ending})")


def allowed_imports(libraries: Sequence[str]) -> str:
    """The libraries a script may use, as the prompt names them."""
    if not libraries:
        return "only the Python standard library (csv, statistics, math, datetime, collections)"
    return "only the Python standard library and " + ", ".join(libraries)


def script_prompt(question: str, data_summary: str | None, request: ScriptRequest) -> str:
    """The whole prompt for a script (or its repair), before it is fitted to the model's budget.

    Args:
        question: What the user wants to know about the data.
        data_summary: The attached file's summary (columns, types, ranges, samples), if any.
        request: The libraries the script may use, and the failed script in a repair round.

    Returns:
        Rules first, then the failed script and its error in a repair round, then the data
        summary, then the question with the reply format.
    """
    rules = (
        "Write one self-contained Python 3 script that answers the question at the end about a"
        " data file. The script reads the file from the path given as its first command-line"
        " argument (sys.argv[1]); never write the path into the script. Use"
        f" {allowed_imports(request.libraries)}; do not install anything, use the network, plot"
        " or write files. Print the results with clear labels. Handle missing values."
    )
    parts = [rules]
    repair = request.repair
    if repair is not None:
        parts.append(
            f"This script was written for the question and failed:\n\n```python\n"
            f"{repair.code.rstrip()}\n```\n\nIt failed with:\n\n```\n{repair.error}\n```"
        )
    if data_summary:
        parts.append(
            f"The data file, summarized (the full file is not included):\n\n{data_summary}"
        )
    reply = (
        "Reply with the corrected complete script"
        if repair is not None
        else "Reply with the script"
    )
    parts.append(f"Question: {question}\n{reply} in one ```python code block.")
    return "\n\n".join(parts)
