"""The ASGI app of the service (FastAPI): routes over a loaded SearchEngine.

    GET  /                  the upload page (static/index.html)
    GET  /healthz           {"status": "ok", "index_version": ...}
    GET  /v1/info           model identity, index kind / size / dimension / version, modes, limits
    POST /v1/search         ?k=10&mode=float|binary|rescore; image bytes or JSON {"b64", "k", "mode"}
    GET  /v1/thumbnail      ?id=<catalog id>: a JPEG thumbnail of that item's source image

Every error is ``{"error": "..."}`` with a 4xx status (``tfmetric.serve.requests``) or, for a
bug, 500; the service stays up. Searches run on ``workers`` threads behind ``Admission``.
"""

import asyncio
import concurrent.futures
import logging
import os

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from tfmetric.serve import thumbnails
from tfmetric.serve.admission import Admission
from tfmetric.serve.requests import RequestError, parse_search

_LOG = logging.getLogger(__name__)
PAGE = os.path.join(os.path.dirname(__file__), "static", "index.html")


def error_response(status, message):
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request, limit):
    """The request body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    too_large = RequestError(413, f"request body over the limit of {limit} bytes (--max-body-bytes).")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(engine):
    """The FastAPI app answering from ``engine`` (a SearchEngine; its config gives the limits)."""
    config = engine.config
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    executor = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="search")
    state = {}

    app = FastAPI(title="tfmetric visual search", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(RequestError)
    async def _refused(request, e):
        return error_response(e.status, e.message)

    @app.exception_handler(HTTPException)
    async def _http(request, e):
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e):
        problems = "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in e.errors())
        return error_response(422, f"invalid request ({problems}).")

    @app.exception_handler(Exception)
    async def _bug(request, e):
        _LOG.exception("Request %s %s failed", request.method, request.url.path)
        return error_response(500, f"internal error ({type(e).__name__}: {e}).")

    @app.get("/", response_class=HTMLResponse)
    async def index_page():
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "index_version": engine.versions.current.version}

    @app.get("/v1/info")
    async def info():
        return engine.info()

    @app.post("/v1/search")
    async def search(request: Request):
        body = await read_body(request, config.max_body_bytes)
        query = parse_search(request.headers.get("content-type"), body, request.query_params)
        if "admission" not in state:  # made on the server's event loop
            state["admission"] = Admission(config.workers, config.queue)
        async with state["admission"]:
            answer = await asyncio.get_running_loop().run_in_executor(executor, engine.search, query)
        return JSONResponse(answer)

    @app.get("/v1/thumbnail")
    async def thumbnail(id: str):
        source = engine.source_of(id)
        data = await run_in_threadpool(thumbnails.thumbnail, source, engine.max_pixels)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    app.state.executor = executor
    return app
