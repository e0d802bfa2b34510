"""Garbage collection pauses for start-up and for a streaming answer, and always comes back."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from nemo_tui.ui.collector import Pause, pause_collection, resume_collection
from nemo_tui.ui.widgets.query_pane import QueryPane
from tests.fakes import Script
from tests.ui.support import make_rig, settle, started


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    yield
    for reason in Pause:
        resume_collection(reason)
    gc.unfreeze()
    assert gc.isenabled()


def test_collection_runs_again_only_when_no_pause_is_held() -> None:
    pause_collection(Pause.START_UP)
    pause_collection(Pause.ANSWER)
    assert not gc.isenabled()
    resume_collection(Pause.ANSWER)
    assert not gc.isenabled()  # start-up still holds it
    resume_collection(Pause.START_UP)
    assert gc.isenabled()


def test_ending_start_up_freezes_what_start_up_made() -> None:
    gc.unfreeze()
    pause_collection(Pause.START_UP)
    resume_collection(Pause.START_UP)
    assert gc.get_freeze_count() > 0


def test_releasing_a_pause_that_is_not_held_changes_nothing() -> None:
    resume_collection(Pause.ANSWER)
    assert gc.isenabled()
    pause_collection(Pause.START_UP)
    resume_collection(Pause.ANSWER)
    assert not gc.isenabled()


async def test_the_dashboard_resumes_collection_once_it_is_up(tmp_path: Path) -> None:
    pause_collection(Pause.START_UP)  # as `nemo-tui` does before importing the dashboard
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await settle(pilot, gc.isenabled)


async def test_collection_waits_while_an_answer_streams(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.backend.script = Script(tokens=["one ", "two ", "three"], delay_s=0.2)
    async with rig.app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press(*"count", "ctrl+s")
        pane = rig.app.screen.query_one(QueryPane)
        await settle(pilot, lambda: pane.answer != "")
        assert not gc.isenabled()
        await settle(pilot, lambda: not pane.running)
        assert gc.isenabled()
