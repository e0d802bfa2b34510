"""The real `nemo-tui` command in a subprocess: what a user sees on stdout, stderr and in the exit
status. Model servers are a fake Ollama (and a fake Gemini) on loopback; memory is simulated."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakes import ANSWER_WORDS, DEFAULT_MODELS, FakeModel, FakeOllama, Fault

REPO_ROOT = Path(__file__).resolve().parents[2]
ANSWER = " ".join(ANSWER_WORDS[:24])
"""What the fake Ollama streams for every question."""
SECRET = "AIza-test-secret"
COMPLEX_QUERY = (
    "Explain how vaccines train the immune system and compare mRNA with vector platforms"
    " in depth, with statistical analysis"
)
MEMORY_KEYS = {
    "total_mb",
    "available_mb",
    "used_mb",
    "percent",
    "swap_total_mb",
    "swap_used_mb",
    "pressure",
    "psi_some_avg10",
    "cgroup_limit_mb",
    "simulated",
    "gpus",
}
RECOMMENDATION_KEYS = {
    "model",
    "backend",
    "tier",
    "local",
    "reason",
    "num_ctx",
    "num_batch",
    "fits",
    "fallbacks",
}
TIER_RANK = {"low": 0, "medium": 1, "high": 2, "cloud": 3}
NO_EMBEDDED = "backends:\n  embedded:\n    enabled: false\n"


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Cli:
    """Runs `python -m nemo_tui` with its own XDG dirs and no model server unless told."""

    home: Path
    env: dict[str, str]

    def run(
        self,
        *args: str,
        stdin: str = "",
        env: dict[str, str] | None = None,
        timeout_s: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nemo_tui", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.home,
            timeout=timeout_s,
            check=False,
        )

    def json(self, *args: str, **kwargs: Any) -> Any:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def config(self, text: str = NO_EMBEDDED, name: str = "config.yaml") -> str:
        path = self.home / name
        path.write_text(text, encoding="utf-8")
        return str(path)


def isolated_env(home: Path) -> dict[str, str]:
    """This process's environment for a `nemo-tui` run: its own XDG dirs under `home`, no
    config, key or model server of the user's (Ollama at a port nobody listens on)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"NEMO_TUI_CONFIG", "GEMINI_API_KEY", "OLLAMA_HOST", "PYTHONPATH"}
    }
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        OLLAMA_HOST=f"127.0.0.1:{closed_port()}",
    )
    return env


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, isolated_env(tmp_path))


@pytest.fixture
def ollama(cli: Cli) -> Iterator[FakeOllama]:
    """A fake Ollama with tinyllama and phi3:mini, which the CLI reaches through OLLAMA_HOST.

    A cold load takes 0.3 s, as a real runner start does (Ollama polls a starting runner every
    250 ms): what the CLI says about a load follows from what the server reports.
    """
    phi3 = next(m for m in DEFAULT_MODELS if m.name == "phi3:mini")
    models = [FakeModel("tinyllama", weights_mb=608.0), phi3]
    with FakeOllama(models, cold_load_s=0.3) as server:
        cli.env["OLLAMA_HOST"] = server.url
        yield server
    assert server.handler_errors == []


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The command failed with `status` and said why in one line, without a traceback."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nemo-tui: ")
    return lines[0]


# -- version, help, status ---------------------------------------------------------------------


def test_version_prints_the_program_and_its_version(cli: Cli) -> None:
    result = cli.run("--version")
    assert result.returncode == 0
    name, version = result.stdout.split()
    assert name == "nemo-tui" and version[0].isdigit()


def test_help_lists_every_command(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.returncode == 0
    for command in (
        "status",
        "recommend",
        "optimize",
        "estimate",
        "check-config",
        "locate",
        "ask",
        "models",
        "preload",
        "unload",
        "clear-cache",
        "stats",
        "analyze",
        "demo-data",
    ):
        assert f"\n    {command} " in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--simulate-memory", "4GB:1.5GB", "status", "--json"),
        ("status", "--json", "--simulate-memory", "4GB:1.5GB"),
    ],
    ids=["flag-before-command", "flag-after-command"],
)
def test_status_json_describes_the_simulated_machine(cli: Cli, args: tuple[str, ...]) -> None:
    data = cli.json(*args)
    assert set(data) >= {"memory", "recommendation"}
    memory, rec = data["memory"], data["recommendation"]
    assert set(memory) >= MEMORY_KEYS
    assert set(rec) >= RECOMMENDATION_KEYS
    assert memory["simulated"] is True
    assert (memory["total_mb"], memory["available_mb"]) == (4096, 1536)
    assert memory["gpus"] == []
    assert rec["local"] is True and rec["fits"] is True


def test_simulated_gpu_shows_up_as_one_gpu(cli: Cli) -> None:
    data = cli.json("status", "--json", "--simulate-memory", "8GB", "--simulate-gpu", "8GB")
    gpus = data["memory"]["gpus"]
    assert len(gpus) == 1 and gpus[0]["total_mb"] == 8192


def test_status_text_marks_a_simulated_machine(cli: Cli) -> None:
    result = cli.run("status", "--simulate-memory", "4GB:1.5GB")
    assert result.returncode == 0
    assert "1.5 GB available of 4.0 GB" in result.stdout
    assert "[simulated]" in result.stdout
    assert "Model " in result.stdout


def test_bad_simulated_size_is_a_usage_error_naming_the_fix(cli: Cli) -> None:
    line = assert_one_line_error(cli.run("status", "--simulate-memory", "4XB"), 2)
    assert "4XB" in line and "4GB:1.5GB" in line


# -- recommend -----------------------------------------------------------------------------------


def test_recommend_json_adds_the_complexity_judgement(cli: Cli) -> None:
    data = cli.json("recommend", COMPLEX_QUERY, "--json", "--simulate-memory", "16GB")
    assert set(data) >= RECOMMENDATION_KEYS | {"complexity", "complexity_reasons", "decision_ms"}
    assert data["complexity"] == "high"
    assert data["complexity_reasons"]
    assert data["decision_ms"] >= 0


def test_more_memory_never_picks_a_smaller_tier(cli: Cli) -> None:
    tiers = {}
    for size in ("2GB", "4GB", "8GB", "16GB"):
        data = cli.json("recommend", COMPLEX_QUERY, "--json", "--simulate-memory", size)
        assert data["fits"] is True and data["local"] is True, size
        tiers[size] = data["tier"]
    ranks = [TIER_RANK[tier] for tier in tiers.values()]
    assert ranks == sorted(ranks), tiers
    assert tiers["2GB"] == "low"
    assert tiers["16GB"] == "high"


def test_a_hard_question_on_a_small_machine_goes_to_the_cloud_only_when_it_has_a_key(
    cli: Cli,
) -> None:
    args = ("recommend", COMPLEX_QUERY, "--json", "--simulate-memory", "2GB")
    keyed = cli.json(*args, env={"GEMINI_API_KEY": "test-key-not-real"})
    keyless = cli.json(*args)

    assert keyed["local"] is False and keyed["tier"] == "cloud"
    assert "tiers below" in keyed["reason"]
    assert keyless["local"] is True
    assert "the answer may be weak" in keyless["reason"]


def test_a_simple_question_gets_a_small_model_even_on_a_big_machine(cli: Cli) -> None:
    data = cli.json("recommend", "hi", "--json", "--simulate-memory", "16GB")
    assert data["complexity"] == "low" and data["tier"] == "low"


def test_forced_complexity_is_used_and_said(cli: Cli) -> None:
    big = cli.json("recommend", "hi", "--complexity", "high", "--json", "--simulate-memory", "16GB")
    small = cli.json(
        "recommend", "hi", "--complexity", "high", "--json", "--simulate-memory", "2GB"
    )
    assert big["complexity"] == "high" and big["tier"] == "high"
    assert any("--complexity" in reason for reason in big["complexity_reasons"])
    assert small["tier"] == "low" and small["fits"] is True


# -- optimize ------------------------------------------------------------------------------------


def long_document() -> str:
    return "\n\n".join(
        f"Paragraph {i}: the quarterly logistics review covered shipping lanes in region {i}."
        for i in range(300)
    )


def test_optimize_shrinks_a_long_prompt_to_the_budget(cli: Cli) -> None:
    document = long_document()
    question = "What did paragraph 5 cover?"
    result = cli.run("optimize", "--budget", "200", "--query", question, stdin=document)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) < len(document) / 10
    assert "Paragraph 5:" in result.stdout
    assert result.stdout.rstrip().endswith(question)
    summary = re.fullmatch(r"([\d,]+) -> ([\d,]+) tokens, \d+% smaller .*", result.stderr.strip())
    assert summary is not None, result.stderr
    before, after = (int(group.replace(",", "")) for group in summary.groups())
    assert after <= 200 < before


def test_optimize_json_reports_the_reduction(cli: Cli) -> None:
    data = cli.json("optimize", "--budget", "200", "--query", "Q?", "--json", stdin=long_document())
    assert set(data) >= {
        "original_tokens",
        "optimized_tokens",
        "reduction_pct",
        "truncated",
        "optimized_prompt",
    }
    assert data["truncated"] is True
    assert data["optimized_tokens"] <= 200 < data["original_tokens"]
    assert 0 < data["reduction_pct"] < 100


def run_with_bytes(cli: Cli, stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "nemo_tui", *args],
        input=stdin,
        capture_output=True,
        env=cli.env,
        cwd=cli.home,
        timeout=60,
        check=False,
    )


def test_optimize_refuses_standard_input_that_is_not_utf8(cli: Cli) -> None:
    result = run_with_bytes(cli, b"caf\xe9 au lait", "optimize", "--budget", "50")

    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "not UTF-8 text (byte 0xe9 at offset 3)" in stderr and "iconv" in stderr
    assert "Traceback" not in stderr


def test_optimize_refuses_a_prompt_too_large_to_read(cli: Cli) -> None:
    result = run_with_bytes(cli, b"word " * (2 * 1024 * 1024), "optimize", "--budget", "50")

    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "larger than 8 MB" in stderr and "Traceback" not in stderr


def test_optimize_summarizes_a_data_file_into_the_prompt(cli: Cli) -> None:
    csv = cli.home / "people.csv"
    rows = [f"person{i},{20 + i % 50},city{i % 7}" for i in range(500)]
    csv.write_text("name,age,city\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = cli.run(
        "optimize",
        "--data",
        str(csv),
        "--query",
        "What is the average age?",
        "--simulate-memory",
        "8GB",
    )
    assert result.returncode == 0, result.stderr
    assert "500 rows" in result.stdout
    assert "age" in result.stdout and "city" in result.stdout
    assert "What is the average age?" in result.stdout
    assert "person499" not in result.stdout


def test_optimize_with_a_missing_data_file_is_a_usage_error(cli: Cli) -> None:
    line = assert_one_line_error(cli.run("optimize", "--data", "nowhere.csv", "--budget", "99"), 2)
    assert "nowhere.csv" in line and "--data" in line


# -- estimate ------------------------------------------------------------------------------------


def estimate(cli: Cli, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = cli.json("estimate", "phi3:mini", "--json", *args)
    return data


def test_estimate_json_splits_the_memory_and_grows_with_context(cli: Cli) -> None:
    at_4k = estimate(cli, "--ctx", "4096")
    at_2k = estimate(cli, "--ctx", "2048")
    q8 = estimate(cli, "--ctx", "4096", "--kv-type", "q8_0")
    assert set(at_4k) >= {"weights_mb", "kv_cache_mb", "overhead_mb", "total_mb"}
    assert at_4k["total_mb"] == pytest.approx(
        at_4k["weights_mb"] + at_4k["kv_cache_mb"] + at_4k["overhead_mb"], abs=0.2
    )
    assert at_2k["kv_cache_mb"] < at_4k["kv_cache_mb"]
    assert at_2k["weights_mb"] == at_4k["weights_mb"]
    assert q8["kv_cache_mb"] < at_4k["kv_cache_mb"]


def test_estimate_text_says_when_the_context_is_capped_by_training(cli: Cli) -> None:
    result = cli.run("estimate", "phi3:mini", "--ctx", "8192")
    assert result.returncode == 0
    assert result.stdout.startswith("phi3:mini at 4,096 tokens")
    assert "asked for 8,192" in result.stdout


def test_estimate_of_an_unknown_model_suggests_the_closest_name(cli: Cli) -> None:
    line = assert_one_line_error(cli.run("estimate", "phi3"), 2)
    assert "unknown model 'phi3'" in line and "did you mean 'phi3:mini'" in line


# -- config and paths ----------------------------------------------------------------------------


def test_check_config_prints_the_effective_config_as_yaml(cli: Cli) -> None:
    path = cli.config("memory_thresholds:\n  cache_limit: 0.7\n" + NO_EMBEDDED)
    result = cli.run("check-config", path)
    assert result.returncode == 0, result.stderr
    effective = yaml.safe_load(result.stdout)
    assert effective["memory_thresholds"]["cache_limit"] == 0.7
    assert effective["memory_thresholds"]["pressure_threshold"] == 0.75
    assert effective["backends"]["embedded"]["enabled"] is False
    assert path in result.stderr and "valid" in result.stderr


def test_check_config_names_the_line_key_and_fix_of_a_typo(cli: Cli) -> None:
    path = cli.config("memory_thresholds:\n  cache_limit: 0.7\n  pressure_treshold: 0.6\n")
    line = assert_one_line_error(cli.run("check-config", path), 2)
    assert f"{path}:3" in line
    assert "memory_thresholds.pressure_treshold" in line
    assert "did you mean 'pressure_threshold'" in line


def test_a_typo_in_the_config_stops_every_command(cli: Cli) -> None:
    path = cli.config("optimization:\n  context_trunction: false\n")
    line = assert_one_line_error(cli.run("status", "--config", path), 2)
    assert "context_truncation" in line


def test_config_that_is_not_utf8_is_a_config_error(cli: Cli) -> None:
    path = cli.home / "latin1.yaml"
    path.write_bytes(b"ui:\n  theme: caf\xe9\n")
    line = assert_one_line_error(cli.run("check-config", str(path)), 2)
    assert "UTF-8" in line


@pytest.mark.parametrize(
    "args",
    [("--config", "missing.yaml", "status"), ("status", "--config", "missing.yaml")],
    ids=["before", "after"],
)
def test_a_config_path_that_does_not_exist_is_a_usage_error(
    cli: Cli, args: tuple[str, ...]
) -> None:
    line = assert_one_line_error(cli.run(*args), 2)
    assert "missing.yaml" in line and "--config" in line


def test_locate_prints_the_paths_under_the_xdg_dirs(cli: Cli) -> None:
    result = cli.run("locate")
    assert result.returncode == 0
    rows = {}
    for line in result.stdout.splitlines():
        name, value = re.split(r"\s{2,}", line, maxsplit=1)
        rows[name] = value.removesuffix("(not created yet)").strip()
    assert rows["config file"] == str(cli.home / "config" / "nemo-tui" / "config.yaml")
    assert rows["config dir"] == str(cli.home / "config" / "nemo-tui")
    assert rows["data dir"] == str(cli.home / "data" / "nemo-tui")
    assert rows["cache dir"] == str(cli.home / "cache" / "nemo-tui")
    assert rows["llama.cpp logs"] == str(cli.home / "cache" / "nemo-tui" / "embedded")
    assert "not created yet" in result.stdout


# -- ask and the model cache, against the fake Ollama ---------------------------------------------


def with_model_server(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.run(*args, "--config", cli.config(), "--simulate-memory", "16GB")


@pytest.mark.integration
def test_ask_streams_the_answer_to_stdout_and_a_summary_to_stderr(
    cli: Cli, ollama: FakeOllama
) -> None:
    ollama.cold_load_s = 0.3  # as slow as a real load, so the server's report says it was one
    result = with_model_server(cli, "ask", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"
    summary = [line for line in result.stderr.splitlines() if line.startswith("tinyllama (ollama)")]
    assert len(summary) == 1
    assert "24 out" in summary[0] and "cache miss" in summary[0]
    assert "tinyllama" in ollama.loaded()


@pytest.mark.integration
def test_ask_json_emits_one_event_per_line_ending_with_done(cli: Cli, ollama: FakeOllama) -> None:
    result = with_model_server(cli, "ask", "hi", "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "done"
    assert "recommended" in kinds
    assert "".join(e["text"] for e in events if e["event"] == "token") == ANSWER
    done = events[-1]
    assert done["model"] == "tinyllama" and done["tokens_out"] == 24
    # A local answer: `cache_hit` null would mean the server did not say, not "cloud".
    assert done["local"] is True


@pytest.mark.integration
def test_ask_keeps_the_partial_answer_when_the_stream_breaks(cli: Cli, ollama: FakeOllama) -> None:
    assert with_model_server(cli, "preload", "tinyllama").returncode == 0
    ollama.fail_next(Fault.DROP, after_tokens=3)
    result = with_model_server(cli, "ask", "hi")
    assert result.returncode == 1
    assert result.stdout == " ".join(ANSWER_WORDS[:3]) + "\n"
    assert "partial answer from tinyllama kept above" in result.stderr
    assert "Stream broken:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_ask_for_an_unknown_model_is_a_usage_error(cli: Cli, ollama: FakeOllama) -> None:
    line = assert_one_line_error(with_model_server(cli, "ask", "hi", "--model", "tinylama"), 2)
    assert "did you mean 'tinyllama'" in line


@pytest.mark.parametrize(
    ("value", "shown"),
    [("http://user:hunter2@gpu-box", "'http://***@gpu-box'"), ("::::", "'::::'")],
    ids=["user-info", "garbage"],
)
def test_a_bad_ollama_host_is_one_line_naming_it_and_the_fix(
    cli: Cli, value: str, shown: str
) -> None:
    cli.env["OLLAMA_HOST"] = value
    line = assert_one_line_error(with_model_server(cli, "models", "--json"), 2)
    assert line.startswith(f"nemo-tui: $OLLAMA_HOST: {shown} ")
    assert "(fix: set it to host[:port]" in line
    assert "hunter2" not in line


def test_a_bad_ollama_url_in_the_config_is_caught_when_the_file_is_checked(cli: Cli) -> None:
    path = cli.config("backends:\n  ollama:\n    url: gpu-box:99999\n")
    line = assert_one_line_error(cli.run("check-config", path), 2)
    assert line.startswith(f"nemo-tui: {path}:3: backends.ollama.url: 'gpu-box:99999' ")


def test_ask_with_no_backend_up_names_the_backends_and_the_fix(cli: Cli) -> None:
    result = with_model_server(cli, "ask", "hi")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "no model backend is up" in result.stderr
    assert "ollama  down" in result.stderr
    assert "ollama serve" in result.stderr


@pytest.mark.integration
def test_models_json_lists_installed_and_loaded_models(cli: Cli, ollama: FakeOllama) -> None:
    assert with_model_server(cli, "preload", "tinyllama").returncode == 0
    result = with_model_server(cli, "models", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["backends_up"] == ["ollama"]
    rows = {row["name"]: row for row in data["models"]}
    assert rows["tinyllama"]["installed"] and rows["tinyllama"]["loaded"]
    assert rows["phi3:mini"]["installed"] and not rows["phi3:mini"]["loaded"]
    assert not rows["biomistral:7b"]["installed"]


@pytest.mark.integration
def test_preload_unload_and_clear_cache_change_what_the_server_holds(
    cli: Cli, ollama: FakeOllama
) -> None:
    loaded = with_model_server(cli, "preload", "tinyllama")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("Loaded tinyllama")
    assert set(ollama.loaded()) == {"tinyllama"}

    unloaded = with_model_server(cli, "unload", "tinyllama")
    assert unloaded.returncode == 0, unloaded.stderr
    assert unloaded.stdout.startswith("Unloaded tinyllama")
    assert ollama.loaded() == {}

    not_loaded = with_model_server(cli, "unload", "tinyllama")
    assert not_loaded.returncode == 1 and "not loaded" in not_loaded.stderr

    assert with_model_server(cli, "preload", "phi3:mini").returncode == 0
    cleared = with_model_server(cli, "clear-cache")
    assert cleared.returncode == 0, cleared.stderr
    assert "phi3:mini" in cleared.stdout
    assert ollama.loaded() == {}


@pytest.mark.integration
def test_preload_of_an_unknown_model_is_a_usage_error(cli: Cli, ollama: FakeOllama) -> None:
    line = assert_one_line_error(with_model_server(cli, "preload", "phi3"), 2)
    assert "did you mean 'phi3:mini'" in line
    assert ollama.loaded() == {}


class _JsonHandler(BaseHTTPRequestHandler):
    """A loopback server's request handler that answers with JSON and logs nothing."""

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving_on_loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free loopback port until the block ends; yields `http://host:port`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Vllm(_JsonHandler):
    """Serves one model and, like vLLM, says nothing about its size."""

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, {})
        elif self.path == "/v1/models":
            model = {"id": "qwen2.5-7b-instruct", "object": "model", "max_model_len": 32768}
            self._reply(200, {"object": "list", "data": [model]})
        else:
            self._reply(404, {"error": {"message": "Not Found", "code": 404}})


@pytest.fixture
def vllm() -> Iterator[str]:
    """A vLLM-like server on loopback; yields its `/v1` URL."""
    with serving_on_loopback(_Vllm) as url:
        yield f"{url}/v1"


@pytest.mark.integration
def test_a_loaded_model_of_unknown_size_is_null_in_json_and_unknown_in_text(
    cli: Cli, vllm: str
) -> None:
    config = cli.config(NO_EMBEDDED + f"  openai:\n    enabled: true\n    url: {vllm}\n")
    text = cli.run("models", "--config", config, "--simulate-memory", "16GB")
    data = cli.json("models", "--json", "--config", config, "--simulate-memory", "16GB")
    stats = cli.json("stats", "--json", "--config", config, "--simulate-memory", "16GB")
    row = next(row for row in data["models"] if row["name"] == "qwen2.5-7b-instruct")
    assert row["loaded"] is True
    assert row["size_mb"] is None and row["vram_share"] is None
    [resident] = stats["models"]["resident"]
    assert resident["size_mb"] is None and stats["models"]["resident_total_mb"] is None
    assert text.returncode == 0, text.stderr
    [resident_line] = [line for line in text.stdout.splitlines() if "resident" in line]
    assert resident_line.split() == ["resident,", "size", "unknown,", "kept", "until", "unloaded"]


@pytest.mark.integration
def test_stats_json_has_its_sections_and_remembers_earlier_queries(
    cli: Cli, ollama: FakeOllama
) -> None:
    assert with_model_server(cli, "ask", "hi").returncode == 0
    result = with_model_server(cli, "stats", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"system", "models", "optimization", "metrics", "backends"}
    assert data["metrics"]["queries"] == 1
    assert [b["name"] for b in data["backends"] if b["up"]] == ["ollama"]
    assert [m["name"] for m in data["models"]["resident"]] == ["tinyllama"]


# -- the Gemini key never shows ------------------------------------------------------------------


class _LeakyGemini(_JsonHandler):
    """Says the model exists, then rejects every answer with an error that quotes the key."""

    def do_GET(self) -> None:
        self._reply(200, {"name": "models/gemini-3.5-flash", "version": "001"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("x-goog-api-key", "")
        self._reply(
            400,
            {
                "error": {
                    "code": 400,
                    "message": f"API key not valid. Please pass a valid API key. ({key})",
                    "status": "INVALID_ARGUMENT",
                    "details": [{"reason": "API_KEY_INVALID"}],
                }
            },
        )


@pytest.fixture
def leaky_gemini() -> Iterator[str]:
    """A Gemini-like server on loopback; yields its base URL."""
    with serving_on_loopback(_LeakyGemini) as url:
        yield f"{url}/v1beta"


def gemini_config(cli: Cli, url: str) -> str:
    return cli.config(
        NO_EMBEDDED + f"  gemini:\n    url: {url}\n    api_key: {SECRET}-in-file\n",
        name="gemini.yaml",
    )


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        # These two ask the servers; the others only read the config and the machine.
        pytest.param(("stats", "--json"), marks=pytest.mark.integration),
        ("check-config",),
        pytest.param(("models",), marks=pytest.mark.integration),
    ],
)
def test_the_gemini_key_never_appears_in_reports(
    cli: Cli, ollama: FakeOllama, leaky_gemini: str, args: tuple[str, ...]
) -> None:
    config = gemini_config(cli, leaky_gemini)
    result = cli.run(
        *args, "--config", config, "--simulate-memory", "8GB", env={"GEMINI_API_KEY": SECRET}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
def test_the_gemini_key_never_appears_when_an_answer_fails(
    cli: Cli, leaky_gemini: str, json_flag: tuple[str, ...]
) -> None:
    config = gemini_config(cli, leaky_gemini)
    result = cli.run(
        "ask",
        "hi",
        *json_flag,
        "--config",
        config,
        "--simulate-memory",
        "8GB",
        env={"GEMINI_API_KEY": SECRET},
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "API key not valid" in output
    assert "GEMINI_API_KEY" in output
    assert SECRET not in output


# -- what servers and models say reaches the terminal without control sequences -----------------

HOSTILE_ANSWER = (
    "Sure.",
    "\x1b]52;c;aGVsbG8=\x07",
    " Title\x1b]0;pwned\x1b\\",
    " moved\x1b[2J\x1b[1;1H",
    " split\x1b",
    "]52;c;aGVsbG8=",
    "\x07 done.",
)
"""Tokens that write the clipboard (OSC 52, once split across three tokens), retitle the window
and clear the screen."""


@pytest.mark.integration
def test_ask_strips_control_sequences_from_the_answer(cli: Cli, ollama: FakeOllama) -> None:
    ollama.answer = HOSTILE_ANSWER
    result = with_model_server(cli, "ask", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Sure. Title moved split done.\n"
    assert "\x1b" not in result.stderr


@pytest.mark.integration
def test_ask_json_keeps_the_answer_exact(cli: Cli, ollama: FakeOllama) -> None:
    ollama.answer = HOSTILE_ANSWER
    result = with_model_server(cli, "ask", "hi", "--json")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert "".join(e["text"] for e in events if e["event"] == "token") == "".join(HOSTILE_ANSWER)


@pytest.mark.integration
@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["text", "json"])
def test_ask_survives_a_lone_surrogate_in_the_answer(
    cli: Cli, ollama: FakeOllama, json_flag: tuple[str, ...]
) -> None:
    ollama.answer = ("broken \ud800", " pair")
    result = with_model_server(cli, "ask", "hi", *json_flag)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if json_flag:
        events = [json.loads(line) for line in result.stdout.splitlines()]
        tokens = "".join(e["text"] for e in events if e["event"] == "token")
        assert tokens == "broken \ud800 pair"
    else:
        assert result.stdout == "broken \ufffd pair\n"


@pytest.mark.integration
def test_an_answer_a_latin1_terminal_cannot_show_is_shown_with_replacements(
    cli: Cli, ollama: FakeOllama
) -> None:
    ollama.answer = ("arrow \u2192 here",)
    result = cli.run(
        "ask",
        "hi",
        "--config",
        cli.config(),
        "--simulate-memory",
        "16GB",
        env={"PYTHONIOENCODING": "latin-1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "arrow ? here\n"


@pytest.mark.integration
def test_a_server_error_is_shown_without_its_control_sequences(
    cli: Cli, ollama: FakeOllama
) -> None:
    assert with_model_server(cli, "preload", "tinyllama").returncode == 0
    ollama.fail_next(Fault.ERROR_LINE, message="runner died\x1b]52;c;aGVsbG8=\x07\x1b[2J badly")
    result = with_model_server(cli, "ask", "hi", "--model", "tinyllama")
    assert result.returncode == 1
    assert "runner died badly" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


@pytest.mark.integration
def test_models_shows_server_names_and_versions_without_control_sequences(cli: Cli) -> None:
    names = ["x[/]", "/models/foo[Q4].gguf", "evil\x1b]0;pwned\x07name"]
    fakes = [FakeModel(name, weights_mb=600.0) for name in names]
    with FakeOllama(fakes, version="0.12.3\x1b[2J") as server:
        cli.env["OLLAMA_HOST"] = server.url
        text = with_model_server(cli, "models")
        data = json.loads(with_model_server(cli, "models", "--json").stdout)
    assert text.returncode == 0, text.stderr
    assert "\x1b" not in text.stdout + text.stderr
    assert "v0.12.3 " in text.stdout
    for shown in ("x[/]", "/models/foo[Q4].gguf", "evilname"):
        assert shown in text.stdout
    assert set(names) <= {row["name"] for row in data["models"]}
