"""`nemo-tui analyze`: a model writes a script for a data file; it runs only with `--run`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from nemo_tui.cli.context import CommandContext, data_file, known_model
from nemo_tui.cli.engine_commands import require_a_backend, run_with_engine, stream_query
from nemo_tui.cli.output import note
from nemo_tui.core.analysis.code_block import ExtractedScript, extract_script
from nemo_tui.core.analysis.prompt import ScriptRequest, failure_of
from nemo_tui.core.analysis.run import AnalysisRun
from nemo_tui.core.text.terminal_text import strip_terminal_controls
from nemo_tui.engine import Engine
from nemo_tui.errors import NemoError, UsageError
from nemo_tui.events import Done, Query


@dataclass
class _Outcome:
    """What the command ends with: the `analysis` JSON line and the exit status."""

    code: str | None = None
    problem: str = ""
    warnings: tuple[str, ...] = ()
    run: AnalysisRun | None = None
    first_run: AnalysisRun | None = None
    """The failed run before a repair round, when there was one."""

    def to_json(self) -> dict[str, object]:
        return {
            "event": "analysis",
            "code": self.code,
            "problem": self.problem or None,
            "warnings": list(self.warnings),
            "run": self.run.to_json() if self.run is not None else None,
            "repaired": self.first_run is not None,
            "first_run": self.first_run.to_json() if self.first_run is not None else None,
        }

    @property
    def exit_status(self) -> int:
        if self.code is None or self.problem:
            return 1
        return 0 if self.run is None or self.run.ok else 1


def analyze(args: argparse.Namespace) -> int:
    """`nemo-tui analyze QUESTION --data FILE`: ask for a script, show it, run it on `--run`."""
    if args.repair and not args.run:
        raise UsageError(
            "--repair needs --run", fix="add --run: a repair round follows a run that failed"
        )
    data = data_file(args.data)
    assert data is not None  # --data is required

    async def body(engine: Engine, ctx: CommandContext) -> int:
        require_a_backend(engine)
        if args.model is not None:
            known_model(args.model, engine.catalog)
        libraries = await engine.script_libraries()
        outcome = _Outcome()
        query = Query(
            args.query, model=args.model, data_file=data, analysis=ScriptRequest(libraries)
        )
        model, host, script = await _ask_for_script(engine, query, libraries, args.json)
        _take(outcome, script)
        if outcome.code is not None and not args.run and not args.json:
            note("not run: add --run to run it in a child process, under limits")
        if outcome.code is not None and args.run:
            outcome.run = await _run(engine, outcome.code, data, args.json, outcome)
            failed = outcome.run
            if args.repair and failed is not None and not failed.ok and not failed.cancelled:
                if not args.json:
                    note(f"asking {model} to repair the script (one round)")
                repair = ScriptRequest(libraries, failure_of(outcome.code, failed))
                query = Query(args.query, model=model, data_file=data, analysis=repair, host=host)
                _, _, script = await _ask_for_script(engine, query, libraries, args.json)
                outcome.first_run, outcome.run = failed, None
                _take(outcome, script)
                if outcome.code is not None and not outcome.problem:
                    outcome.run = await _run(
                        engine, outcome.code, data, args.json, outcome, repaired=True
                    )
        if args.json:
            print(json.dumps(outcome.to_json()), flush=True)
        return outcome.exit_status

    return run_with_engine(args, body)


async def _ask_for_script(
    engine: Engine, query: Query, libraries: tuple[str, ...], as_json: bool
) -> tuple[str | None, str | None, ExtractedScript]:
    """Stream the model's answer, then take the script out of it.

    Returns:
        The model that answered and its host (None when none did), and the script or why there
        is none.
    """
    final = await stream_query(engine, query, as_json=as_json)
    if not isinstance(final, Done):
        return None, None, ExtractedScript(None, "no answer from the model, so no script")
    script = extract_script(final.text, libraries)
    if not as_json:
        if script.code is None:
            note(f"no script to run: {script.problem}")
        else:
            lines = script.code.count("\n")
            note(f"script: {lines} line{'s' if lines != 1 else ''}, parses")
        for warning in script.warnings:
            note(f"warning: {warning}")
    # A repair goes back to the model that wrote the script, on the host that ran it.
    host = final.host if final.local else None
    return final.model, host, script


def _take(outcome: _Outcome, script: ExtractedScript) -> None:
    outcome.code, outcome.problem, outcome.warnings = script.code, script.problem, script.warnings


async def _run(
    engine: Engine,
    code: str,
    data: Path,
    as_json: bool,
    outcome: _Outcome,
    *,
    repaired: bool = False,
) -> AnalysisRun | None:
    """Run the script and show what it did; None (and the reason shown) when it cannot start."""
    try:
        if not as_json:
            note(f"running the script on {data.name} ({engine.analysis_limits().summary()})")
        run = await engine.run_analysis(code, data, repaired=repaired)
    except NemoError as exc:
        outcome.problem = exc.one_line()
        if not as_json:
            note(f"{exc.title}: {exc.one_line()}")
        return None
    if not as_json:
        # The script's own output goes where a script's would: stdout and stderr.
        if run.stdout:
            sys.stdout.write(_ended(strip_terminal_controls(run.stdout)))
            sys.stdout.flush()
        if run.stderr:
            sys.stderr.write(_ended(strip_terminal_controls(run.stderr)))
        note(f"script: {run.outcome()}")
    return run


def _ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
