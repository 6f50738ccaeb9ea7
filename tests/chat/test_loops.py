"""kaiwa.chat.realtime.loops: one object per name per event loop, tasks kept until done."""

import asyncio
import gc

from kaiwa.chat.realtime import loops
from kaiwa.chat.realtime.hub import get_hub
from kaiwa.chat.realtime.writer import get_writer


async def test_each_name_has_one_object_per_loop():
    made = []
    first = loops.loop_local("thing", lambda loop: made.append(loop) or object())
    assert loops.loop_local("thing", lambda loop: object()) is first
    assert made == [asyncio.get_running_loop()]
    assert get_hub() is get_hub()
    assert get_writer() is get_writer()
    assert get_hub().loop is asyncio.get_running_loop()


def test_another_loop_gets_its_own_objects():
    async def hub():
        return get_hub()

    one, two = asyncio.run(hub()), asyncio.run(hub())
    assert one is not two


async def test_clear_for_testing_forgets_them():
    hub = get_hub()
    loops.clear_for_testing()
    assert get_hub() is not hub


async def test_serving_finds_the_running_loops_object_from_another_thread():
    hub = get_hub()
    assert await asyncio.to_thread(loops.serving, "hub") is hub
    assert await asyncio.to_thread(loops.serving, "nothing") is None


async def test_a_spawned_task_is_kept_until_done():
    done = asyncio.Event()

    async def work():
        await asyncio.sleep(0.05)
        done.set()

    loops.spawn(work())
    gc.collect()  # nothing but the registry refers to the task
    await asyncio.wait_for(done.wait(), 2)
    await asyncio.sleep(0)
    assert not loops._tasks.get(asyncio.get_running_loop())
