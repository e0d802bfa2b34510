"""The metrics history file: bad lines are skipped, a cut line does not swallow the next record,
and the file does not grow without end."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from nemo_tui.core.reports.metrics import Metrics, QueryRecord
from nemo_tui.engine.history import MAX_HISTORY_BYTES, append_history, load_history
from tests.fakes.query_records import query_record


class Recording(Metrics):
    """Metrics that also remember the records they were fed, in order."""

    def __init__(self, capacity: int = 1000) -> None:
        super().__init__(capacity)
        self.fed: list[QueryRecord] = []

    def record(self, record: QueryRecord) -> None:
        self.fed.append(record)
        super().record(record)


def line(**changes: object) -> bytes:
    return json.dumps(dataclasses.asdict(query_record(**changes))).encode() + b"\n"


def test_bad_lines_are_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(
        line(model="first")
        + b"null\n"
        + b"[1, 2]\n"
        + b"\xff\xfe not utf-8\n"
        + json.dumps({**dataclasses.asdict(query_record()), "total_s": "slow"}).encode()
        + b"\n"
        + line(model="last")
    )
    metrics = Recording()

    with caplog.at_level(logging.WARNING):
        loaded = load_history(path, metrics)

    assert loaded == 2
    assert [r.model for r in metrics.fed] == ["first", "last"]
    assert len(caplog.records) == 1 and "skipped 4" in caplog.records[0].getMessage()
    assert metrics.to_json()["queries"] == 2


def test_a_line_cut_short_does_not_swallow_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(line(model="whole") + line(model="cut")[:40])

    append_history(path, query_record(model="next"))
    metrics = Recording()
    loaded = load_history(path, metrics)

    assert loaded == 2
    assert [r.model for r in metrics.fed] == ["whole", "next"]


def test_an_oversized_file_is_cut_back_to_the_newest_records(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    one = line(model="old")
    count = MAX_HISTORY_BYTES // len(one) + 10
    path.write_bytes(one * count + line(model="newest"))
    metrics = Recording(capacity=100)

    load_history(path, metrics)

    assert path.stat().st_size < MAX_HISTORY_BYTES // 10
    reread = Recording(capacity=100)
    assert load_history(path, reread) == 100
    assert reread.fed[-1].model == "newest"
