"""What an analysis script may use when it runs (its limits), and what the run did.

The sandbox (`nemo_tui.sandbox`) enforces the limits; the engine derives the memory cap from
the memory the recommender sees as free under the cache limit; the CLI and the dashboard show
an `AnalysisRun` and name the limit that stopped it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nemo_tui.units import format_mb, format_seconds


class LimitHit(StrEnum):
    """Which limit stopped a run."""

    MEMORY = "memory"
    CPU = "cpu"
    WALL = "wall"
    OUTPUT = "output"
    FILE = "file"


@dataclass(frozen=True)
class RunLimits:
    """The limits one run of an analysis script gets.

    Attributes:
        memory_mb: Cap on the script's address space (RLIMIT_AS).
        cpu_s: CPU seconds the script may use (RLIMIT_CPU).
        wall_s: Wall-clock seconds before it is killed.
        output_bytes: Bytes of stdout and stderr together that are captured; past this the run
            is stopped.
        file_mb: Largest file the script may write (RLIMIT_FSIZE).
    """

    memory_mb: float
    cpu_s: float
    wall_s: float
    output_bytes: int
    file_mb: float

    def describe(self, hit: LimitHit) -> str:
        """How the limit that stopped a run reads: `stopped at the 1.2 GB memory cap`."""
        if hit is LimitHit.MEMORY:
            return f"stopped at the {format_mb(self.memory_mb)} memory cap"
        if hit is LimitHit.CPU:
            return f"stopped at the {_limit_seconds(self.cpu_s)} CPU time limit"
        if hit is LimitHit.WALL:
            return f"stopped at the {_limit_seconds(self.wall_s)} wall-clock timeout"
        if hit is LimitHit.OUTPUT:
            return f"stopped at the {format_mb(self.output_bytes / 2**20)} output cap"
        return f"stopped at the {format_mb(self.file_mb)} file size limit"

    def summary(self) -> str:
        """All the limits on one line, for the screen before a run starts."""
        return (
            f"memory {format_mb(self.memory_mb)}, CPU {_limit_seconds(self.cpu_s)},"
            f" wall {_limit_seconds(self.wall_s)}, output {format_mb(self.output_bytes / 2**20)}"
        )


def _limit_seconds(seconds: float) -> str:
    """A limit as configured (`60 s`, `1.5 s`), not rounded into minutes as a duration is."""
    return f"{seconds:g} s"


@dataclass(frozen=True)
class AnalysisRun:
    """What one run of an analysis script did.

    Attributes:
        exit_code: The script's exit status; negative for the signal that ended it (-9 for
            SIGKILL), as `subprocess` reports it.
        stdout: What it printed, up to the output cap (decoded as UTF-8, bad bytes replaced).
        stderr: Its error output, likewise.
        wall_s: Seconds from start to exit.
        peak_rss_mb: Its peak resident memory, as the kernel reported it at exit; None when
            that could not be read.
        limit_hit: The limit that stopped it, or None.
        limits: The limits it ran under.
        cancelled: True when the user stopped it.
    """

    exit_code: int
    stdout: str
    stderr: str
    wall_s: float
    peak_rss_mb: float | None
    limit_hit: LimitHit | None
    limits: RunLimits
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        """True when the script ran to the end and exited 0."""
        return self.exit_code == 0 and self.limit_hit is None and not self.cancelled

    def outcome(self) -> str:
        """One line: `exit 0 in 0.4 s, peak 35 MB` or `stopped at the 60 s CPU time limit ...`."""
        peak = f"peak {format_mb(self.peak_rss_mb)}"
        took = format_seconds(self.wall_s)
        if self.cancelled:
            return f"stopped by you after {took}, {peak}"
        if self.limit_hit is not None:
            return f"{self.limits.describe(self.limit_hit)} after {took}, {peak}"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code} after {took}, {peak}"
        return f"exit {self.exit_code} in {took}, {peak}"

    def to_json(self) -> dict[str, object]:
        """The `run` object of `analyze --json`."""
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1) if self.peak_rss_mb is not None else None,
            "limit_hit": self.limit_hit.value if self.limit_hit is not None else None,
            "cancelled": self.cancelled,
        }
