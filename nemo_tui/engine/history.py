"""Per-query metrics kept between runs, so `nemo-tui stats` and the dashboard see recent usage.

Only numbers are kept (model, timings, counts, flags): never a prompt, an answer, a script, its
output or a key. Runs of analysis scripts are records too, marked `"kind": "analysis"`, and so
are the models nemo-tui unloaded, marked `"kind": "eviction"`. The file is JSON lines, one
record each. A line that cannot be read (cut short by a crash, edited by hand, of another
version) is skipped, never fatal; a line cut short is ended before the next record is added, so
it cannot swallow it; and the file is trimmed to the newest records when it grows past
`MAX_HISTORY_BYTES`, so it is never read whole at start-up for long.
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

from nemo_tui.core.reports.metrics import AnalysisRecord, EvictionRecord, Metrics, QueryRecord

MAX_HISTORY_BYTES = 2 * 1024 * 1024
"""Past this size the file is cut back to the newest records the metrics keep (a few thousand
records fit; one is about 300 bytes)."""

HistoryRecord = QueryRecord | AnalysisRecord | EvictionRecord
"""One line of the history: a query (the lines without a `kind`), a script run or an eviction."""

_KINDS: dict[str, type[AnalysisRecord] | type[EvictionRecord]] = {
    "analysis": AnalysisRecord,
    "eviction": EvictionRecord,
}
_KIND_OF: dict[type[HistoryRecord], str] = {
    record_type: kind for kind, record_type in _KINDS.items()
}
_FIELDS = {
    record_type: {f.name for f in dataclasses.fields(record_type)}
    for record_type in (QueryRecord, AnalysisRecord, EvictionRecord)
}
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
        record = parse_record(line)
        if record is None:
            skipped += 1
            continue
        add_record(metrics, record)
        loaded += 1
    if skipped:
        _log.warning("%s: skipped %d unreadable line(s)", path, skipped)
    if oversized:
        _rewrite(path, [line if line.endswith(b"\n") else line + b"\n" for line in recent])
    return loaded


def add_record(metrics: Metrics, record: HistoryRecord) -> None:
    """Count one record of the history in the metrics it belongs to."""
    if isinstance(record, AnalysisRecord):
        metrics.analyses.record(record)
    elif isinstance(record, EvictionRecord):
        metrics.evictions.record(record)
    else:
        metrics.record(record)


def append_history(path: Path, record: HistoryRecord) -> None:
    """Add one record; a read-only or full disk costs the history, never the answer."""
    fields = dataclasses.asdict(record)
    kind = _KIND_OF.get(type(record))
    if kind is not None:
        fields["kind"] = kind
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


def parse_record(line: bytes) -> HistoryRecord | None:
    """The record on one line of the history, or None when it is not a readable record.

    A line of a kind this version does not know (written by a newer one) is not readable.
    """
    try:
        data = json.loads(line.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    record_type: type[HistoryRecord]
    if kind is None:
        record_type = QueryRecord
    elif isinstance(kind, str) and kind in _KINDS:
        record_type = _KINDS[kind]
    else:
        return None
    known = _FIELDS[record_type]
    try:
        return msgspec.convert({k: v for k, v in data.items() if k in known}, record_type)
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
