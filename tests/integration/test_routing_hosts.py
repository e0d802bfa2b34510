"""Routing across the lab's hosts, with real servers on loopback: this machine's Ollama and two
other hosts, each an Ollama fixture with a node_exporter page of its own memory. This machine's
memory is simulated, so each case can make it short or roomy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from nemo_tui.backends.discovery import build_backends
from nemo_tui.config import Config, parse_config
from nemo_tui.core.memory.profile import SimulatedSampler
from nemo_tui.core.models.complexity import Complexity
from nemo_tui.engine import Engine
from nemo_tui.events import Done, Failed, Fallback, Query, Recommended
from tests.fakes import DEFAULT_MODELS, FakeModel, FakeOllama, Fault, ScriptedBackend
from tests.hosts.servers import GIB, FixtureServer, node_page, running_node_exporter
from tests.integration.support import SERVER_KEY, LlamaServer

TINYLLAMA = FakeModel("tinyllama", weights_mb=608.0)
PHI3 = next(model for model in DEFAULT_MODELS if model.name == "phi3:mini")
BIOMISTRAL = FakeModel(
    "biomistral:7b",
    weights_mb=4370.0,
    parameter_size="7.2B",
    parameter_count=7_241_732_096,
    context_length=32768,
    block_count=32,
    embedding_length=4096,
    head_count=32,
    head_count_kv=8,
)
HARD = "Compare these treatment protocols step by step and explain the statistics in depth"


@dataclass
class Lab:
    local: FakeOllama
    big: FakeOllama
    small: FakeOllama
    pages: FixtureServer

    def set_memory(self, host: str, total_gb: float, available_gb: float) -> None:
        self.pages.serve(
            f"/{host}/metrics", node_page(total=total_gb * GIB, available=available_gb * GIB)
        )

    def config(self) -> Config:
        return parse_config(self.config_text())

    def config_text(self) -> str:
        return f"""
backends:
  ollama:
    url: {self.local.url}
  embedded:
    enabled: false
  gemini:
    enabled: false
hosts:
  - name: big-box
    ollama_url: {self.big.url}
    node_exporter_url: {self.pages.url}/big-box/metrics
  - name: small-box
    ollama_url: {self.small.url}
    node_exporter_url: {self.pages.url}/small-box/metrics
"""


@pytest.fixture
def lab() -> Iterator[Lab]:
    pages = FixtureServer()
    with (
        FakeOllama([TINYLLAMA, PHI3]) as local,
        FakeOllama([PHI3, BIOMISTRAL]) as big,
        FakeOllama([PHI3, BIOMISTRAL]) as small,
    ):
        lab = Lab(local, big, small, pages)
        lab.set_memory("big-box", 64, 50)
        lab.set_memory("small-box", 32, 20)
        yield lab
    pages.close()


async def lab_engine(
    lab: Lab, total_gb: float, available_gb: float, *, config: Config | None = None
) -> Engine:
    """An engine on a simulated machine of this size, with the lab's hosts (or `config`'s) and
    a cloud model."""
    config = config or lab.config()
    cloud = ScriptedBackend("gemini", ("gemini-3.5-flash",), local=False)
    engine = Engine(
        config,
        sampler=SimulatedSampler(total_gb * 1024, available_gb * 1024),
        backends=[*build_backends(config), cloud],
        monitor=False,
    )
    await engine.start()
    return engine


@pytest.fixture
async def engines() -> AsyncIterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        await engine.aclose()


async def ask(engine: Engine, query: Query) -> tuple[list[object], Done | Failed]:
    handle = engine.submit(query)
    events = [event async for event in handle.events()]
    final = events[-1]
    assert isinstance(final, Done | Failed), final
    return events, final


@pytest.mark.integration
async def test_this_machine_answers_when_the_model_fits_here(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 16, 12)
    engines.append(engine)
    _, done = await ask(engine, Query("hi", complexity=Complexity.LOW))
    assert isinstance(done, Done)
    assert (done.host, done.model) == ("local", "tinyllama")
    assert lab.local.requests_to("/api/chat")
    assert not lab.big.requests_to("/api/chat") and not lab.small.requests_to("/api/chat")


@pytest.mark.integration
async def test_a_short_machine_sends_the_query_to_the_host_with_the_most_room(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    events, done = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
    assert isinstance(done, Done)
    assert (done.host, done.model) == ("big-box", "biomistral:7b")
    recommended = next(e for e in events if isinstance(e, Recommended))
    assert recommended.host == "big-box"
    assert recommended.recommendation.reason.startswith("biomistral:7b on big-box: ")
    assert "local has " in recommended.recommendation.reason
    assert "biomistral:7b" in lab.big.loaded()
    # Room was made on big-box alone: this machine and small-box were not touched.
    assert not lab.small.requests_to("/api/generate") and not lab.small.requests_to("/api/chat")
    assert [m["host"] for m in engine.stats()["models"]["resident"]] == ["big-box"]  # type: ignore[index]


@pytest.mark.integration
async def test_a_host_where_the_model_is_already_loaded_wins(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    preloaded = await engine.preload("biomistral:7b", host="small-box")
    assert preloaded.ok, preloaded.message
    assert "biomistral:7b" in lab.small.loaded()
    events, done = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
    assert isinstance(done, Done)
    assert done.host == "small-box"
    recommended = next(e for e in events if isinstance(e, Recommended))
    assert ": loaded, " in recommended.recommendation.reason
    assert done.cache_hit is True


@pytest.mark.integration
async def test_a_host_down_before_the_answer_hands_the_query_to_the_next_host(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    lab.big.stop()
    events, done = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
    assert isinstance(done, Done)
    assert done.host == "small-box"
    fallback = next(e for e in events if isinstance(e, Fallback))
    assert fallback.to_host == "small-box" and fallback.to_model == "biomistral:7b"
    assert done.fallbacks == ("biomistral:7b on big-box",)


@pytest.mark.integration
async def test_a_host_going_down_mid_answer_keeps_the_partial_answer(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    # Loaded first, so the fault hits the answer rather than the load.
    assert (await engine.preload("biomistral:7b", host="big-box")).ok
    lab.big.fail_next(Fault.DROP, after_tokens=3)
    _, failed = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
    assert isinstance(failed, Failed)
    assert failed.partial_text and failed.model == "biomistral:7b"
    # Once text was shown the query is not restarted elsewhere.
    assert not lab.small.requests_to("/api/chat")


@pytest.mark.integration
async def test_when_every_host_is_short_the_cloud_answers(lab: Lab, engines: list[Engine]) -> None:
    lab.set_memory("big-box", 8, 1)
    lab.set_memory("small-box", 8, 1.5)
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    events, done = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
    assert isinstance(done, Done)
    assert (done.host, done.model) == ("cloud", "gemini-3.5-flash")
    recommended = next(e for e in events if isinstance(e, Recommended))
    assert recommended.recommendation.reason.endswith("no other host has room for it")


@pytest.mark.integration
async def test_a_query_pinned_to_a_host_runs_there(lab: Lab, engines: list[Engine]) -> None:
    engine = await lab_engine(lab, 16, 12)
    engines.append(engine)
    _, done = await ask(
        engine, Query("hi", model="phi3:mini", host="small-box", complexity=Complexity.LOW)
    )
    assert isinstance(done, Done)
    assert (done.host, done.model) == ("small-box", "phi3:mini")
    assert lab.small.requests_to("/api/chat") and not lab.local.requests_to("/api/chat")


@pytest.mark.integration
async def test_clearing_the_cache_leaves_other_hosts_models_alone(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 16, 12)
    engines.append(engine)
    assert (await engine.preload("phi3:mini")).ok
    assert (await engine.preload("phi3:mini", host="big-box")).ok
    cleared = await engine.clear_cache()
    assert cleared.evicted == ("phi3:mini",)
    assert "phi3:mini" not in lab.local.loaded()
    assert "phi3:mini" in lab.big.loaded()
    everywhere = await engine.clear_cache(all_hosts=True)
    assert everywhere.evicted == ("phi3:mini",)
    assert "phi3:mini" not in lab.big.loaded()


def test_the_lab_config_is_the_documented_interface() -> None:
    config = parse_config(
        "hosts:\n  - name: gpu-box\n    ollama_url: http://gpu-box:11434\n"
        "    openai_url: null\n    node_exporter_url: http://gpu-box:9100/metrics\n"
        "    cache_limit: 0.8\n"
    )
    assert msgspec.to_builtins(config.hosts) == [
        {
            "name": "gpu-box",
            "ollama_url": "http://gpu-box:11434",
            "openai_url": None,
            "node_exporter_url": "http://gpu-box:9100/metrics",
            "cache_limit": 0.8,
            "api_key_env": None,
        }
    ]
    assert config.local_host.name == "local"


@pytest.mark.integration
async def test_a_host_of_unknown_memory_is_used_only_when_pinned(
    lab: Lab, engines: list[Engine]
) -> None:
    with FakeOllama([PHI3, BIOMISTRAL]) as gateway:
        config = parse_config(
            lab.config_text() + f"  - name: gateway\n    ollama_url: {gateway.url}\n"
        )
        engine = await lab_engine(lab, 4, 1.2, config=config)
        engines.append(engine)
        _, routed = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
        assert isinstance(routed, Done) and routed.host == "big-box"
        events, pinned = await ask(
            engine, Query(HARD, model="biomistral:7b", host="gateway", complexity=Complexity.HIGH)
        )
        assert isinstance(pinned, Done)
        assert pinned.host == "gateway"
        assert gateway.requests_to("/api/chat")
        recommended = next(e for e in events if isinstance(e, Recommended))
        assert "its memory cannot be read here" in recommended.recommendation.reason
        refused = await engine.preload("phi3:mini", host="gateway")
        assert not refused.ok and "give it a node_exporter_url" in refused.message


@pytest.mark.integration
async def test_a_model_chosen_by_hand_that_only_another_host_has_runs_there(
    lab: Lab, engines: list[Engine]
) -> None:
    engine = await lab_engine(lab, 16, 12)
    engines.append(engine)
    recommended = engine.recommend_now(Complexity.LOW)
    assert recommended.model == "tinyllama"  # this machine's own pick: it fits here
    _, done = await ask(engine, Query("hi", model="biomistral:7b", complexity=Complexity.LOW))
    assert isinstance(done, Done)
    assert (done.host, done.model) == ("big-box", "biomistral:7b")
    assert not lab.local.requests_to("/api/chat")


@pytest.mark.integration
async def test_the_recommendation_shown_follows_routing(lab: Lab, engines: list[Engine]) -> None:
    engine = await lab_engine(lab, 4, 1.2)
    engines.append(engine)
    recommended = engine.recommend_now(Complexity.HIGH)
    assert recommended.model == "biomistral:7b"
    assert recommended.reason.startswith("biomistral:7b on big-box: ")


@pytest.mark.integration
async def test_a_lab_of_real_servers_in_one_dashboard(
    lab: Lab,
    llama_server: LlamaServer,
    own_llama_server: LlamaServer,
    engines: list[Engine],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two llama-servers and two Ollama fixtures with different memory as other hosts, and
    this machine read by a real node_exporter: every host is seen for what it is, each query
    goes where the rules send it, and a llama-server host answers when pinned."""
    monkeypatch.setenv("LAB_LLAMA_KEY", SERVER_KEY)
    lab.pages.serve("/llama-a/metrics", node_page(total=24 * GIB, available=20 * GIB))
    lab.pages.serve("/llama-b/metrics", node_page(total=8 * GIB, available=2 * GIB))
    with running_node_exporter(tmp_path / "node_exporter.log") as local_exporter:
        text = lab.config_text().replace(
            "hosts:\n", f"local_host:\n  node_exporter_url: {local_exporter}\nhosts:\n", 1
        )
        for name, server in (("llama-a", own_llama_server), ("llama-b", llama_server)):
            text += (
                f"  - name: {name}\n    openai_url: {server.base_url}\n"
                f"    api_key_env: LAB_LLAMA_KEY\n"
                f"    node_exporter_url: {lab.pages.url}/{name}/metrics\n"
            )
        engine = await lab_engine(lab, 4, 1.2, config=parse_config(text))
        engines.append(engine)
        statuses = {status.name: status for status in engine.host_statuses()}
        assert list(statuses) == ["local", "big-box", "small-box", "llama-a", "llama-b"]
        assert all(status.up for status in statuses.values()), statuses
        assert statuses["local"].reason is None  # its node_exporter answered too
        for name in ("llama-a", "llama-b"):
            memory = statuses[name].memory
            assert memory is not None and memory.source.startswith("node_exporter")
            assert [m.server for m in statuses[name].models] == ["openai"]
        assert statuses["llama-b"].memory is not None
        assert statuses["llama-b"].memory.total_mb == 8 * 1024
        # The hard query goes to the Ollama host with the most room for biomistral.
        _, routed = await ask(engine, Query(HARD, complexity=Complexity.HIGH))
        assert isinstance(routed, Done) and routed.host == "big-box"
        # A llama-server host answers with the model it serves when the query is pinned there.
        served = statuses["llama-a"].models[0].name
        _, pinned = await ask(engine, Query("Say hi.", model=served, host="llama-a", max_tokens=8))
        assert isinstance(pinned, Done), pinned
        assert (pinned.host, pinned.backend) == ("llama-a", "openai@llama-a")
        assert pinned.text
