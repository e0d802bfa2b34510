"""A bad Gemini key seen through the engine: a clear error or a fallback, never the key."""

from __future__ import annotations

import httpx

from nemo_tui.backends.gemini import GeminiBackend
from nemo_tui.config import Config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.engine import Engine
from nemo_tui.events import Done, Failed, Fallback, Query
from tests.fakes import ScriptedBackend

SECRET = "AIza-test-secret-value"
INVALID_KEY = {
    "error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            }
        ],
    }
}


def rejecting_gemini() -> GeminiBackend:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # the health probe reads the model
            return httpx.Response(200, json={"name": "models/gemini-3.5-flash"})
        return httpx.Response(400, json=INVALID_KEY)

    return GeminiBackend(
        "gemini-3.5-flash",
        api_key=SECRET,
        base_url="https://gemini.test/v1beta",
        transport=httpx.MockTransport(handler),
    )


async def test_bad_key_falls_back_to_a_local_model_and_hides_the_key() -> None:
    embedded = ScriptedBackend()
    engine = Engine(
        Config(),
        sampler=SimulatedSampler(16 * 1024),
        backends=[embedded, rejecting_gemini()],
        monitor=False,
    )
    await engine.start()
    try:
        handle = engine.submit(Query("hello", model="gemini-3.5-flash"))
        events = [event async for event in handle.events()]
        after = await engine.submit(Query("and again")).result()
    finally:
        await engine.aclose()
    fallback = next(e for e in events if isinstance(e, Fallback))
    assert fallback.from_model == "gemini-3.5-flash"
    assert "API key" in fallback.why and SECRET not in fallback.why
    assert isinstance(events[-1], Done) and events[-1].backend == "embedded"
    assert isinstance(after, Done)


async def test_bad_key_with_nothing_to_fall_back_to_says_how_to_fix_it() -> None:
    engine = Engine(
        Config(), sampler=SimulatedSampler(1024, 100), backends=[rejecting_gemini()], monitor=False
    )
    await engine.start()
    try:
        result = await engine.submit(Query("hello")).result()
    finally:
        await engine.aclose()
    assert isinstance(result, Failed)
    assert result.error.title == "Authentication failed"
    assert "GEMINI_API_KEY" in result.error.fix
    assert SECRET not in result.error.one_line()
