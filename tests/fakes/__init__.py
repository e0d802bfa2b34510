"""Fakes that stand in for model servers over real loopback sockets (tests and bench scripts)."""

from tests.fakes.ollama_server import DEFAULT_MODELS, FakeModel, FakeOllama, Fault, RecordedRequest

__all__ = ["DEFAULT_MODELS", "FakeModel", "FakeOllama", "Fault", "RecordedRequest"]
