"""The ICAP loop's hand-off to its recorder thread (agent/icap_backlog.py): bounded, waits without
blocking the loop, and never refuses the one item that alone is over the byte bound."""

from __future__ import annotations

import asyncio
import threading

from agent.icap_backlog import STOP, Backlog


def test_put_waits_while_full_and_goes_on_when_the_recorder_is_done() -> None:
    async def main() -> None:
        backlog = Backlog(max_items=8, max_bytes=100)
        await backlog.put("a", 60)
        second = asyncio.create_task(backlog.put("b", 60))      # 120 bytes would be over the bound
        await asyncio.sleep(0)
        assert not second.done() and backlog.get(0) == ("a", 60)

        def recorder() -> None:
            backlog.done(60)        # from another thread, as the recorder does

        threading.Thread(target=recorder).start()
        await asyncio.wait_for(second, 10)
        assert backlog.get(0) == ("b", 60) and backlog.get(0) is None

    asyncio.run(main())


def test_one_item_always_fits_and_stop_comes_last() -> None:
    async def main() -> None:
        backlog = Backlog(max_items=1, max_bytes=10)
        await asyncio.wait_for(backlog.put("big", 10_000), 10)
        backlog.put_stop()
        assert backlog.get(0) == ("big", 10_000) and backlog.get(0) == (STOP, 0)

    asyncio.run(main())
