"""The shared engine: one worker owns all model traffic; the CLI and the dashboard subscribe."""

from nemo_tui.engine.engine import CacheActionResult, Engine, QueryHandle
from nemo_tui.engine.pipeline import FirstTokenTimeout, StreamStalled
from nemo_tui.engine.planning import QueryPlan

__all__ = [
    "CacheActionResult",
    "Engine",
    "FirstTokenTimeout",
    "QueryHandle",
    "QueryPlan",
    "StreamStalled",
]
