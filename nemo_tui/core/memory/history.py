"""The memory-use history a plot draws: recent samples, and the steps they make on the plot."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

HISTORY_S = 600.0
"""How far back the plot reaches (ten minutes)."""
STEP_S = HISTORY_S / 60
"""The plot's time resolution: it moves on one step at a time, not with every gauge tick."""


@dataclass
class History:
    """What the plot draws: the samples, oldest first, and the two configured shares."""

    pressure_threshold: float
    """The share of memory in use that marks elevated pressure."""
    cache_limit: float
    """The share of memory the model cache keeps usage under."""
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    """(time stamp, percent of memory used) per gauge sample."""

    def steps(self) -> tuple[tuple[float, float], ...]:
        """What the plot draws: per `STEP_S` step that has samples, oldest first, how long
        before the newest step it began and the highest share used in it, in whole percent.

        The highest, not the mean: a short peak is what runs a machine out of memory, and it
        must not be averaged away. Whole percent is finer than the plot can show, so a share
        that moves less than that leaves the plot as it is.
        """
        peaks: dict[int, float] = {}
        for stamp, share in self.samples:
            step = math.floor(stamp / STEP_S)
            peaks[step] = max(share, peaks.get(step, 0.0))
        if not peaks:
            return ()
        newest = max(peaks)
        return tuple(
            ((step - newest) * STEP_S, float(round(peak)))
            for step, peak in sorted(peaks.items())
            if (newest - step) * STEP_S <= HISTORY_S
        )
