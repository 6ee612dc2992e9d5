"""`finpeft serve`: a FastAPI app over a saved run (PyTorch) or its ONNX export.

POST /v1/predict {"texts": [...]} -> label, class probabilities and score P(pos) - P(neg) per text.
Requests are micro-batched: texts that arrive within `max_wait_ms` of each other (up to `max_batch`) go
through the model in one forward pass, so throughput grows with concurrent load. GET /healthz (process up),
/readyz (model loaded), /metrics (Prometheus text), /docs (OpenAPI), / (a page to try the model; no CDN).
"""

import asyncio
import hmac
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Callable

from pydantic import BaseModel, Field, StringConstraints, create_model

from . import __version__
from .errors import FinpeftError


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
    from .predict import read_run_info
    run_dir = Path(run_dir)
    artifact = read_run_info(run_dir)["artifact"]
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

    def __init__(self, predict_proba: Callable, max_batch: int, max_wait_ms: float, on_batch: Callable = None):
        self.predict_proba = predict_proba
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.on_batch = on_batch or (lambda n: None)
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finpeft-model")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]):
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((texts, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0][0])
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:  # gather company until the batch is full or the first text waited long enough
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                items.append(item)
                n += len(item[0])
            texts = [t for ts, _ in items for t in ts]
            try:
                probs = await loop.run_in_executor(self.pool, self.predict_proba, texts)
                self.on_batch(len(texts))
            except Exception as e:  # noqa: BLE001 - hand the failure to every waiting request
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for ts, fut in items:
                if not fut.done():
                    fut.set_result(probs[i:i + len(ts)])
                i += len(ts)


class BodyLimit:
    """ASGI middleware: 413 for a body over the limit, by Content-Length or while a chunked body streams in."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._reject(send)
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
                    await self._reject(send)
            return {"type": "http.disconnect"} if rejected else msg

        async def guarded_send(msg):
            if not rejected:
                await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _reject(self, send):
        import json
        body = json.dumps({"error": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def load_predictor(model_dir: Path):
    from .predict import Predictor
    return Predictor(model_dir)


def create_app(model_dir: str | Path, settings: ServeSettings | None = None, loader: Callable = load_predictor):
    """The ASGI app. The model loads in a background thread: /healthz answers at once, /readyz and
    /v1/predict say 503 until it is in."""
    try:
        from fastapi import Depends, FastAPI, Request
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

    Text = Annotated[str, StringConstraints(max_length=s.max_chars)]
    PredictRequest = create_model("PredictRequest", texts=(list[Text], Field(min_length=1, max_length=s.max_texts)))

    class Prediction(BaseModel):
        label: str
        probabilities: dict[str, float]
        score: float = Field(description="P(positive) - P(negative); 0 when the labels have neither")

    class PredictResponse(BaseModel):
        model: dict
        predictions: list[Prediction]

    def load():
        try:
            state["predictor"] = loader(model_dir)
        except Exception as e:  # noqa: BLE001 - reported by /readyz instead of killing the server
            state["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"

    async def lifespan(app):
        batcher = MicroBatcher(lambda texts: state["predictor"].predict_proba(texts), s.max_batch, s.max_wait_ms,
                               on_batch=batch_sizes.observe)
        batcher.start()
        state["batcher"] = batcher
        threading.Thread(target=load, daemon=True, name="finpeft-load").start()
        yield
        await batcher.stop()

    app = FastAPI(title="finpeft", version=__version__, lifespan=lifespan,
                  description="Financial-text classification: label, class probabilities and a sentiment score.")

    @app.middleware("http")
    async def observe(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        path = request.scope.get("route").path if request.scope.get("route") else "other"
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - t0)
        return response

    def check_key(request: Request):
        if s.api_key is None:
            return
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), s.api_key.encode()):  # constant time: no timing oracle
            from fastapi import HTTPException
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def model_info() -> dict:
        p = state["predictor"]
        info = p.info if p is not None else {}
        d = model_dir.resolve()
        return {"name": d.parent.name if d.name in ("onnx", "onnx-int8") else d.name, "version": info.get("date") or info.get("finpeft_version"),
                "method": info.get("method"), "backbone": info.get("backbone"),
                "backend": "onnx" if info.get("artifact") == "onnx" else "torch", "labels": info.get("labels"),
                "finpeft_version": __version__}

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[Depends(check_key)])
    async def predict(req: PredictRequest):
        p = state["predictor"]
        if p is None:
            return JSONResponse({"error": state["error"] or "model is loading"}, status_code=503)
        probs = await state["batcher"].submit(list(req.texts))
        scores = p.score(probs)
        preds = [{"label": p.labels[int(row.argmax())],
                  "probabilities": {l: round(float(v), 6) for l, v in zip(p.labels, row)},
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

    page = files("finpeft").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index():
        return page

    if s.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=s.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-api-key"])
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes)
    return app


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          settings: ServeSettings | None = None) -> None:
    model_dir = resolve_model_dir(run_dir, backend)
    app = create_app(model_dir, settings)
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="info")
