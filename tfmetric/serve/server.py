"""serve(config): load the model and the index once, listen, print the URL, stop cleanly on a signal.

uvicorn handles SIGINT and SIGTERM with a graceful shutdown (requests in flight are answered,
then the process exits); afterwards it re-raises the signal to the handlers it found, which here
only note it, so the process ends with status 0 and a last line saying why it stopped.
"""

import logging
import signal

import uvicorn

from tfmetric.serve.app import create_app
from tfmetric.serve.engine import SearchEngine

_LOG = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_ready(url)`` once its socket listens."""

    def __init__(self, config, on_ready):
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self._on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}/")


def serve(config, out=print):
    """Runs the service of a ServeConfig until SIGINT / SIGTERM; returns the signal's name (or None)."""
    engine = SearchEngine(config)
    app = create_app(engine)
    snapshot = engine.versions.current
    index = snapshot.searcher.index
    where = f"{snapshot.directory}" + (f" (version {snapshot.version})" if snapshot.version is not None else "")

    def ready(url):
        out(
            f"Serving {index.count} items of {where} with model {engine.identity.get('name')}/"
            f"{engine.identity.get('version')}, modes {', '.join(snapshot.searcher.modes)}, at {url}",
            flush=True,
        )

    received = []
    previous = {
        sig: signal.signal(sig, lambda s, frame: received.append(signal.Signals(s).name)) for sig in STOP_SIGNALS
    }
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=30,
        ),
        ready,
    )
    engine.versions.start()
    try:
        server.run()
    finally:
        engine.versions.stop()
        app.state.executor.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stopped = received[-1] if received else None
    out(f"Stopped{f' ({stopped})' if stopped else ''}.", flush=True)
    return stopped
