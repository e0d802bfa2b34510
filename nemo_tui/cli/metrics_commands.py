"""`nemo-tui metrics`: nemo-tui's figures for Prometheus, served over HTTP (`--listen`) or
written for node_exporter's textfile collector (`--textfile`).

The process asks the model servers and the other hosts again every `--interval` seconds; the
query counters follow the history file every nemo-tui process appends to, so the dashboard's
and other commands' queries count as soon as they finish. It runs until Ctrl-C (exit 130) or
SIGTERM (exit 0), except `--textfile` without `--interval`, which writes once and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
from pathlib import Path

from nemo_tui import paths
from nemo_tui.cli.context import CommandContext
from nemo_tui.cli.engine_commands import run_with_engine
from nemo_tui.cli.output import note
from nemo_tui.engine import Engine
from nemo_tui.errors import UsageError
from nemo_tui.exporter.collector import take_snapshot
from nemo_tui.exporter.counters import HistoryCounters
from nemo_tui.exporter.serve import parse_listen_address, serve, write_textfile

DEFAULT_REFRESH_S = 15.0
"""How often `--listen` asks the servers and hosts again: Prometheus's usual scrape interval."""
MIN_INTERVAL_S = 1.0
"""A shorter interval would keep the model servers busy answering for nothing."""


def parse_listen(text: str) -> tuple[str, int]:
    """The address and port of `--listen ADDR:PORT` (see `parse_listen_address`).

    Raises:
        UsageError: the text is not ADDR:PORT.
    """
    try:
        return parse_listen_address(text)
    except UsageError as exc:
        raise UsageError(f"--listen: {exc.message}", fix=exc.fix) from None


def _interval(value: float | None) -> float | None:
    """`--interval`, checked.

    Raises:
        UsageError: it is not a number of seconds of at least `MIN_INTERVAL_S`.
    """
    if value is not None and not (math.isfinite(value) and value >= MIN_INTERVAL_S):
        raise UsageError(
            f"--interval: {value:g} is not a number of seconds",
            fix=f"give {MIN_INTERVAL_S:g} or more",
        )
    return value


def metrics(args: argparse.Namespace) -> int:
    """`nemo-tui metrics --listen ADDR:PORT | --textfile PATH [--interval SECONDS]`.

    Raises:
        UsageError: `--listen` or `--interval` cannot be used.
        NemoError: the address cannot be listened on, or the file cannot be written.
    """
    listen = parse_listen(args.listen) if args.listen is not None else None
    interval = _interval(args.interval)
    textfile = Path(args.textfile) if args.textfile is not None else None
    if textfile is not None and textfile.suffix != ".prom":
        note(f"note: node_exporter's textfile collector reads only *.prom files, not {textfile}")

    async def body(engine: Engine, ctx: CommandContext) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # A service manager stops a service with SIGTERM: that is a normal end, not a failure.
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            if listen is not None:
                await _serve(engine, listen, interval or DEFAULT_REFRESH_S, stop)
            elif textfile is not None:
                await _write(engine, textfile, interval, stop)
        finally:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGTERM)
        return 0

    return run_with_engine(args, body)


async def _serve(
    engine: Engine, listen: tuple[str, int], interval_s: float, stop: asyncio.Event
) -> None:
    endpoint = serve(engine, engine.hosts, *listen, history=paths.history_file())
    note(f"serving metrics at {endpoint.url}")
    try:
        while not await _stopped(stop, interval_s):
            await _refresh(engine)
    finally:
        endpoint.close()


async def _write(engine: Engine, path: Path, interval_s: float | None, stop: asyncio.Event) -> None:
    counters = HistoryCounters(paths.history_file())
    while True:
        write_textfile(path, take_snapshot(engine, hosts=engine.hosts, counters=counters))
        if interval_s is None or await _stopped(stop, interval_s):
            return
        await _refresh(engine)


async def _stopped(stop: asyncio.Event, wait_s: float) -> bool:
    """Wait `wait_s` seconds; True at once when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait_s):
            await stop.wait()
    return stop.is_set()


async def _refresh(engine: Engine) -> None:
    """Ask the model servers what they hold and the other hosts how they are, again."""
    await engine.probe()
    await engine.refresh_hosts()
