"""An unattended dashboard stays quiet: with its gauges ticking on their own clock and nothing
changing, it writes nothing to its terminal once the question box's cursor stops blinking, and
a key brings the blink back."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import TextArea

from nemo_tui.core.memory.profile import MemoryProfile
from nemo_tui.ui.widgets import query_pane
from tests.ui.support import FixedSampler, make_rig, started
from tests.ui.terminal import Terminal

SIZE = (120, 40)
GAUGE_INTERVAL_S = 0.05
BLINK_S = 1.0
"""The cursor's blink time in these tests: two blinks (they come every 0.5 s) and it stops."""


class CountingSampler(FixedSampler):
    """A machine whose memory stays put, counting how often it was sampled."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    def sample(self) -> MemoryProfile:
        """The same profile, counted."""
        self.samples += 1
        return super().sample()


@pytest.fixture(autouse=True)
def short_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_pane, "CURSOR_BLINK_S", BLINK_S)


async def test_an_idle_dashboard_writes_nothing_once_the_cursor_stops_blinking(
    tmp_path: Path,
) -> None:
    sampler = CountingSampler()
    rig = make_rig(
        tmp_path,
        sampler=sampler,
        config_text=f"monitor:\n  gauge_interval_s: {GAUGE_INTERVAL_S}\n",
    )
    terminal = Terminal.attach(rig.app, SIZE)
    async with rig.app.run_test(size=SIZE) as pilot:
        await started(pilot)
        area = rig.app.screen.query_one("#query-input", TextArea)
        await pilot.pause(BLINK_S + 0.2)
        terminal.clear_counts()
        ticks = sampler.samples
        await pilot.pause(20 * GAUGE_INTERVAL_S)
        assert sampler.samples > ticks  # the gauges kept sampling
        assert terminal.bytes_written == 0, terminal.report()

        assert not area.cursor_blink
        await pilot.press("x")
        assert area.cursor_blink  # typing brings the blink back…
        await pilot.pause(BLINK_S + 0.2)
        assert not area.cursor_blink  # …until the keys stop for as long again
        terminal.clear_counts()
        await pilot.pause(20 * GAUGE_INTERVAL_S)
        assert terminal.bytes_written == 0, terminal.report()
