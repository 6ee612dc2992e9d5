"""`finpeft serve`: a FastAPI app over a saved run (PyTorch), its ONNX export, or an LLM run.

POST /v1/predict {"texts": [...], "task": optional} -> per text: label, class probabilities and score
P(pos) - P(neg) (classification), a score (regression) or text (an LLM run's generation task). Requests are
micro-batched (batcher.py); limits, error bodies and the body cap are in limits.py; the app in app.py.
GET /healthz, /readyz (model + its tasks), /metrics (Prometheus), /docs (OpenAPI), / (a page; no CDN).
"""
from pathlib import Path

from finpeft.errors import FinpeftError
from finpeft.inference.serve.app import create_app, load_predictor
from finpeft.inference.serve.batcher import MicroBatcher
from finpeft.inference.serve.limits import ServeSettings, error_body

__all__ = ["MicroBatcher", "ServeSettings", "create_app", "error_body", "resolve_model_dir", "serve"]


def resolve_model_dir(run_dir: str | Path, backend: str) -> Path:
    """backend torch: the run as saved; onnx: the run's ONNX export (run_dir itself, or its onnx-int8/ or
    onnx/ folder, as `finpeft export` writes them)."""
    from finpeft.core.runinfo import read_run_info
    run_dir = Path(run_dir)
    run_info = read_run_info(run_dir)
    artifact = run_info["artifact"]
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


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto",
          settings: ServeSettings | None = None) -> None:
    """Load the model first (a model that cannot load is a one-line error, exit 2), then serve it."""
    s = settings or ServeSettings()
    model_dir = resolve_model_dir(run_dir, backend)
    predictor = load_predictor(model_dir, batch_size=max(s.max_batch, s.max_texts))
    app = create_app(model_dir, s, loader=lambda _: predictor)
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level="info")
