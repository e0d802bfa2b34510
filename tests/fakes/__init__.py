"""Fakes for tests and bench scripts: model servers over real loopback sockets (FakeOllama) or
in-process (ScriptedBackend), and finished-query records (`query_records`)."""

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
