"""API keys over a real HTTP stack: a key httpx refuses to send is never quoted back."""

from __future__ import annotations

import pytest

from nemo_tui.backends.base import BackendError
from nemo_tui.backends.openai_compat import OpenAICompatBackend
from nemo_tui.config import Config, parse_config
from tests.fakes import FakeOllama

# `integration` goes on the test that sends a key over HTTP (see tests/conftest.py).

BROKEN_KEY = "sk-live-0123456789\rabcdef"
"""A key with a carriage return inside: stripping cannot mend it, and HTTP forbids it."""


@pytest.mark.integration
async def test_a_key_http_cannot_carry_is_reported_without_quoting_it(
    fake_ollama: FakeOllama,
) -> None:
    openai = OpenAICompatBackend(f"{fake_ollama.url}/v1", api_key=BROKEN_KEY)
    try:
        health = await openai.health()
        with pytest.raises(BackendError) as caught:
            await openai.tokenize("m", "hello")
    finally:
        await openai.aclose()

    assert not health.up
    assert "header value" in health.detail
    for text in (health.detail, caught.value.one_line(), repr(caught.value)):
        assert "0123456789" not in text and "abcdef" not in text


def test_the_config_repr_masks_the_key() -> None:
    config = parse_config("backends:\n  gemini:\n    api_key: AIza-secret-value\n")

    assert "AIza-secret-value" not in repr(config)
    assert "api_key='***'" in repr(config.backends.gemini)
    assert "api_key=None" in repr(Config().backends.gemini)
