"""Finished-query records for metrics and troubleshooting tests: one ordinary query, varied."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nemo_tui.core.reports.metrics import QueryRecord

ORDINARY = QueryRecord(
    model="phi3:mini",
    backend="ollama",
    local=True,
    cache_hit=True,
    truncated=False,
    server_truncated=False,
    fallbacks=0,
    failed=False,
    load_failed=False,
    first_token_s=0.5,
    total_s=2.0,
    load_s=None,
    tokens_out=100,
    tokens_per_s=20.0,
    at=0.0,
)
"""A local, cached, untruncated query that answered 100 tokens at 20 tok/s."""


def query_record(**changes: Any) -> QueryRecord:
    """The ordinary query with some fields changed."""
    return replace(ORDINARY, **changes)
