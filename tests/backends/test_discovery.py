"""Building backends from the config, probing them together, and describing the result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from nemo_tui import config as cfg
from nemo_tui.backends import discovery
from nemo_tui.backends.base import (
    Backend,
    BackendHealth,
    ChatMessage,
    GenerationOptions,
    InstalledModel,
    LoadedModel,
    StreamEnd,
    StreamEvent,
)
from nemo_tui.backends.discovery import build_backends, describe_health, probe_all
from nemo_tui.backends.gemini import GeminiBackend
from nemo_tui.backends.ollama import OllamaBackend
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.errors import ConfigError

from .support import MockServer, refuse


class FakeBackend:
    """A backend whose probe answers, fails or hangs as the test says."""

    local = True

    def __init__(self, name: str, *, health: str = "up") -> None:
        self.name = name
        self.url = f"fake://{name}"
        self._health = health

    async def health(self) -> BackendHealth:
        if self._health == "raise":
            raise RuntimeError("probe exploded")
        if self._health == "hang":
            await asyncio.Event().wait()
        return BackendHealth(self.name, self.url, up=True)

    async def list_installed(self) -> list[InstalledModel]:
        return []

    async def list_loaded(self) -> list[LoadedModel]:
        return []

    async def model_metadata(self, model: str) -> None:
        return None

    async def preload(self, model: str, options: GenerationOptions) -> None:
        return None

    async def unload(self, model: str) -> float | None:
        return None

    async def stream_chat(
        self, model: str, messages: list[ChatMessage], options: GenerationOptions
    ) -> AsyncIterator[StreamEvent]:
        yield StreamEnd()

    async def tokenize(self, model: str, text: str) -> list[int] | None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture(autouse=True)
def no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the embedded backend can run here must not change these tests."""
    monkeypatch.setattr(discovery, "_embedded_backend", lambda config: None)


def with_backends(**sections: object) -> cfg.Config:
    return cfg.Config(backends=cfg.Backends(**sections))  # type: ignore[arg-type]


def test_defaults_give_ollama_on_its_default_address_only() -> None:
    [ollama] = build_backends(cfg.Config())
    assert isinstance(ollama, OllamaBackend)
    assert ollama.url == "http://127.0.0.1:11434"
    assert ollama.keep_alive == "30m"


def test_defaults_honour_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "0.0.0.0:11999")
    [ollama] = build_backends(cfg.Config())
    assert isinstance(ollama, OllamaBackend)
    assert ollama.url == "http://127.0.0.1:11999"


def test_a_bad_ollama_host_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:99999")
    with pytest.raises(ConfigError, match=r"^\$OLLAMA_HOST: 'gpu-box:99999' has the port"):
        build_backends(cfg.Config())


def test_a_bad_ollama_host_does_not_matter_when_a_url_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "::::")
    [ollama] = build_backends(with_backends(ollama=cfg.OllamaBackend(url="gpu-box:11500")))
    assert isinstance(ollama, OllamaBackend)
    assert ollama.url == "http://gpu-box:11500"


def test_gemini_joins_last_when_its_key_is_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    names = [b.name for b in build_backends(cfg.Config())]
    assert names == ["ollama", "gemini"]


def test_a_key_in_the_config_file_also_enables_gemini() -> None:
    config = with_backends(gemini=cfg.GeminiBackend(api_key="AIza-test", model="gemini-2.5-flash"))
    gemini = build_backends(config)[-1]
    assert isinstance(gemini, GeminiBackend)
    assert gemini.model == "gemini-2.5-flash"


async def test_the_gemini_variable_wins_over_a_key_in_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-from-env")
    server = MockServer({("GET", "/v1beta/models/gemini-3.5-flash"): (200, {"version": "001"})})
    config = with_backends(
        ollama=cfg.OllamaBackend(enabled=False),
        embedded=cfg.EmbeddedBackend(enabled=False),
        gemini=cfg.GeminiBackend(api_key="AIza-from-file"),
    )
    [gemini] = build_backends(config, transports={"gemini": server.transport()})
    assert (await gemini.health()).up
    assert server.requests[0].headers["x-goog-api-key"] == "AIza-from-env"


def test_disabled_gemini_stays_out_even_with_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    config = with_backends(gemini=cfg.GeminiBackend(enabled=False))
    assert [b.name for b in build_backends(config)] == ["ollama"]


def test_everything_enabled_comes_in_fallback_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test")
    monkeypatch.setattr(discovery, "_embedded_backend", lambda config: FakeBackend("embedded"))
    config = with_backends(openai=cfg.OpenAIBackend(enabled=True))
    assert [b.name for b in build_backends(config)] == ["ollama", "openai", "embedded", "gemini"]


def test_disabled_backends_are_not_built() -> None:
    config = with_backends(
        ollama=cfg.OllamaBackend(enabled=False), embedded=cfg.EmbeddedBackend(enabled=False)
    )
    assert build_backends(config) == []


async def test_the_openai_key_comes_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLAMA_API_KEY", "sk-from-env")
    server = MockServer({("GET", "/health"): (200, {"status": "ok"})})
    config = with_backends(
        ollama=cfg.OllamaBackend(enabled=False),
        openai=cfg.OpenAIBackend(
            enabled=True, url="http://127.0.0.1:9931/v1", api_key_env="LLAMA_API_KEY"
        ),
    )
    [openai] = build_backends(config, transports={"openai": server.transport()})
    assert isinstance(openai, OpenAICompatBackend)
    await openai.health()
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"
    assert "sk-from-env" not in repr(openai)


async def test_probe_all_reports_each_backend_through_its_transport() -> None:
    ollama = MockServer({("GET", "/api/version"): (200, {"version": "0.12.3"})})
    config = with_backends(openai=cfg.OpenAIBackend(enabled=True))
    backends = build_backends(
        config,
        transports={"ollama": ollama.transport(), "openai": httpx.MockTransport(refuse)},
    )
    healths = await probe_all(backends)
    assert [(h.backend, h.up) for h in healths] == [("ollama", True), ("openai", False)]
    assert healths[0].version == "0.12.3"


async def test_probe_all_never_raises() -> None:
    backends: list[Backend] = [
        FakeBackend("fine"),
        FakeBackend("broken", health="raise"),
        FakeBackend("stuck", health="hang"),
    ]
    healths = await probe_all(backends, timeout_s=0.01)
    assert [(h.backend, h.up) for h in healths] == [
        ("fine", True),
        ("broken", False),
        ("stuck", False),
    ]
    assert healths[1].detail == "probe failed: probe exploded"
    assert healths[2].detail == "no answer within 10 ms"
    assert healths[2].url == "fake://stuck"


def test_describe_health_says_clearly_what_is_up_and_what_is_down() -> None:
    lines = describe_health(
        [
            BackendHealth("ollama", "http://127.0.0.1:11434", up=True, version="0.12.3"),
            BackendHealth(
                "ollama",
                "http://127.0.0.1:11434",
                up=False,
                detail="connection refused — start it with `ollama serve`",
            ),
        ]
    )
    assert lines == [
        "ollama  up  v0.12.3  http://127.0.0.1:11434",
        "ollama  down  connection refused — start it with `ollama serve`",
    ]


def test_describe_health_aligns_names_and_shows_details() -> None:
    lines = describe_health(
        [
            BackendHealth("ollama", "http://127.0.0.1:11434", up=False),
            BackendHealth("openai", "http://127.0.0.1:8080/v1", up=True, detail="serves qwen"),
            BackendHealth(
                "gemini", "https://g", up=False, detail="no API key: set $GEMINI_API_KEY"
            ),
            BackendHealth("embedded", "/models/smollm2.gguf", up=True, version="b6500"),
        ]
    )
    assert lines == [
        "ollama    down  unreachable at http://127.0.0.1:11434",
        "openai    up  serves qwen  http://127.0.0.1:8080/v1",
        "gemini    down  no API key: set $GEMINI_API_KEY",
        "embedded  up  b6500  /models/smollm2.gguf",
    ]
