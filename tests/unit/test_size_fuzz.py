"""Fuzzing the memory sizes of `--simulate-memory` and `--simulate-gpu`: any text gives a size a
machine can have, or a `UsageError` that quotes it and says how to write one."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from nemo_tui.cli.context import make_sampler
from nemo_tui.core.memory.profile import parse_simulation
from nemo_tui.errors import UsageError
from nemo_tui.units import MAX_SIZE_MB, parse_size_mb

SIZE_TEXT = st.one_of(
    st.text(max_size=16),
    st.text(alphabet="0123456789.:-+eE kKmMgGtTiIbB", max_size=16),
    st.builds(
        "{}{}{}".format,
        st.floats(allow_nan=True, allow_infinity=True).map(str)
        | st.integers(min_value=0, max_value=10**30).map(str)
        | st.sampled_from(["٣", "１２", "0.", ".5", "1_000", "9" * 400]),
        st.sampled_from(["", " ", "\t", "\n"]),
        st.sampled_from(["", "B", "KB", "MiB", "gb", "GIB", "T", "TB", "PB", "XB", "G B"]),
    ),
)
"""Free text, text made of what sizes are made of, and numbers of every size with a unit."""


def assert_a_machine_size(mb: float) -> None:
    assert math.isfinite(mb) and 0 < mb <= MAX_SIZE_MB


def assert_explained(error: UsageError, text: str) -> None:
    assert f"'{text}'" in error.message
    assert error.fix


@given(SIZE_TEXT)
def test_any_size_text_is_a_machine_size_or_explained(text: str) -> None:
    try:
        mb = parse_size_mb(text)
    except UsageError as error:
        assert_explained(error, text)
        return
    assert_a_machine_size(mb)


SIMULATED_MEMORY = st.one_of(SIZE_TEXT, st.tuples(SIZE_TEXT, SIZE_TEXT).map(":".join))


@given(SIMULATED_MEMORY)
def test_any_simulated_memory_is_a_machine_or_explained(text: str) -> None:
    try:
        total, available = parse_simulation(text)
    except UsageError as error:
        assert_explained(error, text)
        return
    assert_a_machine_size(total)
    assert 0 < available <= total


@given(SIMULATED_MEMORY | st.sampled_from(["8GB", "4GB:1.5GB"]), SIZE_TEXT | st.none())
# An empty `--simulate-gpu` once meant no GPU at all, without a word.
@example("8GB", "")
def test_the_simulation_flags_give_a_simulated_machine_or_say_why(
    memory: str, gpu: str | None
) -> None:
    try:
        sampler = make_sampler(memory, gpu)
    except UsageError as error:
        assert any(f"'{text}'" in error.message for text in (memory, gpu))
        return
    sampled = sampler.sample()
    assert sampled.simulated
    assert_a_machine_size(sampled.total_mb)
    assert 0 < sampled.available_mb <= sampled.total_mb
    assert len(sampled.gpus) == (gpu is not None)
    for simulated_gpu in sampled.gpus:
        assert_a_machine_size(simulated_gpu.total_mb)
