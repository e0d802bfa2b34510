"""The query pane: answers stream in, Esc cancels, errors show with their fix, the app lives."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from nemo_tui.backends.base import OutOfMemory
from nemo_tui.core.text.text_file import SavedText
from nemo_tui.events import Done
from nemo_tui.ui.screens import main_query
from nemo_tui.ui.screens.model_menu import ModelMenu
from nemo_tui.ui.screens.path_prompt import PathPrompt
from nemo_tui.ui.widgets.model_picker import ModelPicker
from nemo_tui.ui.widgets.query_pane import QueryPane, describe_done
from tests.fakes import Script
from tests.ui.support import Rig, make_rig, settle, started


async def test_a_query_streams_into_the_answer_and_ends_with_stats(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.backend.script = Script(tokens=[f"word{i} " for i in range(40)], delay_s=0.001)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*"What is a page cache?")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert pane.answer == "".join(f"word{i} " for i in range(40))
        stats = str(pane.query_one("#query-stats").render())
        assert "tinyllama (ollama)" in stats
        assert "40 out" in stats
        assert "cold start" in stats
        assert rig.backend.prompts[-1].endswith("What is a page cache?")


def test_the_stats_line_claims_no_cache_hit_the_server_did_not_report() -> None:
    unknown = Done(
        query_id=1,
        model="qwen2.5-7b-instruct",
        backend="openai",
        text="Hi.",
        tokens_in=12,
        tokens_out=2,
        tokens_per_s=None,
        load_s=None,
        first_token_s=0.2,
        total_s=0.3,
        cache_hit=None,
        local=True,
        reduction_pct=0.0,
    )
    cloud = replace(unknown, model="gemini-3.5-flash", backend="gemini", local=False)

    assert str(describe_done(unknown)).endswith("cache hit unknown")
    assert "cache" not in str(describe_done(cloud)) and "cold" not in str(describe_done(cloud))


async def test_escape_cancels_and_keeps_the_partial_answer(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.backend.script = Script(tokens=[f"t{i} " for i in range(2000)], delay_s=0.005)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*"Tell me a long story")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: pane.answer.startswith("t0 t1 t2"))
        await pilot.press("escape")
        await settle(pilot, lambda: not pane.running)
        assert "Cancelled" in str(pane.query_one("#query-activity").render())
        assert pane.answer.startswith("t0 t1 t2")
        assert len(pane.answer.split()) < 2000
        # The question box keeps its text: Esc went to the query, not the editor.
        assert pane.current_query() is not None


async def test_an_engine_error_shows_with_its_fix_and_the_app_keeps_going(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.backend.script = Script(
        tokens=["partial ", "answer ", "lost"],
        error=OutOfMemory(
            "model runner has unexpectedly stopped",
            backend="ollama",
            fix="use a smaller context or model",
        ),
        error_after_tokens=2,
    )
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        pane.choose_model("tinyllama")  # a hand pick has no fallback to hide the error
        await pilot.press(*"Summarize this")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: pane.error_text != "")
        assert pane.error_text.startswith("Out of memory: model runner has unexpectedly stopped")
        assert "fix:" in pane.error_text
        assert pane.answer.startswith("partial answer")
        rig.backend.script = Script(tokens=["fine"])
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer == "fine")
        assert pane.error_text == ""


async def test_model_override_and_accepting_the_recommendation(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        picker = pane.query_one(ModelPicker)
        assert picker.value is None  # auto
        assert "auto (recommended)" in str(picker.render())
        assert pane.model_override is None
        await pilot.press("f3")
        recommended = rig.engine.recommend_now().model
        assert pane.model_override == recommended
        pane.choose_model("tinyllama")
        await pilot.press(*"hello")
        pane.refresh_plan()
        plan = str(pane.query_one("#query-plan").render())
        assert "tinyllama (your pick)" in plan
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        assert ("chat", "tinyllama") in rig.backend.calls


async def test_the_plan_preview_shows_how_much_the_prompt_shrinks(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    data = tmp_path / "sales.csv"
    data.write_text(
        "region,month,revenue\n" + "".join(f"north,{m},{m * 10}\n" for m in range(3000))
    )
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        pane.attach(data)
        await pilot.press(*"Which month had the highest revenue?")
        pane.refresh_plan()
        assert pane.plan is not None
        plan = str(pane.query_one("#query-plan").render())
        assert "complexity" in plan
        assert "tokens" in plan
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert type(rig.app.screen).__name__ == "PromptReview"
        await pilot.press("escape")


async def test_copy_and_save_the_answer(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.backend.script = Script(tokens=["**bold** answer"])
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = rig.app.screen.query_one(QueryPane)
        await pilot.press(*"hi")
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: not pane.running and pane.answer != "")
        await pilot.press("ctrl+g")
        assert rig.app.clipboard == "**bold** answer"
        target = tmp_path / "saved.md"
        await pilot.press("ctrl+o")
        await pilot.pause()
        field = rig.app.screen.query_one("#path-input")
        field.value = str(target)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(pilot, lambda: target.exists())
        assert target.read_text() == "**bold** answer"


async def test_the_model_is_picked_from_the_keyboard(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    app = rig.app
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = app.screen.query_one(QueryPane)
        picker = pane.query_one(ModelPicker)
        await pilot.press("shift+tab")  # from the question box back to the picker
        assert app.focused is picker

        await pilot.press("enter")
        await settle(pilot, lambda: isinstance(app.screen, ModelMenu))
        menu = app.screen.query_one(OptionList)
        labels = [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]
        assert labels[0] == "auto (recommended)"
        assert "tinyllama" in labels
        await pilot.press("home", *["down"] * labels.index("tinyllama"), "enter")
        await settle(pilot, lambda: pane.model_override == "tinyllama")
        assert "tinyllama" in str(picker.render())

        await pilot.press("space")  # opens again; Esc keeps the pick
        await settle(pilot, lambda: isinstance(app.screen, ModelMenu))
        assert app.screen.query_one(OptionList).highlighted == labels.index("tinyllama")
        await pilot.press("escape")
        await settle(pilot, lambda: not isinstance(app.screen, ModelMenu))
        assert pane.model_override == "tinyllama"

        await pilot.press("down")
        await settle(pilot, lambda: isinstance(app.screen, ModelMenu))
        await pilot.press("home", "enter")  # the first line is auto
        await settle(pilot, lambda: pane.model_override is None)
        assert "auto (recommended)" in str(picker.render())


async def answered(pilot: Pilot[None], rig: Rig, tokens: list[str]) -> QueryPane:
    """Ask a question and wait for the scripted answer."""
    rig.backend.script = Script(tokens=tokens)
    pane = rig.app.screen.query_one(QueryPane)
    await pilot.press(*"hi")
    await pilot.press("ctrl+s")
    await settle(pilot, lambda: not pane.running and pane.answer != "")
    return pane


async def submit_save_path(pilot: Pilot[None], path: Path) -> PathPrompt:
    """Open the save dialog (ctrl+o), type `path` and press Enter."""
    await pilot.press("ctrl+o")
    await settle(pilot, lambda: isinstance(pilot.app.screen, PathPrompt))
    prompt = pilot.app.screen
    assert isinstance(prompt, PathPrompt)
    prompt.query_one("#path-input", Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()
    return prompt


def problem_line(prompt: PathPrompt) -> str:
    return str(prompt.query_one("#path-problem", Static).render())


async def test_an_existing_file_is_replaced_only_after_a_second_enter(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    target = tmp_path / "notes.md"
    target.write_text("my notes")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await answered(pilot, rig, ["new answer"])

        prompt = await submit_save_path(pilot, target)
        assert rig.app.screen is prompt  # still asking
        assert f"{target} already exists: Enter again replaces it" in problem_line(prompt)
        await pilot.pause(0.1)
        assert target.read_text() == "my notes"

        await pilot.press("escape")  # changing one's mind keeps the file
        await settle(pilot, lambda: rig.app.screen is not prompt)
        assert target.read_text() == "my notes"

        prompt = await submit_save_path(pilot, target)
        assert target.read_text() == "my notes"
        await pilot.press("enter")
        await settle(pilot, lambda: target.read_text() == "new answer")
        await settle(pilot, lambda: f": Saved the answer to {target}." in rig.notes)


async def test_a_file_name_with_brackets_is_shown_as_written_in_the_dialog(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    target = tmp_path / "run[Q4] [b]x[$error].md"
    target.write_text("kept")
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await answered(pilot, rig, ["an answer"])

        prompt = await submit_save_path(pilot, target)

        assert f"{target} already exists" in problem_line(prompt)
        assert target.read_text() == "kept"


@pytest.mark.timeout(60)
async def test_a_fifo_is_refused_in_the_dialog_and_nothing_waits_on_it(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = await answered(pilot, rig, ["an answer"])

        prompt = await submit_save_path(pilot, fifo)
        assert rig.app.screen is prompt
        assert f"{fifo} is a FIFO (named pipe), not a regular file" in problem_line(prompt)
        await pilot.press("enter")  # a second Enter does not agree to anything here
        await pilot.pause()
        assert rig.app.screen is prompt
        await pilot.press("escape")
        await settle(pilot, lambda: rig.app.screen is not prompt)
        assert pane.answer == "an answer"


async def test_an_answer_with_a_lone_surrogate_is_saved_with_a_notice(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    target = tmp_path / "answer.md"
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = await answered(pilot, rig, ["broken \ud800 escape"])

        await submit_save_path(pilot, target)
        await settle(pilot, lambda: any("lone surrogates" in note for note in rig.notes))

        assert target.read_text(encoding="utf-8") == "broken \ufffd escape"
        note = next(note for note in rig.notes if "lone surrogates" in note)
        assert f"Saved the answer to {target}; 1 character(s)" in note
        assert pane.answer == "broken \ud800 escape"


async def test_the_answer_is_written_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(tmp_path)
    target = tmp_path / "answer.md"
    writing = threading.Event()
    release = threading.Event()
    writers: list[threading.Thread] = []
    real_save_text = main_query.save_text

    def slow_save_text(path: Path, text: str, *, replace: bool) -> SavedText:
        writers.append(threading.current_thread())
        writing.set()
        release.wait(timeout=10)  # bounded: on the event loop this would freeze the test
        return real_save_text(path, text, replace=replace)

    monkeypatch.setattr(main_query, "save_text", slow_save_text)
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await answered(pilot, rig, ["slow disk answer"])
        await submit_save_path(pilot, target)
        await settle(pilot, writing.is_set)

        await pilot.press("ctrl+g")  # the dashboard still answers keys while the file is written
        assert rig.app.clipboard == "slow disk answer"
        assert not target.exists()

        release.set()
        await settle(pilot, lambda: f": Saved the answer to {target}." in rig.notes)
    assert target.read_text() == "slow disk answer"
    assert writers and writers[0] is not threading.main_thread()


async def test_a_failed_save_names_the_path_and_the_answer_stays(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    target = tmp_path / "no-such-folder" / "answer.md"
    async with rig.app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        pane = await answered(pilot, rig, ["keep me"])

        await submit_save_path(pilot, target)
        await settle(pilot, lambda: any(str(target) in note for note in rig.notes))

        note = next(note for note in rig.notes if str(target) in note)
        assert "No such file or directory" in note
        assert pane.answer == "keep me"
        rig.backend.script = Script(tokens=["still running"])
        await pilot.press("ctrl+s")
        await settle(pilot, lambda: pane.answer == "still running")
