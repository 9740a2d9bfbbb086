"""Bounded concurrency: at most ``workers`` requests run, ``queue`` more wait, the rest get 503 at once.

A service that queued without limit would answer everything eventually, too late to be useful,
while its memory grows; refusing early lets a load balancer send the request elsewhere.
"""

import asyncio

from tfmetric.serve.requests import RequestError


class Admission:
    """An async context manager around the work of one request (used from one event loop).

    Args:
      workers: requests allowed to run at once.
      queue: requests allowed to wait for a running one to finish.
    """

    def __init__(self, workers, queue):
        self.workers, self.queue = int(workers), int(queue)
        self._running = asyncio.Semaphore(self.workers)
        self.admitted = 0  # running + waiting

    async def __aenter__(self):
        if self.admitted >= self.workers + self.queue:
            raise RequestError(
                503,
                f"busy: {self.workers} requests running and {self.queue} queued "
                f"(--workers {self.workers}, --queue {self.queue}); retry later.",
            )
        self.admitted += 1
        try:
            await self._running.acquire()
        except BaseException:  # cancelled while waiting (the client went away)
            self.admitted -= 1
            raise
        return self

    async def __aexit__(self, *exc):
        self._running.release()
        self.admitted -= 1
        return False
