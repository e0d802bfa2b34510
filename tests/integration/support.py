"""Helpers shared by the integration tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator, AsyncIterator

from nemo_tui.backends.base import StreamEvent

SERVER_CONTEXT = 2048
"""The context the llama-cpp-python server is started with."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def close_stream(stream: AsyncIterator[StreamEvent]) -> None:
    """Close an answer stream early, as the engine does when the user cancels."""
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()
