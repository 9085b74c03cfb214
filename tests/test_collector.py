"""Overlapping pauses of the garbage collector: the last release resumes it."""

import asyncio
import gc

from dynamod import collector


def test_overlapping_holds_resume_once_all_are_released():
    assert gc.isenabled()
    collector.hold()
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the first hold is still on
    collector.release()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def _full_collections(run) -> list:
    """Run `run()`, returning when full collections started: "now" while it ran, "later" after."""
    seen, phase = [], ["now"]

    def watch(event, info):
        if event == "start" and info["generation"] == 2:
            seen.append(phase[0])
    gc.callbacks.append(watch)
    gc.disable()   # only the collector's own full collection is counted
    try:
        run(phase)
    finally:
        gc.enable()
        gc.callbacks.remove(watch)
    return seen


def test_a_full_collection_waits_for_the_ready_callbacks_of_the_loop():
    """The change that crosses the line answers first: its collection is called soon."""
    async def deleting(phase):
        collector.dropped(collector.full_every)
        phase[0] = "later"
        await asyncio.sleep(0)

    assert _full_collections(lambda phase: asyncio.run(deleting(phase))) == ["later"]


def test_without_a_loop_the_full_collection_runs_at_once():
    def deleting(phase):
        collector.dropped(collector.full_every)
        phase[0] = "later"

    assert _full_collections(deleting) == ["now"]
