"""An exported ONNX folder served by onnxruntime on the CPU (no torch model): what `finpeft.load`, predict and
serve use for an `artifact: onnx` run. The export itself is onnx.py."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from finpeft.errors import FinpeftError

# Dynamic int8 quantises each batch's activations with one scale per tensor: smaller batches keep the scale
# tight and the padding short. FPB test, MiniLM, 2 cores: 16 rows 543 sentences/s (acc 0.8185), 32 523/s
# (0.8152), 64 449/s (0.8094; torch 0.8144). An int8 graph therefore runs at most this many rows per call.
INT8_BATCH = 16


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise FinpeftError("ONNX export needs onnx and onnxruntime: pip install 'finpeft[onnx]'") from None



def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


NP_ACTIVATIONS = {"raw": lambda z: z, "softmax": _softmax, "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


class OnnxClassifier:
    """An exported folder served by onnxruntime on the CPU."""

    def __init__(self, onnx_dir: str | Path, threads: int | None = None):
        _require_onnx()
        import onnxruntime as ort
        from transformers import AutoTokenizer
        onnx_dir = Path(onnx_dir)
        path = onnx_dir / "model.onnx"
        if not path.is_file():
            raise FinpeftError(f"{onnx_dir}: no model.onnx (an ONNX export folder holds one)")
        opts = ort.SessionOptions()
        # Same thread budget as the torch backend (it honours OMP_NUM_THREADS / torch.set_num_threads).
        torch = sys.modules.get("torch")
        opts.intra_op_num_threads = threads or (torch.get_num_threads() if torch else None) or os.cpu_count() or 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for a corrupt or foreign file
            raise FinpeftError(f"{path}: cannot be loaded by onnxruntime: {str(e).splitlines()[0][:200]}") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        n = self.session.get_outputs()[0].shape[-1]
        self.n_labels = n if isinstance(n, int) else len(json.loads((onnx_dir / "run.json").read_text())["labels"])
        self.tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
        meta = onnx_dir / "run.json"  # what the export wrote: no second read of the graph at start-up
        self.int8 = meta.is_file() and (json.loads(meta.read_text()).get("onnx") or {}).get("quantize") == "int8"

    def predict_proba(self, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
        """(n, n_labels) float32 probabilities in input order; batches sorted by length, as predict.predict_proba."""
        return self.predict_outputs(texts, max_length, batch_size, "softmax")

    def predict_outputs(self, texts: list[str], max_length: int, batch_size: int = 64,
                        activation: str = "raw") -> np.ndarray:
        """(n, outputs) in input order through the task's activation: raw, softmax or sigmoid (as torch's)."""
        from finpeft.data.batching import encoded_batches
        out = np.zeros((len(texts), self.n_labels), dtype=np.float32)
        if self.int8:  # see INT8_BATCH
            batch_size = min(batch_size, INT8_BATCH)
        for idx, enc in encoded_batches(self.tokenizer, texts, max_length, batch_size, "np"):
            logits = self.session.run(None, {n: enc[n].astype(np.int64) for n in self.inputs})[0].astype(np.float64)
            out[idx] = NP_ACTIVATIONS[activation](logits)
        return out
