"""Per-query metrics kept between runs, so `nemo-tui stats` and the dashboard see recent usage.

Only numbers are kept (model, timings, counts, flags): never a prompt, an answer, a script, its
output or a key. Runs of analysis scripts are records too, marked `"kind": "analysis"`. The
file is JSON lines, one record each. A line that cannot be read (cut short by a crash, edited by
hand, of another version) is skipped, never fatal; a line cut short is ended before the next
record is added, so it cannot swallow it; and the file is trimmed to the newest records when it
grows past `MAX_HISTORY_BYTES`, so it is never read whole at start-up for long.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from collections import deque
from pathlib import Path

import msgspec

from nemo_tui.core.reports.metrics import AnalysisRecord, Metrics, QueryRecord

MAX_HISTORY_BYTES = 2 * 1024 * 1024
"""Past this size the file is cut back to the newest records the metrics keep (a few thousand
records fit; one is about 300 bytes)."""

_FIELDS = {f.name for f in dataclasses.fields(QueryRecord)}
_ANALYSIS_FIELDS = {f.name for f in dataclasses.fields(AnalysisRecord)}
_ANALYSIS_KIND = "analysis"
_log = logging.getLogger(__name__)


def load_history(path: Path, metrics: Metrics) -> int:
    """Feed the most recent records in `path` into `metrics`; unreadable lines are skipped.

    One warning is logged when lines were skipped. A file past `MAX_HISTORY_BYTES` is rewritten
    with just the lines read.

    Returns:
        How many records were loaded.
    """
    try:
        with path.open("rb") as lines:
            recent = deque(lines, maxlen=metrics.capacity)
            oversized = lines.tell() > MAX_HISTORY_BYTES
    except OSError:
        return 0
    loaded = skipped = 0
    for line in recent:
        record = _record(line)
        if record is None:
            skipped += 1
            continue
        if isinstance(record, AnalysisRecord):
            metrics.analyses.record(record)
        else:
            metrics.record(record)
        loaded += 1
    if skipped:
        _log.warning("%s: skipped %d unreadable line(s)", path, skipped)
    if oversized:
        _rewrite(path, [line if line.endswith(b"\n") else line + b"\n" for line in recent])
    return loaded


def append_history(path: Path, record: QueryRecord | AnalysisRecord) -> None:
    """Add one record; a read-only or full disk costs the history, never the answer."""
    fields = dataclasses.asdict(record)
    if isinstance(record, AnalysisRecord):
        fields["kind"] = _ANALYSIS_KIND
    line = json.dumps(fields).encode("utf-8") + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab+") as out:
            if out.tell() > 0:
                out.seek(-1, os.SEEK_END)
                if out.read(1) != b"\n":
                    line = b"\n" + line
            out.write(line)
    except OSError:
        return


def _record(line: bytes) -> QueryRecord | AnalysisRecord | None:
    """The record on one line, or None when it is not a readable record."""
    try:
        data = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    is_analysis = data.get("kind") == _ANALYSIS_KIND
    try:
        if is_analysis:
            fields = {k: v for k, v in data.items() if k in _ANALYSIS_FIELDS}
            return msgspec.convert(fields, AnalysisRecord)
        return msgspec.convert({k: v for k, v in data.items() if k in _FIELDS}, QueryRecord)
    except msgspec.ValidationError:
        return None


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace the file with `lines`, atomically; on failure it stays as it was."""
    temp_name: str | None = None
    try:
        handle, temp_name = tempfile.mkstemp(prefix=".history-", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            out.writelines(lines)
        os.replace(temp_name, path)
        temp_name = None
    except OSError:
        return
    finally:
        if temp_name is not None:
            Path(temp_name).unlink(missing_ok=True)
