"""The HTTP service: create_app(settings) -> FastAPI.

The engine (index + model) loads once, in a thread started at start-up: /healthz answers at once,
/readyz says 503 until the engine is ready, and engine endpoints wait for it (up to
settings.ready_wait_seconds). Endpoints that call the engine are plain `def`: FastAPI runs them in
its thread pool, so encoding a query never blocks the event loop.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from api import DISTRIBUTION, version
from api.errors import ApiError, ErrorBody, install_error_handlers
from api.logs import configure_logging
from api.middleware import RequestContextMiddleware
from api.models import InfoOut, PassageContext, WorkOut
from api.routing import StrictJSONRoute
from api.settings import Settings
from index import stores
from qa.schema import AskRequest, AskResponse

log = logging.getLogger("api")
STATIC = Path(__file__).resolve().parent / "static"
OnFailure = Callable[[str], None]
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422, 503)}


class EngineSlot:
    """Holds the engine once it has loaded, or the reason it could not; swaps in a rebuilt index.

    A request takes the engine it will use once, when it starts, so a swap never mixes two indexes in one
    answer; the old engine goes when its last request is done.
    """

    def __init__(self, settings: Settings, on_failure: OnFailure | None = None):
        self.index_dir, self.corpus_dir, self.on_failure = settings.index_location, settings.corpus_dir, on_failure
        self.reload_seconds = settings.reload_seconds
        self.loaded = threading.Event()
        self.engine = None
        self.error: str | None = None
        self.generation: tuple | None = None  # which index on disk the engine was loaded from
        self.on_swap: list[Callable[[], None]] = []

    def load(self) -> None:
        try:
            from qa.engine import Engine

            log.info("loading index and model from %s", stores.describe(self.index_dir))
            self.generation = self.on_disk()
            self.engine = Engine.load(self.index_dir, self.corpus_dir)
            one_native_thread_per_request()
            log.info("engine ready")
        except Exception as exc:
            from index.store import IndexLoadError, StoreUnavailable  # messages that say what to do: no trace

            self.error = str(exc) or type(exc).__name__
            expected = isinstance(exc, IndexLoadError | StoreUnavailable)
            log.error("engine failed to load: %s", self.error, exc_info=not expected)
            if self.on_failure:
                self.on_failure(self.error)
        finally:
            self.loaded.set()
        if self.engine is not None and self.reload_seconds > 0:
            threading.Thread(target=self._watch, name="index-watch", daemon=True).start()

    def on_disk(self) -> tuple | None:
        """Identifies the index in the store now: a rebuild swaps in a new directory with a new manifest, or
        moves the database's current version (index/stores.py generation)."""
        return stores.generation(self.index_dir)

    def corpus_on_disk(self) -> tuple:
        """Changes whenever a corpus file is added, removed or rewritten (names, sizes, mtimes)."""
        try:
            files = sorted((e.name, e.stat()) for e in os.scandir(self.corpus_dir) if e.is_file())
            return tuple((name, st.st_size, st.st_mtime_ns) for name, st in files)
        except OSError:
            return ()

    def _watch(self) -> None:
        """Poll for a rebuilt index (`qa index build` / `qa index add` in another process) and swap it in.
        A new index that does not load is logged and skipped; the one in use keeps serving. A shared store's
        servers have no corpus of their own to wait for: its version is the whole change."""
        from qa.engine import Engine

        tried = None
        while True:
            time.sleep(self.reload_seconds)
            now = self.on_disk()
            if now is None or now == self.generation:
                continue
            # A refused index is tried again once the corpus changes: it may have been refused as stale
            # because the files it was built from were still being written.
            attempt = (now, () if stores.shared(self.index_dir) else self.corpus_on_disk())
            if attempt == tried:
                continue
            tried = attempt
            try:
                engine = Engine.load(self.index_dir, self.corpus_dir)
            except Exception as exc:
                where = stores.describe(self.index_dir)
                log.error("a new index at %s did not load; still serving the previous one: %s", where, exc)
                continue
            self.engine, self.generation = engine, now
            for callback in self.on_swap:
                callback()
            log.info("swapped in the rebuilt index from %s", stores.describe(self.index_dir))

    def get(self, wait: float):
        if not self.loaded.wait(wait):
            message = "the index and model are still loading; retry shortly"
            raise ApiError(503, "not_ready", message, headers={"Retry-After": "5"})
        engine = self.engine
        if engine is None:
            raise ApiError(503, "not_ready", f"the index could not be loaded: {self.error}")
        return engine


def one_native_thread_per_request() -> None:
    """Concurrency here comes from requests and worker processes, and each ask does small matrix products:
    BLAS and OpenMP teams sized to the machine only spin against each other and the encoder. Measured
    with bench/load.py: server CPU per ask 18.0 ms -> 9.9 ms, 1 worker, 4 connections."""
    import faiss
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    faiss.omp_set_num_threads(1)


def get_engine(request: Request):
    return request.app.state.slot.get(request.app.state.settings.ready_wait_seconds)


EngineDep = Annotated[object, Depends(get_engine)]


def unknown_filter(exc) -> ApiError:
    field = f"filters.{exc.field}"
    return ApiError(422, "unknown_filter_value", f"{field}: {exc}", field)


def create_app(settings: Settings | None = None, on_load_failure: OnFailure | None = None) -> FastAPI:
    """The app; `on_load_failure(reason)` is called (from the loading thread) if the engine cannot load."""
    settings = settings or Settings()
    slot = EngineSlot(settings, on_load_failure)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=slot.load, name="engine-load", daemon=True).start()
        yield

    # /docs and /redoc from assets in the fastapi-offline package, not a CDN: they work without internet.
    # validatorUrl null: Swagger UI would otherwise send the schema to an online validator for a badge.
    app = FastAPIOffline(
        title="Verbatim QA: cited passages from a collection",
        description="Answers a question with ranked verbatim passages, each cited and attributed to its "
        "viewpoint. It never writes text of its own, and says so when the collection does not answer.",
        version=version(),
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings, app.state.slot = settings, slot
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, settings=settings)  # request id, body limits, headers
    app.include_router(_router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = _openapi_with_corpus_values(app)
    slot.on_swap.append(lambda: setattr(app, "openapi_schema", None))  # filter values come from the index
    return app


def _openapi_with_corpus_values(app: FastAPI) -> Callable[[], dict]:
    """Once the engine is loaded, the schema lists the values each filter accepts (work ids, authors,
    kinds, viewpoint labels, holders), so clients can discover them and a schema-valid request is a
    request the service accepts."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        slot = app.state.slot
        if not slot.loaded.is_set() or slot.engine is None:
            return schema  # not cached: the values are added once the engine is ready
        fields = schema["components"]["schemas"]["Filters"]["properties"]
        for name, values in slot.engine.filter_values.items():
            for option in fields[name].get("anyOf", []):
                if option.get("type") == "array":
                    option["items"] = {**option["items"], "enum": sorted(values)}
        app.openapi_schema = schema
        return schema

    return openapi


def create_app_from_env() -> FastAPI:
    """App factory for `uvicorn --factory` (several workers): settings come from QA_* variables."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


def _router() -> APIRouter:
    from corpus.ingest import collection_name
    from qa.engine import UnknownFilterValue  # here, not at the top: importing the engine imports torch

    r = APIRouter(route_class=StrictJSONRoute)

    @r.get("/healthz", tags=["service"], summary="The process is alive")
    async def healthz() -> dict:
        return {"status": "ok"}

    @r.get("/readyz", tags=["service"], summary="The index and model are loaded", responses=ERRORS)
    def readyz(request: Request) -> dict:
        request.app.state.slot.get(0)
        return {"status": "ready"}

    @r.post("/v1/ask", tags=["ask"], summary="Ranked verbatim passages that answer", responses=ERRORS)
    def ask(req: AskRequest, engine: EngineDep) -> AskResponse:
        try:
            if req.filters is not None:
                engine.check_filters(req.filters)
            return engine.ask(req)
        except UnknownFilterValue as exc:
            raise unknown_filter(exc) from exc

    @r.get("/v1/info", tags=["service"], summary="What is serving: version, collection, index", responses=ERRORS)
    def info(request: Request, engine: EngineDep) -> InfoOut:
        manifest = engine.index.manifest
        return InfoOut(
            name=DISTRIBUTION,
            version=version(),
            collection=collection_name(request.app.state.settings.corpus_dir),
            model=manifest["model"]["name"],
            passage_count=len(engine.index),
            work_count=len(engine.index.works),
            index_built=manifest.get("created"),  # indexes built before it was recorded have none
            skipped=engine.index.extra("skipped") or [],
        )

    @r.get("/v1/works", tags=["works"], summary="Every work in the collection, with provenance")
    def works(engine: EngineDep) -> list[WorkOut]:
        return [WorkOut.of(w) for w in engine.works()]

    @r.get("/v1/works/{work_id}", tags=["works"], summary="One work", responses=ERRORS)
    def work(work_id: Annotated[str, PathParam(max_length=200)], engine: EngineDep) -> WorkOut:
        found = engine.work(work_id)
        if found is None:
            raise ApiError(404, "not_found", f"no work with id {work_id!r}", "work_id")
        return WorkOut.of(found)

    @r.get("/v1/passages/{passage_id}", tags=["passages"], summary="A passage in context", responses=ERRORS)
    def passage(
        passage_id: Annotated[str, PathParam(max_length=200)],
        engine: EngineDep,
        context: Annotated[int, Query(ge=0, le=10, description="neighbouring passages on each side")] = 1,
    ) -> PassageContext:
        found = engine.passage(passage_id, context=context)
        if found is None:
            raise ApiError(404, "not_found", f"no passage with id {passage_id!r}", "passage_id")
        return PassageContext.of(found, engine)

    @r.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return r
