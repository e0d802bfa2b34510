"""Every number a user sees is parsed and formatted here, so the CLI, JSON, gauges and tables agree.

Memory is carried in mebibytes (MB below, 1 MB = 2**20 bytes) as floats throughout nemo-tui;
"GB" on screen is 1024 MB, matching what `free -h`, Ollama and nvidia-smi print.
"""

from __future__ import annotations

import re

from nemo_tui.errors import UsageError

MB = 1024 * 1024

_SIZE_UNITS = {
    "": 1.0,
    "B": 1.0 / MB,
    "K": 1.0 / 1024,
    "KB": 1.0 / 1024,
    "KIB": 1.0 / 1024,
    "M": 1.0,
    "MB": 1.0,
    "MIB": 1.0,
    "G": 1024.0,
    "GB": 1024.0,
    "GIB": 1024.0,
    "T": 1024.0 * 1024,
    "TB": 1024.0 * 1024,
    "TIB": 1024.0 * 1024,
}
MAX_SIZE_MB = 1024.0**3
"""The largest memory size accepted (1 PiB): a longer number would overflow to infinity."""
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size_mb(text: str) -> float:
    """Parse a memory size such as `8GB`, `1.5GB`, `2048MB` or `2048` (MB) into MB.

    Raises:
        UsageError: the text is not a positive size with a known unit.
    """
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise UsageError(
            f"'{text}' is not a memory size",
            fix="write a number with a unit, such as 8GB, 1.5GB or 2048MB",
        )
    value = float(match.group(1)) * _SIZE_UNITS[unit]
    if value <= 0:
        raise UsageError(f"'{text}' is not a positive memory size", fix="use a size above 0")
    if value > MAX_SIZE_MB:
        raise UsageError(f"'{text}' is larger than any machine", fix="use a size of at most 1024TB")
    return value


def bytes_to_mb(value: float) -> float:
    """Convert bytes to MB."""
    return value / MB


def format_mb(mb: float | None) -> str:
    """Format MB for people: `512 MB`, `4.1 GB`; `n/a` for an unknown value."""
    if mb is None:
        return "n/a"
    if abs(mb) >= 1024:
        return f"{mb / 1024:.1f} GB"
    return f"{mb:.0f} MB"


def format_pct(fraction: float | None, *, digits: int = 0) -> str:
    """Format a fraction in 0..1 as a percentage: `0.756` -> `76%`."""
    if fraction is None:
        return "n/a"
    return f"{fraction * 100:.{digits}f}%"


def format_count(value: int) -> str:
    """Format a token or item count with thousands separators: `12,400`."""
    return f"{value:,}"


def format_seconds(seconds: float | None) -> str:
    """Format a duration: `850 ms`, `2.4 s`, `3m 05s`."""
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_rate(tokens_per_second: float | None) -> str:
    """Format a generation speed: `42.3 tok/s`."""
    if tokens_per_second is None:
        return "n/a"
    return f"{tokens_per_second:.1f} tok/s"
