"""Admission against its invariant: never more than `workers` running, more than `workers + queue`
admitted requests are refused at once with 503, and a cancelled waiter frees its place."""

import asyncio

import pytest

from tfmetric.serve.admission import Admission
from tfmetric.serve.requests import RequestError


def test_workers_run_queue_waits_rest_refused():
    async def scenario():
        gate, running, peak, release = Admission(2, 3), [0], [0], asyncio.Event()

        async def request():
            async with gate:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                await release.wait()
                running[0] -= 1
            return 200

        async def guarded():
            try:
                return await request()
            except RequestError as e:
                return e.status

        tasks = [asyncio.ensure_future(guarded()) for _ in range(8)]
        await asyncio.sleep(0.01)
        assert gate.admitted == 5 and running[0] == 2
        release.set()
        statuses = await asyncio.gather(*tasks)
        assert sorted(statuses) == [200] * 5 + [503] * 3 and peak[0] == 2 and gate.admitted == 0

        blocker = asyncio.Event()
        holders = [asyncio.ensure_future(_hold(gate, blocker)) for _ in range(2)]
        waiter = asyncio.ensure_future(_hold(gate, blocker))
        await asyncio.sleep(0.01)
        assert gate.admitted == 3
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert gate.admitted == 2
        blocker.set()
        await asyncio.gather(*holders)
        assert gate.admitted == 0

    asyncio.run(scenario())


async def _hold(gate, event):
    async with gate:
        await event.wait()
