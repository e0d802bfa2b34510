"""`nemo-tui metrics` as an operator runs it: queries asked with `nemo-tui ask` against a fake
Ollama, then the endpoint scraped over HTTP (or the text file read) and parsed with
prometheus_client's parser; every figure is checked against `nemo-tui stats --json`."""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from nemo_tui.cli.metrics_commands import parse_listen
from nemo_tui.errors import UsageError
from nemo_tui.exporter.serve import ALL_INTERFACES
from nemo_tui.units import MB
from tests.cli.test_cli import Cli, assert_one_line_error, cli, ollama, with_model_server
from tests.exporter.test_collector import Scrape, parse
from tests.fakes import FakeOllama

__all__ = ["cli", "ollama"]  # fixtures

MB_ROUNDING = 0.05 * MB
"""`stats --json` rounds memory to 0.1 MB; the metrics carry it unrounded, in bytes."""


@contextmanager
def exporter(cli: Cli, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`nemo-tui metrics --listen 127.0.0.1:0` in the background, with the model server's
    config; yields the process and its metrics URL (read from its first line on stderr)."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nemo_tui",
            "metrics",
            "--listen",
            "127.0.0.1:0",
            *args,
            "--config",
            cli.config(),
            "--simulate-memory",
            "16GB",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=cli.env,
        cwd=cli.home,
    )
    try:
        line = first_line(process)
        assert line.startswith("serving metrics at http://127.0.0.1:"), line
        yield process, line.removeprefix("serving metrics at ")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def first_line(process: subprocess.Popen[str], timeout_s: float = 30.0) -> str:
    """The first line the process writes to stderr, waiting at most `timeout_s`."""
    assert process.stderr is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        assert selector.select(timeout_s), "the exporter said nothing"
    return process.stderr.readline().strip()


def stop(process: subprocess.Popen[str], how: signal.Signals) -> tuple[int, str]:
    """Send a signal; the exit status and the rest of stderr."""
    process.send_signal(how)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


def get(url: str) -> Scrape:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return parse(response.text)


def stats(cli: Cli) -> dict[str, Any]:
    result = with_model_server(cli, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def ask(cli: Cli, *args: str) -> None:
    result = with_model_server(cli, "ask", *args)
    assert result.returncode == 0, result.stderr


def nonzero(values: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if value}


def assert_counters_agree(got: Scrape, data: dict[str, Any]) -> None:
    metrics = data["metrics"]
    totals = metrics["totals"]
    assert got.value("nemo_tui_queries_total") == metrics["queries"]
    assert got.value("nemo_tui_cache_hits_total") == totals["cache_hits"]
    assert got.value("nemo_tui_cache_misses_total") == totals["cache_misses"]
    assert got.value("nemo_tui_truncations_total") == totals["truncated"]
    assert got.value("nemo_tui_query_failures_total") == totals["failed"]
    fallbacks = got.by("nemo_tui_fallbacks_total", "reason")
    assert nonzero(fallbacks) == totals["fallbacks_by_reason"]
    by_reason = metrics["evictions"]["by_reason"]
    evictions = got.by("nemo_tui_evictions_total", "reason")
    assert nonzero(evictions) == {reason: e["count"] for reason, e in by_reason.items()}
    freed = nonzero(got.by("nemo_tui_eviction_freed_bytes_total", "reason"))
    assert freed == {
        reason: pytest.approx(e["freed_mb"] * MB, abs=MB_ROUNDING)
        for reason, e in by_reason.items()
        if e["freed_mb"]
    }
    assert got.value("nemo_tui_analyses_total") == metrics["analyses"]["run"]


def assert_models_and_memory_agree(got: Scrape, data: dict[str, Any]) -> None:
    resident = data["models"]["resident"]
    loaded = sorted(
        (s["model"], s["backend"], s["host"]) for s in got.series("nemo_tui_model_loaded")
    )
    assert loaded == sorted((m["name"], m["backend"], "local") for m in resident)
    for model in resident:
        labels = {"host": "local", "model": model["name"], "backend": model["backend"]}
        size = got.value("nemo_tui_model_size_bytes", **labels)
        assert size == pytest.approx(model["size_mb"] * MB, abs=MB_ROUNDING)
        expires = got.value("nemo_tui_model_expires_timestamp_seconds", **labels)
        assert expires == pytest.approx(model["expires_at"], abs=1e-3)
    system = data["system"]
    for name, key in (("total", "total_mb"), ("available", "available_mb"), ("used", "used_mb")):
        exported = got.value(f"nemo_tui_host_memory_{name}_bytes", host="local")
        assert exported == pytest.approx(system[key] * MB, abs=MB_ROUNDING), name
    pressure = nonzero(got.by("nemo_tui_host_memory_pressure", "level"))
    assert pressure == {system["pressure"]: 1.0}
    up = got.by("nemo_tui_backend_up", "backend")
    assert up == {b["name"]: float(b["up"]) for b in data["backends"]}


@pytest.mark.integration
def test_the_endpoint_agrees_with_stats_json_and_follows_new_queries(
    cli: Cli, ollama: FakeOllama
) -> None:
    ask(cli, "hi")
    ask(cli, "hello again")
    ask(cli, "hi", "--model", "biomistral:7b")  # not on the server: falls back
    assert with_model_server(cli, "unload", "tinyllama").returncode == 0
    assert with_model_server(cli, "preload", "phi3:mini").returncode == 0

    with exporter(cli, "--interval", "1") as (process, url):
        got = get(url)
        before = stats(cli)
        assert_counters_agree(got, before)
        assert_models_and_memory_agree(got, before)
        assert before["metrics"]["queries"] == 3
        assert before["metrics"]["totals"]["fallbacks_by_reason"] == {"model_not_found": 1}
        assert list(before["metrics"]["evictions"]["by_reason"]) == ["manual"]
        assert [m["name"] for m in before["models"]["resident"]] == ["phi3:mini"]

        ask(cli, "one more")  # loads tinyllama again, in another process
        after = stats(cli)
        assert_counters_agree(get(url), after)
        assert after["metrics"]["queries"] == 4
        # The models are asked again every --interval: the new one shows within a few.
        deadline = time.monotonic() + 10
        while True:
            got = get(url)
            try:
                assert_models_and_memory_agree(got, after)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        status, err = stop(process, signal.SIGTERM)
    assert status == 0, err
    assert err == ""


@pytest.mark.integration
def test_ctrl_c_stops_the_endpoint_without_a_traceback(cli: Cli, ollama: FakeOllama) -> None:
    with exporter(cli) as (process, url):
        assert get(url).value("nemo_tui_host_up", host="local") == 1.0
        status, err = stop(process, signal.SIGINT)
    assert status == 130
    assert err.strip() == "nemo-tui: interrupted"


@pytest.mark.integration
def test_the_text_file_agrees_with_stats_json(cli: Cli, ollama: FakeOllama) -> None:
    ask(cli, "hi")
    ask(cli, "hi", "--model", "biomistral:7b")
    path = cli.home / "textfile" / "nemo_tui.prom"
    path.parent.mkdir()
    result = with_model_server(cli, "metrics", "--textfile", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""
    got = parse(path.read_text())
    data = stats(cli)
    assert_counters_agree(got, data)
    assert_models_and_memory_agree(got, data)
    assert [p.name for p in path.parent.iterdir()] == ["nemo_tui.prom"]


@pytest.mark.integration
def test_the_text_file_is_rewritten_every_interval_until_stopped(
    cli: Cli, ollama: FakeOllama
) -> None:
    path = cli.home / "nemo_tui.prom"
    args = ("metrics", "--textfile", str(path), "--interval", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", "nemo_tui", *args, "--config", cli.config()],
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
        cwd=cli.home,
    )
    try:
        deadline = time.monotonic() + 30
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert parse(path.read_text()).value("nemo_tui_queries_total") == 0
        ask(cli, "hi")
        while time.monotonic() < deadline:
            if parse(path.read_text()).value("nemo_tui_queries_total") == 1:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the file was not rewritten with the new query")
        status, err = stop(process, signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert status == 0, err
    assert sorted(p.name for p in cli.home.iterdir() if "prom" in p.name) == ["nemo_tui.prom"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("9200", "'9200' has no port"),
        ("localhost:", "'' is not a port"),
        ("127.0.0.1:99999", "'99999' is not a port"),
        ("127.0.0.1:http", "'http' is not a port"),
        ("::1:9200", "an IPv6 address goes in brackets"),
        ("[gpu-box]:9200", "'gpu-box' is not an IPv6 address"),
    ],
)
def test_a_bad_listen_address_is_a_one_line_usage_error(cli: Cli, value: str, words: str) -> None:
    line = assert_one_line_error(cli.run("metrics", "--listen", value), 2)
    assert line.startswith("nemo-tui: --listen: ")
    assert words in line and "(fix: " in line


def test_a_listen_port_in_use_is_one_line_naming_it(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli.run("metrics", "--listen", f"127.0.0.1:{port}", "--config", cli.config())
    line = assert_one_line_error(result, 1)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in line
    assert "in use" in line and "choose another port" in line


@pytest.mark.parametrize("value", ["0", "0.5", "-3", "nan", "inf"])
def test_an_interval_below_a_second_is_a_usage_error(cli: Cli, value: str) -> None:
    result = cli.run("metrics", "--textfile", "x.prom", "--interval", value)
    line = assert_one_line_error(result, 2)
    assert "--interval" in line and "give 1 or more" in line


def test_metrics_needs_listen_or_textfile_but_not_both(cli: Cli) -> None:
    assert cli.run("metrics").returncode == 2
    both = cli.run("metrics", "--listen", ":9200", "--textfile", "x.prom")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9200", ("127.0.0.1", 9200)),
        ("localhost:0", ("localhost", 0)),
        (":9200", (ALL_INTERFACES, 9200)),
        ("[::1]:9200", ("::1", 9200)),
        ("[::]:9200", ("::", 9200)),
        (" gpu-box.lan:65535 ", ("gpu-box.lan", 65535)),
    ],
)
def test_listen_addresses_are_read_like_other_exporters(
    text: str, expected: tuple[str, int]
) -> None:
    assert parse_listen(text) == expected


def test_an_ipv6_listen_address_needs_its_brackets() -> None:
    with pytest.raises(UsageError) as caught:
        parse_listen("fe80::1:9200")
    assert caught.value.fix == "write [fe80::1]:9200"
