"""ServeConfig: what ``python -m tfmetric.serve`` was asked to serve and its limits."""

import dataclasses

DEFAULT_PORT = 8080
MAX_BODY_BYTES = 10 * 2**20
MAX_K = 100
RESCORE_FACTOR = 10  # tfmetric.search.modes.RESCORE_FACTOR (not imported: --help must not load TensorFlow)


@dataclasses.dataclass
class ServeConfig:
    """The service's settings.

    Args:
      index: an index directory (``python -m tfmetric.search build``), or a directory of integer
        versions of one (the highest complete version is served; new ones are picked up).
      model: ``saved_models/<name>/<version>``, the model that embedded the catalog.
      host, port: where to listen (port 0: any free port; the URL printed says which).
      workers: requests embedded and searched at the same time (threads of this one process, which
        holds one copy of the model and index; TensorFlow and faiss release the GIL).
      queue: requests that may wait for a worker; beyond ``workers + queue`` a request gets 503.
      max_body_bytes: larger request bodies get 413.
      max_k: the largest k a request may ask for (also capped by the index size).
      rescore_factor: the ``rescore`` mode's Hamming shortlist is ``rescore_factor * k``.
      poll_seconds: how often a directory of versions is checked for a new one.
    """

    index: str
    model: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 4
    queue: int = 32
    max_body_bytes: int = MAX_BODY_BYTES
    max_k: int = MAX_K
    rescore_factor: int = RESCORE_FACTOR
    poll_seconds: float = 2.0

    def __post_init__(self):
        for name in ("workers", "max_body_bytes", "max_k", "rescore_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if self.queue < 0 or not 0 <= self.port <= 65535 or self.poll_seconds <= 0:
            raise ValueError(
                f"queue must be >= 0, port in 0..65535 and poll_seconds > 0. Received: "
                f"queue={self.queue}, port={self.port}, poll_seconds={self.poll_seconds}"
            )
