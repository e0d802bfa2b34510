"""Per-query metrics kept between runs, so `nemo-tui stats` and the dashboard see recent usage.

Only numbers are kept (model, timings, counts, flags): never a prompt, an answer or a key.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from pathlib import Path

from nemo_tui.core.metrics import Metrics, QueryRecord

_FIELDS = {f.name for f in dataclasses.fields(QueryRecord)}


def load_history(path: Path, metrics: Metrics) -> int:
    """Feed the most recent records in `path` into `metrics`; unreadable lines are skipped.

    Returns:
        How many records were loaded.
    """
    try:
        with path.open(encoding="utf-8") as lines:
            recent = deque(lines, maxlen=metrics.capacity)
    except OSError:
        return 0
    loaded = 0
    for line in recent:
        try:
            data = json.loads(line)
            record = QueryRecord(**{k: v for k, v in data.items() if k in _FIELDS})
        except (ValueError, TypeError):
            continue
        metrics.record(record)
        loaded += 1
    return loaded


def append_history(path: Path, record: QueryRecord) -> None:
    """Add one record; a read-only or full disk costs the history, never the answer."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(dataclasses.asdict(record)) + "\n")
    except OSError:
        return
