"""The visual search service: ``python -m tfmetric.serve --index DIR --model DIR``.

One process holds the SavedModel and the index and answers over HTTP (FastAPI on uvicorn):

    config    ServeConfig, the service's flags and limits
    versions  the served index: one directory, or the highest complete integer version of a
              directory of versions, switched atomically when a new one appears
    engine    SearchEngine: image checks, the model's signatures, float / binary / rescore search,
              match marks (tfmetric.search.modes and .calibrate)
    requests  what a search request says (image bytes or JSON b64, k, mode) and RequestError
    app       the ASGI app: routes, bounded concurrency, the upload page (static/index.html)
    server    serve(config): load once, bind, print the URL, stop cleanly on SIGINT / SIGTERM

Names are imported lazily so that ``python -m tfmetric.serve --help`` answers before TensorFlow loads.
"""

from tfmetric.lazy_exports import lazy_exports

_EXPORTS = {
    "ServeConfig": "config",
    "SearchEngine": "engine",
    "IndexVersions": "versions",
    "RequestError": "requests",
    "create_app": "app",
    "serve": "server",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
