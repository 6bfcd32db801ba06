"""The ASGI application of ``emocam serve``: the JSON API under /v1, the live video and events, and the page at /."""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from importlib.resources import files
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..provenance import VERSION
from ..records import schema
from .analysis import Analysts, analyze, recognizer
from .config import Refused, ServeOptions
from .live import EVENT, FRAME, LiveFeed
from .uploads import Deadline, Scratch, read_upload

# The page's cookie that carries the token, set by opening /?token=TOKEN once.
TOKEN_COOKIE = "emocam_token"
STATIC = files("emocam.serve") / "static"
# The page and what it loads come from this server only: nothing from the internet.
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
               "connect-src 'self'; frame-ancestors 'self'")
JSON_TYPES = {int: "integer", float: "number", str: "string"}


class Error(BaseModel):
    """What every refused request gets: one line saying what was wrong and what to do."""

    error: str


class Analysis(BaseModel):
    """The faces of an uploaded image or video: one record per face per frame, in the CSV's columns (see /v1/schema)."""

    kind: str
    width: int | None
    height: int | None
    frames: int
    faces: int
    records: list[dict[str, Any]]


class Column(BaseModel):
    name: str
    type: str
    digits: int | None
    nullable: bool


class Schema(BaseModel):
    """The record schema shared by the CSV, the JSONL stream and this API."""

    classes: list[str]
    columns: list[Column]


class Health(BaseModel):
    status: str
    version: str
    model: str
    backend: str
    classes: list[str]
    uptime_s: float
    pid: int
    options: dict[str, Any]
    threads: int
    queue: int
    limits: dict[str, float]
    model_calls: int
    faces_classified: int
    live: dict[str, Any] | None


ERRORS = {status: {"model": Error, "description": what} for status, what in (
    (400, "the upload cannot be read (empty, truncated, corrupt, not an image or video, a form field)"),
    (401, "missing or wrong token"), (404, "no live source (/v1/stream.mjpg and /v1/events need --source)"),
    (408, "the upload took longer than the request timeout"),
    (413, "the upload, the image's pixels or the video's length is over the server's limit"),
    (415, "the content type is not an image, a video, application/octet-stream or multipart/form-data"),
    (503, "every analysis thread is busy and the queue is full: try again after Retry-After seconds"),
    (504, "the analysis took longer than the request timeout"))}
BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "image/*": BINARY, "video/*": BINARY, "application/octet-stream": BINARY,
    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                                       "required": ["file"]}}}}}


bearer = HTTPBearer(auto_error=False, description="the server's --token, where it was started with one")


def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """Refused (401) unless the server has no token or the request carries it (bearer header, or the page's cookie)."""
    token = request.app.state.options.token
    if token is None:
        return
    given = credentials.credentials if credentials is not None else request.cookies.get(TOKEN_COOKIE)
    if given is None or not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(401, "missing or wrong token: send the header 'Authorization: Bearer TOKEN' (in a browser, open "
                           "/?token=TOKEN once)", {"WWW-Authenticate": "Bearer"})


def live_feed(request: Request) -> LiveFeed:
    """The server's live source; Refused (404) where it was started without --source."""
    feed = request.app.state.feed
    if feed is None:
        raise Refused(404, "no live source: start emocam serve with --source CAMERA|URL|FILE")
    return feed


def end_streams_on_stop(feed: LiveFeed) -> None:
    """On SIGTERM or SIGINT, end the video and event streams, then let uvicorn's handler drain the rest: a long-lived
    stream would otherwise hold the shutdown until its timeout."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if callable(previous):
            def chained(sig: int, frame: object, previous=previous) -> None:
                feed.end_watchers()
                previous(sig, frame)
            signal.signal(signum, chained)


def create_app(options: ServeOptions, analysts: Analysts | None = None) -> FastAPI:
    """The application for ``options``; ``analysts`` already loaded, or loaded at startup (each worker process)."""
    # Pillow warns of large images on its own scale; this server refuses them on its own budget first.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.analysts = analysts or Analysts(options)
        state.scratch = Scratch()
        state.feed = None
        if options.source is not None:
            state.feed = LiveFeed(options.source, recognizer(options.recognizer, state.analysts.model),
                                  asyncio.get_running_loop())
            end_streams_on_stop(state.feed)
        state.started = time.monotonic()
        host = f"[{options.host}]" if ":" in options.host else options.host
        live = "" if options.source is None else f"; live: {options.source}"
        print(f"emocam serve: ready at http://{host}:{options.port}/ (pid {os.getpid()}, {state.analysts.model.name}, "
              f"{options.threads} threads{live})", file=sys.stderr, flush=True)
        try:
            yield
        finally:
            if state.feed is not None:
                state.feed.close()
            state.analysts.close()
            state.scratch.close()

    app = FastAPI(title="emocam", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Facial emotion recognition: the records of an image or a short "
                  "video, and one live source's annotated video and events.")
    app.state.options = options
    install_errors(app)
    app.include_router(api_routes(app))
    app.mount("/static", StaticFiles(packages=[("emocam.serve", "static")]), name="static")

    @app.get("/", include_in_schema=False)
    async def page(token: str | None = None) -> Any:
        if token is not None:  # the link that gives a browser the token as a cookie, then the page without it
            if options.token is None or not hmac.compare_digest(token.encode(), options.token.encode()):
                raise Refused(401, "wrong token in the link", {"WWW-Authenticate": "Bearer"})
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
        return FileResponse(str(STATIC / "index.html"), headers={"Content-Security-Policy": PAGE_POLICY,
                                                                  "Cache-Control": "no-store"})

    return app


def api_routes(app: FastAPI) -> APIRouter:
    """The /v1 routes, every one behind the token (where the server has one)."""
    options: ServeOptions = app.state.options
    router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)], responses={401: ERRORS[401]})

    @router.post("/analyze", response_model=Analysis, openapi_extra=UPLOAD_BODY,
                 responses={s: ERRORS[s] for s in (400, 408, 413, 415, 503, 504)})
    async def analyze_upload(request: Request, every_frame: bool = False) -> JSONResponse:
        """The records of an image or a short video sent as the body (Content-Type image/*, video/* or
        application/octet-stream) or as the one file of a multipart/form-data upload. ``every_frame``: also a record
        for each video frame without a face."""
        analysts: Analysts = request.app.state.analysts
        deadline = Deadline(options.request_timeout_s)
        analysts.admit()
        try:
            upload = await read_upload(request, options, deadline)
        except BaseException:
            analysts.release()
            raise
        job = analysts.submit(partial(analyze, upload=upload, options=options, scratch=request.app.state.scratch,
                                      deadline=deadline, every_frame=every_frame))
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(job), deadline.left())
        except asyncio.TimeoutError:
            raise Refused(504, f"the analysis took longer than {options.request_timeout_s:g} s (--request-timeout)") \
                from None
        return JSONResponse(result)

    @router.get("/health", response_model=Health)
    async def health(request: Request) -> dict:
        """The model, backend, version and uptime, the options the recognizers run with, the limits, how many model
        calls carried how many faces, and the live source's state."""
        state = request.app.state
        analysts: Analysts = state.analysts
        rec = analysts.recognizers[0]
        return {"status": "ok", "version": VERSION, "model": rec.options.model_path.name,
                "backend": analysts.model.name, "classes": list(rec.classes),
                "uptime_s": round(time.monotonic() - state.started, 1), "pid": os.getpid(),
                "options": {k: None if v is None else str(v) if k == "model" else v
                            for k, v in asdict(rec.options).items()},
                "threads": len(analysts.recognizers), "queue": analysts.capacity - len(analysts.recognizers),
                "limits": {"max_upload_mb": options.max_upload_mb, "max_megapixels": options.max_megapixels,
                           "max_video_s": options.max_video_s, "request_timeout_s": options.request_timeout_s},
                "model_calls": analysts.model.calls, "faces_classified": analysts.model.faces,
                "live": None if state.feed is None else state.feed.status()}

    @router.get("/schema", response_model=Schema)
    async def record_schema(request: Request) -> dict:
        """The columns of every record (the CSV header), with their JSON types; every one may be null."""
        classes = request.app.state.analysts.recognizers[0].classes
        return {"classes": list(classes), "columns": [
            {"name": c.name, "type": JSON_TYPES[c.kind], "digits": c.digits, "nullable": True}
            for c in schema(classes)]}

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict:
        return openapi_31(app)

    @router.get("/stream.mjpg", response_class=StreamingResponse, responses={
        200: {"content": {"multipart/x-mixed-replace": {}}, "description": "the annotated live video"},
        404: ERRORS[404]})
    async def stream(feed: LiveFeed = Depends(live_feed)) -> StreamingResponse:
        """The live source's video with the overlay (boxes, labels, bars), as Motion JPEG."""
        async def parts() -> AsyncIterator[bytes]:
            async for jpeg in feed.watch(FRAME):
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b\r\n" % (len(jpeg), jpeg)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    @router.get("/events", response_class=EventSourceResponse, responses={404: ERRORS[404]})
    async def events(feed: LiveFeed = Depends(live_feed)) -> AsyncIterator[ServerSentEvent]:
        """Server-Sent Events: "records" for each live frame (its records, the frame's stream time and timestamp,
        and t, seconds since the server started), "status" when the source starts, fails or comes back."""
        yield ServerSentEvent(data=feed.status(), event="status")
        async for name, text in feed.watch(EVENT):
            yield ServerSentEvent(raw_data=text, event=name)

    return router


def openapi_31(app: FastAPI) -> dict:
    """FastAPI's description of the API, with the event stream's OpenAPI 3.2 ``itemSchema`` given as a 3.1 schema: the
    document says 3.1, and 3.1 validators and client generators refuse the newer keyword."""
    spec = app.openapi()
    for operations in spec["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    if "itemSchema" in media:
                        del media["itemSchema"]
                        media["schema"] = {"type": "string", "description": "events: 'event: NAME' and 'data: JSON'"}
    return spec


def install_errors(app: FastAPI) -> None:
    """Every error answer is JSON with one line, {"error": ...}."""

    @app.exception_handler(Refused)
    async def refused(request: Request, e: Refused) -> JSONResponse:
        return JSONResponse({"error": e.message, **e.extra}, e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        problem = e.errors()[0]
        where = ".".join(str(p) for p in problem.get("loc", ()))
        return JSONResponse({"error": f"{where}: {problem.get('msg', 'invalid')}"}, 422)

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:  # uvicorn logs its traceback
        return JSONResponse({"error": f"internal error ({type(e).__name__}); the server's log has the details"}, 500)


def from_environment() -> FastAPI:
    """The application of a uvicorn worker process, from the options its parent left in the environment."""
    return create_app(ServeOptions.from_environment())
