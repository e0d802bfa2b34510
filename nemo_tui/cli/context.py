"""What every subcommand starts from: the loaded config, a memory sampler and the model catalog."""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from nemo_tui.config import Config, load_config
from nemo_tui.core.memory.profile import (
    MemorySampler,
    SimulatedGpuSampler,
    SimulatedSampler,
    SystemSampler,
    parse_simulation,
)
from nemo_tui.errors import UsageError
from nemo_tui.units import parse_size_mb

if TYPE_CHECKING:
    from nemo_tui.core.models.catalog import Catalog, ModelSpec
    from nemo_tui.core.models.complexity import Complexity
    from nemo_tui.core.models.recommender import RecommendationRequest


@dataclass(frozen=True)
class CommandContext:
    """The shared inputs of a subcommand."""

    config: Config
    config_path: Path | None
    sampler: MemorySampler

    @cached_property
    def catalog(self) -> Catalog:
        """The model catalog from the config, built on first use (the dashboard's first frame
        does without it)."""
        from nemo_tui.core.models.catalog import build_catalog

        return build_catalog(self.config)

    def recommendation_request(
        self, complexity: Complexity, prompt_tokens: int | None = None
    ) -> RecommendationRequest:
        """What the recommender needs for a command that does not probe the backends: the
        catalog, and which backends cannot answer whatever they would say."""
        from nemo_tui.backends.discovery import unusable_backends
        from nemo_tui.core.models.recommender import RecommendationRequest

        return RecommendationRequest(
            complexity,
            self.catalog,
            prompt_tokens=prompt_tokens,
            unusable=unusable_backends(self.config),
        )


def make_sampler(simulate_memory: str | None, simulate_gpu: str | None) -> MemorySampler:
    """The real sampler, a simulated machine for `--simulate-memory`, or this machine's live
    memory with a simulated GPU for `--simulate-gpu` alone.

    Raises:
        UsageError: a size cannot be parsed.
    """
    gpu = parse_size_mb(simulate_gpu) if simulate_gpu is not None else None
    if simulate_memory is not None:
        total, available = parse_simulation(simulate_memory)
        return SimulatedSampler(total, available, gpu)
    if gpu is not None:
        return SimulatedGpuSampler(gpu)
    return SystemSampler()


def make_context(args: argparse.Namespace) -> CommandContext:
    """Build the context from the global options.

    Raises:
        ConfigError: the config file is missing or invalid.
        UsageError: a simulation size cannot be parsed.
    """
    loaded = load_config(args.config)
    sampler = make_sampler(args.simulate_memory, args.simulate_gpu)
    return CommandContext(loaded.config, loaded.path, sampler)


def data_file(text: str | None) -> Path | None:
    """The file given to `--data`, checked before any work starts.

    Raises:
        UsageError: the path does not name an existing file.
    """
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"no such data file: {path}", fix="check the path given to --data")
    return path


def known_model(name: str, catalog: Catalog) -> ModelSpec:
    """The catalog entry for a model named on the command line.

    Raises:
        UsageError: no model has that name; the fix names the closest one and lists them all.
    """
    spec = catalog.get(name)
    if spec is not None:
        return spec
    names = catalog.names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise UsageError(f"unknown model '{name}'", fix=f"{hint}known models: {', '.join(names)}")
