"""The FastAPI app of `finpeft serve` (see the package docstring for the routes)."""
import asyncio
import hmac
import json
import sys
import threading
import time
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Callable

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, create_model

from finpeft.errors import FinpeftError
from finpeft.inference.serve.batcher import MicroBatcher
from finpeft.inference.serve.limits import BodyLimit, ServeSettings, _utf8, error_body, http_error_body
from finpeft.version import __version__


def load_predictor(model_dir: Path, batch_size: int = 64):
    from finpeft.inference.predictor import Predictor
    return Predictor(model_dir, batch_size=batch_size)


def create_app(model_dir: str | Path, settings: ServeSettings | None = None, loader: Callable | None = None):
    """The ASGI app. The model loads in a background thread: /healthz answers at once, /readyz and
    /v1/predict say 503 until it is in."""
    try:
        from fastapi import FastAPI
        from prometheus_client import CollectorRegistry, Histogram
    except ImportError as e:
        raise FinpeftError(f"serve needs the serve extra ({e.name} is missing): pip install 'finpeft[serve]'") from None
    s = settings or ServeSettings()
    model_dir = Path(model_dir)
    state: dict = {"predictor": None, "error": None, "model_dir": model_dir}
    registry = CollectorRegistry()  # one per app: several apps (tests) in one process never share counters
    batch_sizes = Histogram("finpeft_batch_size", "Texts per forward pass", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
    load_model = loader or partial(load_predictor, batch_size=max(s.max_batch, s.max_texts))  # one forward pass

    def load():
        try:
            state["predictor"] = load_model(model_dir)
        except Exception as e:  # noqa: BLE001 - reported by /readyz and on stderr; `finpeft serve` loads first
            state["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            print(f"finpeft: error: the model did not load: {state['error']}", file=sys.stderr, flush=True)

    def batcher_died(task: asyncio.Task) -> None:  # /readyz then says so instead of requests hanging
        if not task.cancelled():
            state.update(predictor=None, error=f"the batching worker stopped: {task.exception()!r}")

    async def lifespan(app):
        # one forward pass per batch of texts of one task: a list of prediction dicts, as Predictor.predict gives
        batcher = MicroBatcher(lambda texts, task=None: state["predictor"].predict(texts, task=task), s.max_batch,
                               s.max_wait_ms, on_batch=batch_sizes.observe)
        batcher.start()
        batcher.task.add_done_callback(batcher_died)
        state["batcher"] = batcher
        threading.Thread(target=load, daemon=True, name="finpeft-load").start()
        yield
        await batcher.stop()

    app = FastAPI(title="finpeft", version=__version__, lifespan=lifespan,
                  description="Financial-text models: label, class probabilities and a sentiment score; a "
                              "regression model's score; an LLM run's answers per task.")
    requests = _observe(app, registry)
    _error_handlers(app)
    _routes(app, s, state, registry)
    if s.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-api-key"])
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes, on_reject=lambda path: requests.labels(path, "413").inc())
    return app


def _schemas(s: ServeSettings):
    """The request and response models of /v1/predict, sized by the settings."""
    Text = Annotated[str, StringConstraints(max_length=s.max_chars), AfterValidator(_utf8)]
    PredictRequest = create_model(
        "PredictRequest", texts=(list[Text], Field(min_length=1, max_length=s.max_texts)),
        task=(str | None, Field(None, max_length=100, description="One of the model's tasks (/readyz lists them); "
                                                                   "default: its first")))

    class Prediction(BaseModel):
        label: str | None = Field(None, description="The predicted class (null for regression, multilabel and "
                                  "generation)")
        labels: list[str] | None = Field(None, description="The labels that apply (a multilabel run; absent for the "
                                         "other tasks)", exclude_if=lambda v: v is None)
        probabilities: dict[str, float] | None = Field(None, description="Class probabilities (classification), "
                                                       "each label's probability (multilabel)")
        score: float | None = Field(None, description="A regression model's predicted score; a classifier's "
                                    "sum of P(class) x its polarity, P(positive) - P(negative) for sentiment; "
                                    "null where the classes have no polarity, and for text")
        text: str | None = Field(None, description="The generated answer (an LLM run's generation task; absent "
                                 "for the other tasks)", exclude_if=lambda v: v is None)

    class PredictResponse(BaseModel):
        model: dict
        predictions: list[Prediction]
    return PredictRequest, PredictResponse


def _observe(app, registry):
    """Request counts and latency per route (Prometheus); an unhandled error is counted, then answered as JSON."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from prometheus_client import Counter, Histogram
    requests = Counter("finpeft_requests", "HTTP requests", ["path", "status"], registry=registry)
    latency = Histogram("finpeft_request_latency_seconds", "Request latency", ["path"], registry=registry,
                        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))

    @app.middleware("http")
    async def observe(request: Request, call_next):
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
            status = response.status_code
        except Exception:  # noqa: BLE001 - counted, then answered as JSON
            response, status = JSONResponse({"error": "internal error"}, status_code=500), 500
        path = request.scope.get("route").path if request.scope.get("route") else "other"
        requests.labels(path, str(status)).inc()
        latency.labels(path).observe(time.perf_counter() - t0)
        return response
    return requests


def _error_handlers(app) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        # Without the rejected input: it may be huge, and a lone surrogate in it cannot even be encoded.
        errors = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in exc.errors()]
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                            for e in errors[:5])
        return Response(json.dumps(error_body(message, errors), ensure_ascii=True, default=str), status_code=422,
                        media_type="application/json")

    @app.exception_handler(StarletteHTTPException)  # FastAPI raises the base class for an unreadable body
    async def http_error(request: Request, exc: StarletteHTTPException):
        # FastAPI answers an unreadable body (bad UTF-8, JSON nested too deep) with 400: it is a malformed
        # body like any other, so 422.
        status = 422 if exc.status_code == 400 else exc.status_code
        headers = getattr(exc, "headers", None) or {}
        body = http_error_body(exc.status_code, str(exc.detail), request.url.path, headers)
        return JSONResponse(body, status_code=status, headers=headers or None)


def _model_info(state: dict) -> dict:
    p = state["predictor"]
    info = p.info if p is not None else {}
    d = state["model_dir"].resolve()
    return {"name": d.parent.name if d.name in ("onnx", "onnx-int8") else d.name,
            "version": info.get("date") or info.get("finpeft_version"), "method": info.get("method"),
            "backbone": info.get("backbone"),
            "backend": "onnx" if info.get("artifact") == "onnx" else "torch", "task": info.get("task", "classification"),
            "labels": getattr(p, "display_labels", None) or info.get("labels"),
            "tasks": getattr(p, "tasks", None),
            "finpeft_version": __version__}


def _routes(app, s: ServeSettings, state: dict, registry) -> None:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    PredictRequest, PredictResponse = _schemas(s)

    def check_key(request: Request):
        if s.api_key is None:
            return
        given = request.headers.get("x-api-key", "").encode("latin-1")  # the header's bytes as sent
        if not hmac.compare_digest(given, s.api_key.encode("utf-8")):  # constant time: no timing oracle
            raise HTTPException(401, "missing or wrong X-API-Key header")

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[Depends(check_key)])
    async def predict(req: PredictRequest):
        p = state["predictor"]
        if p is None:
            return JSONResponse({"error": state["error"] or "model is loading"}, status_code=503)
        try:
            p.check_task(req.task)  # before batching: an unknown task fails this request alone
        except FinpeftError as e:
            return JSONResponse(error_body(str(e)), status_code=422)
        try:
            preds = await state["batcher"].submit(list(req.texts), req.task)
        except MicroBatcher.Busy:
            return JSONResponse({"error": "server at capacity; retry shortly"}, status_code=503)
        except asyncio.TimeoutError:
            return JSONResponse({"error": "scoring timed out"}, status_code=503)
        except Exception as e:  # noqa: BLE001 - this request's texts could not be scored
            return JSONResponse({"error": f"scoring failed: {type(e).__name__}: {str(e)[:200]}"}, status_code=500)
        return {"model": _model_info(state), "predictions": preds}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if state["predictor"] is not None:
            return {"status": "ready", "model": _model_info(state)}
        return JSONResponse({"status": "failed" if state["error"] else "loading", "error": state["error"]},
                            status_code=503)

    @app.get("/metrics", dependencies=[Depends(check_key)])
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    page = files("finpeft.inference").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page
