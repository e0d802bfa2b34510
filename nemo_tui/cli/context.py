"""What every subcommand starts from: the loaded config, a memory sampler and the model catalog."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from nemo_tui.config import Config, load_config
from nemo_tui.core.catalog import Catalog, build_catalog
from nemo_tui.core.memory import MemorySampler, SimulatedSampler, SystemSampler, parse_simulation
from nemo_tui.units import parse_size_mb


@dataclass(frozen=True)
class CommandContext:
    """The shared inputs of a subcommand."""

    config: Config
    config_path: Path | None
    sampler: MemorySampler
    catalog: Catalog


def make_sampler(simulate_memory: str | None, simulate_gpu: str | None) -> MemorySampler:
    """The real sampler, or a simulated machine when `--simulate-memory` was given.

    Raises:
        UsageError: a size cannot be parsed.
    """
    if simulate_memory is None and simulate_gpu is None:
        return SystemSampler()
    available: float | None
    if simulate_memory is None:
        real = SystemSampler().sample()
        total, available = real.total_mb, real.available_mb
    else:
        total, available = parse_simulation(simulate_memory)
    gpu = parse_size_mb(simulate_gpu) if simulate_gpu else None
    return SimulatedSampler(total, available, gpu)


def make_context(args: argparse.Namespace) -> CommandContext:
    """Build the context from the global options.

    Raises:
        ConfigError: the config file is missing or invalid.
        UsageError: a simulation size cannot be parsed.
    """
    loaded = load_config(args.config)
    sampler = make_sampler(args.simulate_memory, args.simulate_gpu)
    return CommandContext(loaded.config, loaded.path, sampler, build_catalog(loaded.config))
