"""The tests' fake Ollama server in a process of its own, for benchmarks.

A benchmark that measures a client must not share its interpreter (and GIL) with the server it
talks to. `python bench/fake_ollama_process.py [--tokens N] [--tokens-per-s R]` runs
`tests.fakes.FakeOllama`, prints its URL on the first line and serves until its standard input
closes; `start` and `stop` do that from a benchmark.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


DEFAULT_TOKENS = 24


def start(
    *, tokens: int = DEFAULT_TOKENS, tokens_per_s: float = 0.0
) -> tuple[subprocess.Popen[str], str]:
    """Start the server in a child process; return it and its URL.

    Args:
        tokens: Answer length.
        tokens_per_s: Streaming rate; 0 streams as fast as possible.
    """
    argv = [sys.executable, __file__, "--tokens", str(tokens), "--tokens-per-s", str(tokens_per_s)]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    url = child.stdout.readline().strip()
    if not url.startswith("http://"):
        child.kill()
        raise SystemExit(f"the fake Ollama server did not start (said {url!r})")
    return child, url


def stop(child: subprocess.Popen[str]) -> None:
    """Close the child's standard input, which ends it."""
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()
    child.wait(timeout=10)
    child.stdout.close()


def serve(tokens: int, tokens_per_s: float) -> None:
    """Run the fake server, print its URL, stop when standard input closes."""
    from tests.fakes import FakeOllama

    with FakeOllama(answer_tokens=tokens, tokens_per_s=tokens_per_s, cold_load_s=0.0) as server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--tokens-per-s", type=float, default=0.0)
    arguments = parser.parse_args()
    serve(arguments.tokens, arguments.tokens_per_s)
