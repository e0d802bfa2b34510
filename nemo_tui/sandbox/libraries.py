"""Which data libraries the Python that runs analysis scripts can import, so the prompt can say."""

from __future__ import annotations

import subprocess
import sys

from nemo_tui.errors import NemoError

CANDIDATES = ("pandas", "numpy", "scipy", "statsmodels", "lifelines")
"""The libraries looked for, in the order they are reported."""

_PROBE = """\
import sys
from importlib.util import find_spec
for name in sys.argv[1:]:
    if find_spec(name) is not None:
        print(name)
"""
"""Finds each library without importing it: numpy alone takes longer to import than this run."""

_PROBE_TIMEOUT_S = 30.0
"""A cold disk under a large site-packages; a Python that takes longer is as good as broken."""


def interpreter(python: str | None) -> str:
    """The Python that runs scripts: the one configured, else the one running nemo-tui."""
    return python or sys.executable


def cannot_run(python: str | None, why: str) -> NemoError:
    """The error for a Python that runs scripts but cannot be started or does not answer.

    Args:
        python: The configured interpreter (None for the one running nemo-tui).
        why: What went wrong, in plain words.

    Returns:
        The error, with a fix.
    """
    return NemoError(
        f"the Python that runs analysis scripts ({interpreter(python)}) {why}",
        fix="set analysis.python to a working Python 3 interpreter, or remove it to use the one"
        " running nemo-tui",
    )


def detect_libraries(python: str | None = None) -> tuple[str, ...]:
    """The libraries of `CANDIDATES` that a script run by `python` can import.

    Blocking (it starts that interpreter once, for about as long as `python -c pass`); call it in
    a thread. Not cached: a library installed since the last call is found.

    Args:
        python: The interpreter scripts run in; None for the one running nemo-tui.

    Returns:
        The importable ones, in the order of `CANDIDATES`.

    Raises:
        NemoError: that interpreter cannot be started, fails or does not answer.
    """
    try:
        probe = subprocess.run(
            [interpreter(python), "-I", "-c", _PROBE, *CANDIDATES],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        raise cannot_run(python, f"did not answer within {_PROBE_TIMEOUT_S:.0f} s") from error
    except OSError as error:
        raise cannot_run(python, f"cannot be started: {error.strerror or error}") from error
    if probe.returncode != 0:
        last_line = probe.stderr.strip().splitlines()[-1:] or [f"exit status {probe.returncode}"]
        raise cannot_run(python, f"failed: {last_line[0]}")
    found = set(probe.stdout.split())
    return tuple(name for name in CANDIDATES if name in found)
