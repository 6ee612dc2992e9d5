"""`finpeft serve`: a FastAPI app over a saved run (PyTorch) or its ONNX export.

POST /v1/predict {"texts": [...]} -> label, class probabilities and score P(pos) - P(neg) per text.
Requests are micro-batched: texts that arrive within `max_wait_ms` of each other (up to `max_batch`) go
through the model in one forward pass, so throughput grows with concurrent load. GET /healthz (process up),
/readyz (model loaded), /metrics (Prometheus text), /docs (OpenAPI), / (a page to try the model; no CDN).
"""

import asyncio
import hmac
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Callable

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, create_model

from finpeft.version import __version__
from finpeft.errors import FinpeftError


class ServeSettings(BaseModel):
    max_texts: int = Field(64, ge=1, description="texts per request")
    max_chars: int = Field(2000, ge=1, description="characters per text")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="request body size")
    max_batch: int = Field(64, ge=1, description="texts per forward pass")
    max_wait_ms: float = Field(5.0, ge=0, description="how long the first text of a batch waits for company")
    api_key: str | None = Field(None, description="required in the X-API-Key header when set")
    cors_origins: list[str] = Field(default_factory=list, description="empty = CORS off")


def resolve_model_dir(run_dir: str | Path, backend: str) -> Path:
    """backend torch: the run as saved; onnx: the run's ONNX export (run_dir itself, or its onnx-int8/ or
    onnx/ folder, as `finpeft export` writes them)."""
    from finpeft.inference.predictor import read_run_info
    run_dir = Path(run_dir)
    run_info = read_run_info(run_dir)
    artifact = run_info["artifact"]
    if run_info.get("task") == "generation":
        raise FinpeftError(f"{run_dir}: this LLM run's task ({run_info.get('llm_task')}) answers in free text; the "
                           "server answers label + probabilities (classification) or a score (regression)")
    if backend not in ("auto", "torch", "onnx"):
        raise FinpeftError(f"--backend must be auto, torch or onnx, not {backend!r}")
    if backend == "torch" and artifact == "onnx":
        raise FinpeftError(f"{run_dir} is an ONNX export; serve it with --backend onnx (or auto)")
    if backend != "onnx" or artifact == "onnx":
        return run_dir
    for sub in ("onnx-int8", "onnx"):
        if (run_dir / sub / "run.json").is_file():
            return run_dir / sub
    raise FinpeftError(f"{run_dir} has no ONNX export; run: finpeft export {run_dir} --format onnx --quantize int8")


class MicroBatcher:
    """Collects texts from concurrent requests into one forward pass.

    Written by hand: the serving libraries that batch (Triton, TorchServe, Ray Serve) are whole servers; what
    is needed here is one asyncio queue and a worker. The model runs in one worker thread so the event loop
    keeps accepting requests while it computes."""

    class Busy(Exception):
        """The queue is full: the server is at capacity (503)."""

    def __init__(self, predict_proba: Callable, max_batch: int, max_wait_ms: float, on_batch: Callable = None,
                 max_queue: int = 1024, timeout_s: float = 120.0):
        self.predict_proba = predict_proba
        self.max_batch, self.max_wait, self.timeout = max_batch, max_wait_ms / 1000, timeout_s
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=max_queue)  # bounded: overload answers 503, not OOM
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finpeft-model")
        self.task: asyncio.Task | None = None
        self.held = None  # a request that did not fit the last batch: it opens the next one

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]):
        if self.task is None or self.task.done():
            raise RuntimeError("the batching worker is not running")
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((texts, fut))
        except asyncio.QueueFull:
            raise MicroBatcher.Busy from None
        return await asyncio.wait_for(fut, self.timeout)

    async def _next(self, timeout: float | None):
        if self.held is not None:
            item, self.held = self.held, None
            return item
        if timeout is None:
            return await self.queue.get()
        try:
            return self.queue.get_nowait()  # whatever already waits joins, even with max_wait 0
        except asyncio.QueueEmpty:
            if timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._next(None)]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:  # gather company until the batch is full or the first text waited long enough
                item = await self._next(deadline - loop.time())
                if item is None:
                    break
                if n + len(item[0]) > self.max_batch:
                    self.held = item
                    break
                items.append(item)
                n += len(item[0])
            try:
                await self._score(loop, items)
            except Exception:  # noqa: BLE001 - one bad request must not fail its batch-mates: score each alone
                for item in items:
                    try:
                        await self._score(loop, [item])
                    except Exception as e:  # noqa: BLE001 - handed to that request's caller
                        if not item[1].done():
                            item[1].set_exception(e)

    async def _score(self, loop, items) -> None:
        texts = [t for ts, _ in items for t in ts]
        probs = await loop.run_in_executor(self.pool, self.predict_proba, texts)
        self.on_batch(len(texts))
        i = 0
        for ts, fut in items:
            if not fut.done():  # a client that gave up (timeout, disconnect) has a done/cancelled future
                fut.set_result(probs[i:i + len(ts)])
            i += len(ts)


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by Content-Length or while a chunked body streams in."""

    def __init__(self, app, max_bytes: int, on_reject: Callable = lambda path: None):
        self.app, self.max_bytes, self.on_reject = app, max_bytes, on_reject

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(scope, send)
        seen, rejected = 0, False

        async def counted_receive():
            # A chunked body has no Content-Length: count while it streams, answer 413 ourselves at the limit
            # and tell the app the client left (the app's own error response is then dropped).
            nonlocal seen, rejected
            msg = await receive()
            if msg["type"] == "http.request" and not rejected:
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    await self._reject(scope, send)
            return {"type": "http.disconnect"} if rejected else msg

        async def guarded_send(msg):
            if not rejected:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, scope, send):
        self.on_reject(scope.get("path", ""))
        body = json.dumps(error_body(f"request body over {self.max_bytes} bytes")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def load_predictor(model_dir: Path, batch_size: int = 64):
    from finpeft.inference.predictor import Predictor
    return Predictor(model_dir, batch_size=batch_size)


def _utf8(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate ("\ud800") passes JSON parsing but no tokenizer: 422, not 500
    if not text.strip():  # an empty text has no sentiment; scoring it would return the model's prior as an answer
        raise ValueError("empty or whitespace-only text")
    return text


def _outputs(predictor, texts):
    """What the micro-batcher computes per text: class probabilities, or (regression) a column of scores."""
    if getattr(predictor, "task", "classification") == "regression":
        return predictor.predict_scores(texts)[:, None]
    return predictor.predict_proba(texts)


def error_body(message: str, details: list | None = None) -> dict:
    """The one JSON body of every error answer (4xx and 5xx): {"error": one line, "details": [...]}."""
    return {"error": message, **({"details": details} if details else {})}


def create_app(model_dir: str | Path, settings: ServeSettings | None = None, loader: Callable | None = None):
    """The ASGI app. The model loads in a background thread: /healthz answers at once, /readyz and
    /v1/predict say 503 until it is in."""
    try:
        from fastapi import Depends, FastAPI, HTTPException, Request
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException as StarletteHTTPException
        from fastapi.responses import HTMLResponse, JSONResponse, Response
        from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
        from prometheus_client import CONTENT_TYPE_LATEST
    except ImportError as e:
        raise FinpeftError(f"serve needs the serve extra ({e.name} is missing): pip install 'finpeft[serve]'") from None
    s = settings or ServeSettings()
    model_dir = Path(model_dir)
    state: dict = {"predictor": None, "error": None}

    registry = CollectorRegistry()  # one per app: several apps (tests) in one process never share counters
    requests = Counter("finpeft_requests", "HTTP requests", ["path", "status"], registry=registry)
    latency = Histogram("finpeft_request_latency_seconds", "Request latency", ["path"], registry=registry,
                        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
    batch_sizes = Histogram("finpeft_batch_size", "Texts per forward pass", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

    Text = Annotated[str, StringConstraints(max_length=s.max_chars), AfterValidator(_utf8)]
    PredictRequest = create_model("PredictRequest", texts=(list[Text], Field(min_length=1, max_length=s.max_texts)))

    class Prediction(BaseModel):
        label: str | None = Field(None, description="The predicted class (null for a regression model)")
        probabilities: dict[str, float] | None = Field(None, description="Class probabilities (null for regression)")
        score: float = Field(description="A regression model's predicted score; a classifier's P(positive) - "
                                         "P(negative) (0 when the labels have neither)")

    class PredictResponse(BaseModel):
        model: dict
        predictions: list[Prediction]

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
        batcher = MicroBatcher(lambda texts: _outputs(state["predictor"], texts), s.max_batch, s.max_wait_ms,
                               on_batch=batch_sizes.observe)
        batcher.start()
        batcher.task.add_done_callback(batcher_died)
        state["batcher"] = batcher
        threading.Thread(target=load, daemon=True, name="finpeft-load").start()
        yield
        await batcher.stop()

    app = FastAPI(title="finpeft", version=__version__, lifespan=lifespan,
                  description="Financial-text classification: label, class probabilities and a sentiment score.")

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
        return JSONResponse(error_body(str(exc.detail)), status_code=status, headers=getattr(exc, "headers", None))

    def check_key(request: Request):
        if s.api_key is None:
            return
        given = request.headers.get("x-api-key", "").encode("latin-1")  # the header's bytes as sent
        if not hmac.compare_digest(given, s.api_key.encode("utf-8")):  # constant time: no timing oracle
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def model_info() -> dict:
        p = state["predictor"]
        info = p.info if p is not None else {}
        d = model_dir.resolve()
        return {"name": d.parent.name if d.name in ("onnx", "onnx-int8") else d.name,
                "version": info.get("date") or info.get("finpeft_version"), "method": info.get("method"),
                "backbone": info.get("backbone"),
                "backend": "onnx" if info.get("artifact") == "onnx" else "torch", "task": info.get("task", "classification"),
                "labels": getattr(p, "display_labels", None) or info.get("labels"),
                "finpeft_version": __version__}

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[Depends(check_key)])
    async def predict(req: PredictRequest):
        p = state["predictor"]
        if p is None:
            return JSONResponse({"error": state["error"] or "model is loading"}, status_code=503)
        try:
            probs = await state["batcher"].submit(list(req.texts))
        except MicroBatcher.Busy:
            return JSONResponse({"error": "server at capacity; retry shortly"}, status_code=503)
        except asyncio.TimeoutError:
            return JSONResponse({"error": "scoring timed out"}, status_code=503)
        except Exception as e:  # noqa: BLE001 - this request's texts could not be scored
            return JSONResponse({"error": f"scoring failed: {type(e).__name__}: {str(e)[:200]}"}, status_code=500)
        if getattr(p, "task", "classification") == "regression":  # one column: the predicted score
            return {"model": model_info(), "predictions": [{"score": round(float(v), 6)} for v in probs[:, 0]]}
        scores = p.score(probs)
        names = getattr(p, "display_labels", p.labels)  # the user's spelling (e.g. Bullish)
        preds = [{"label": names[int(row.argmax())],
                  "probabilities": {l: round(float(v), 6) for l, v in zip(names, row)},
                  "score": round(float(sc), 6)} for row, sc in zip(probs, scores)]
        return {"model": model_info(), "predictions": preds}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        if state["predictor"] is not None:
            return {"status": "ready", "model": model_info()}
        return JSONResponse({"status": "failed" if state["error"] else "loading", "error": state["error"]},
                            status_code=503)

    @app.get("/metrics", dependencies=[Depends(check_key)])
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    page = files("finpeft.inference").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page

    if s.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-api-key"])
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes, on_reject=lambda path: requests.labels(path, "413").inc())
    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          settings: ServeSettings | None = None) -> None:
    """Load the model first (a model that cannot load is a one-line error, exit 2), then serve it."""
    s = settings or ServeSettings()
    model_dir = resolve_model_dir(run_dir, backend)
    predictor = load_predictor(model_dir, batch_size=max(s.max_batch, s.max_texts))
    app = create_app(model_dir, s, loader=lambda _: predictor)
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="info")
