"""Helpers shared by the integration tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from nemo_tui.backends.base import StreamEvent
from nemo_tui.backends.embedded import WORKER_MODULE
from nemo_tui.backends.llama_worker import WorkerSettings

SERVER_CONTEXT = 2048
"""The context the llama-server fixture is started with."""
SERVER_KEY = "integration-test-key"
"""The API key the llama-server fixture wants."""
_SERVER_START_DEADLINE_S = 60.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def close_stream(stream: AsyncIterator[StreamEvent]) -> None:
    """Close an answer stream early, as the engine does when the user cancels."""
    assert isinstance(stream, AsyncGenerator)
    await stream.aclose()


def missing_requirement(reason: str) -> None:
    """Skip a test whose real server or model is not installed; in CI, fail it instead.

    CI installs everything the README's test command installs, so a missing part there is a
    broken set-up, not a reason to pass.
    """
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it)")
    pytest.skip(reason)


@dataclass
class LlamaServer:
    """A real llama.cpp llama-server (xllamacpp) serving a GGUF model in a process of its own."""

    process: subprocess.Popen[bytes]
    base_url: str
    """The OpenAI API root, `http://127.0.0.1:PORT/v1`."""
    log: Path

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash or the OOM killer would."""
        self.process.kill()
        self.process.wait(timeout=10)
        self._close_pipes()

    def stop(self) -> None:
        """Close its stdin, which ends it; kill it if it lingers."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


def start_llama_server(
    model: Path, log: Path, *, n_ctx: int = SERVER_CONTEXT, sleep_idle_s: int = -1
) -> LlamaServer:
    """Start llama-server on a free loopback port and wait until it answers.

    It runs as nemo-tui's llama.cpp worker, which is xllamacpp's llama-server with its settings
    read from stdin; it wants `SERVER_KEY` on every request.
    """
    settings = WorkerSettings(
        model_path=str(model),
        api_key=SERVER_KEY,
        n_ctx=n_ctx,
        n_batch=512,
        n_ubatch=512,
        sleep_idle_s=sleep_idle_s,
    )
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(settings.to_json().encode() + b"\n")
    process.stdin.flush()
    reply = json.loads(process.stdout.readline() or b"{}")
    if "url" not in reply:
        LlamaServer(process, "", log).kill()
        pytest.fail(f"llama-server did not start: {reply} {log.read_text(errors='replace')}")
    server = LlamaServer(process, f"{reply['url']}/v1", log)
    deadline = time.monotonic() + _SERVER_START_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{reply['url']}/health", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    pytest.fail(f"llama-server did not answer within {_SERVER_START_DEADLINE_S:.0f} s")
