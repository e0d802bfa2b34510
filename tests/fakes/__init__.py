"""Fakes that stand in for model servers: over real loopback sockets (FakeOllama) or in-process
(ScriptedBackend), for tests and bench scripts."""

from tests.fakes.ollama_server import FakeOllama
from tests.fakes.ollama_wire import ANSWER_WORDS, DEFAULT_MODELS, FakeModel, Fault, RecordedRequest
from tests.fakes.scripted_backend import Script, ScriptedBackend

__all__ = [
    "ANSWER_WORDS",
    "DEFAULT_MODELS",
    "FakeModel",
    "FakeOllama",
    "Fault",
    "RecordedRequest",
    "Script",
    "ScriptedBackend",
]
