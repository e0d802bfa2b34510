"""The recommendation follows the machine and says why it changed; troubleshooting offers fixes."""

from __future__ import annotations

from pathlib import Path

from nemo_tui.ui.widgets.memory_history import MemoryHistory
from nemo_tui.ui.widgets.query_pane import QueryPane
from nemo_tui.ui.widgets.recommendation_panel import RecommendationPanel
from nemo_tui.ui.widgets.troubleshooting_panel import TroubleshootingPanel
from tests.ui.support import FixedSampler, make_rig, profile, settle, started


async def test_a_changed_recommendation_is_announced_and_can_be_accepted(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        before = rig.engine.recommend_now().model
        panel = rig.app.screen.query_one(RecommendationPanel)
        assert before in str(panel.render())
        rig.sampler.set_available(1.5)  # too little for the medium tier
        await pilot.press("f5")
        await settle(pilot, lambda: any("Recommendation changed" in n for n in rig.notes))
        after = rig.engine.recommend_now().model
        assert after != before
        note = next(n for n in rig.notes if "Recommendation changed" in n)
        assert f"{before} → {after}" in note
        await pilot.press("f3")
        assert rig.app.screen.query_one(QueryPane).model_override == after


async def test_high_memory_is_diagnosed_and_the_fix_key_clears_the_cache(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, sampler=FixedSampler(profile(16, 12)))
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        trouble = rig.app.screen.query_one(TroubleshootingPanel)
        assert not trouble.symptoms
        rig.app.screen.query_one(QueryPane).choose_model("tinyllama")
        await pilot.press("f4")
        await settle(pilot, lambda: ("preload", "tinyllama") in rig.backend.calls)
        rig.sampler.set_available(0.8)  # 95 % used
        await pilot.press("f5")
        await settle(pilot, lambda: bool(trouble.symptoms))
        assert trouble.has_class("-active")
        assert "ctrl+f" in str(trouble.render())
        await pilot.press("ctrl+f")
        await settle(pilot, lambda: ("unload", "tinyllama") in rig.backend.calls)


async def test_panels_and_plot_hide_and_show_by_key(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        side = rig.app.screen.query_one("#side")
        plot = rig.app.screen.query_one(MemoryHistory)
        assert side.display
        assert not plot.display  # no room for it at 80x24 until asked
        await pilot.press("f7")
        assert plot.display
        await pilot.press("f6")
        assert not side.display
        await pilot.press("f6")
        assert side.display
        await pilot.press("f7")
        assert not plot.display
