"""Export a saved run to ONNX (`finpeft export`) and serve it with onnxruntime, no torch model needed.

The exported folder is itself a run dir (artifact "onnx": model.onnx, tokenizer files, run.json), so
`finpeft.load`, `predict` and `evaluate` take it like any run.
"""
from __future__ import annotations

import contextlib

import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from finpeft.errors import FinpeftError
from finpeft.core.runs import finish
from finpeft.core.runinfo import write_run_info
from finpeft.inference.onnx_runtime import INT8_BATCH, OnnxClassifier, _require_onnx  # noqa: F401  (re-exported)

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def exportable() -> str:
    """The methods whose exports are tested against torch (each method module's ONNX = True)."""
    from finpeft.methods import METHODS, get_method
    return ", ".join(n for n in METHODS if get_method(n).ONNX)


def load_torch_model(run_dir: Path, info: dict):
    """(tokenizer, eval-mode torch model) of a saved run, as `finpeft.load` builds it."""
    from finpeft.inference.artifacts import load_model as _load_model
    try:
        tokenizer, model = _load_model(run_dir / "model", info)
    except (OSError, ValueError, KeyError) as e:
        raise FinpeftError(f"{run_dir}: the model could not be loaded: {str(e).splitlines()[0][:200]}") from None
    return tokenizer, model.eval()


def _logits_module(model, names: tuple[str, ...]):
    """The classifier as `inputs -> logits`, positional in `names` order: the graph's signature."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            return self.model(**dict(zip(names, args))).logits

    return Logits().eval()  # eval: the exporter puts the wrapper's mode back onto the model afterwards


def _input_names(tokenizer) -> tuple[str, ...]:
    keys = tokenizer(["a"]).keys()
    return tuple(n for n in INPUTS if n in keys)


@contextlib.contextmanager
def _quiet_onnx_log():
    """Silence the TorchScript exporter's graph dump for the duration (it prints the whole graph on a failure)."""
    import torch
    saved = torch._C._jit_onnx_log
    torch._C._jit_onnx_log = lambda *a: None
    try:
        yield
    finally:
        torch._C._jit_onnx_log = saved


def _register_rms_norm() -> None:
    """aten::rms_norm (nn.RMSNorm in the adapter blocks) has no opset-17 symbolic: spell it out."""
    import torch
    from torch.onnx import register_custom_op_symbolic, symbolic_helper as sh

    def rms_norm(g, x, normalized_shape, weight, eps):
        axes = [-(i + 1) for i in range(len(sh._get_const(normalized_shape, "is", "normalized_shape")))]
        eps = torch.finfo(torch.float32).eps if sh._is_none(eps) else float(sh._maybe_get_const(eps, "f"))
        ms = g.op("ReduceMean", g.op("Mul", x, x), axes_i=axes, keepdims_i=1)
        y = g.op("Div", x, g.op("Sqrt", g.op("Add", ms, g.op("Constant", value_t=torch.tensor(eps)))))
        return y if sh._is_none(weight) else g.op("Mul", y, weight)

    register_custom_op_symbolic("aten::rms_norm", rms_norm, OPSET)


def _export_graph(model, tokenizer, path: Path) -> tuple[str, ...]:
    import torch
    _register_rms_norm()
    names = _input_names(tokenizer)
    # Trace on a padded batch of two lengths, so the attention-mask path is the one recorded.
    enc = tokenizer(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Sales fell."], padding=True,
                    return_tensors="pt")
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # The fused nn.MultiheadAttention kernel (attention-adapter) has no ONNX form; its plain ops do.
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_onnx_log():  # else a failure dumps the whole graph
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
            # dynamo=False: the TorchScript exporter needs no onnxscript and traces these encoders faithfully.
            torch.onnx.export(_logits_module(model, names), tuple(enc[n] for n in names), str(path),
                              input_names=list(names), output_names=["logits"],
                              dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=OPSET, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return names


def _check_graph(model, tokenizer, path: Path, names: tuple[str, ...]) -> None:
    """A traced graph can bake in the trace's shapes (e.g. a scan's chunk length): run it on other batch and
    sequence sizes against torch before anything is written."""
    import onnxruntime as ort
    import torch
    texts = [["Net sales decreased by 4.5 % to EUR 21.7 mn, while operating profit rose. " * 6, "Up.", "Flat year."],
             ["Profit warning."]]
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for batch in texts:
            enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
            got = session.run(None, {n: enc[n].numpy().astype(np.int64) for n in names})[0]
            with torch.no_grad():
                want = model(**{n: enc[n] for n in names}).logits.float().numpy()
            diff = float(np.abs(got - want).max())
            if not diff < 1e-3:
                raise ValueError(f"logits differ by {diff:.3g} from torch on a batch of {len(batch)}")
    except Exception as e:  # onnxruntime raises its own types for an invalid graph
        detail = str(e).splitlines()[0][:120]
        raise ValueError(f"the traced graph fails on other batch/sequence sizes: {detail}") from None


FUSABLE = {"bert", "roberta", "xlm-roberta", "electra", "distilbert"}  # onnxruntime's transformer fusions apply


def _eager_attention(model) -> None:
    """Trace BERT-family attention as its plain matmul-softmax ops (the eager path): onnxruntime's optimizer fuses
    that pattern into one `Attention` op (which int8 quantisation turns into `QAttention`), while the SDPA path
    traces to a graph it leaves unfused. Measured in bench/bench_serve_throughput.py."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in FUSABLE and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError):  # a model without an eager path keeps what it has
            pass


def _optimize(path: Path, config) -> bool:
    """Fuse attention, LayerNorm, GELU and bias-adds in place (onnxruntime.transformers' optimizer, offline):
    fewer, larger kernels on the CPU. Returns whether it ran; the parity check guards the result."""
    if getattr(config, "model_type", None) not in FUSABLE:
        return False
    import logging
    from onnxruntime.transformers.optimizer import optimize_model
    logging.disable(logging.WARNING)
    try:
        opt = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                             hidden_size=config.hidden_size, opt_level=1)  # portable fusions only (no hardware ops)
        opt.save_model_to_file(str(path))
    except Exception:  # noqa: BLE001 - an unfused graph is still a correct one
        return False
    finally:
        logging.disable(logging.NOTSET)
    return True


def _quantize_int8(src: Path, dst: Path) -> None:
    import logging
    from onnxruntime.quantization import QuantType, quantize_dynamic
    # Dynamic quantization: int8 weights, activations quantized per batch at run time (no calibration data).
    # Per-channel scales: 0.98 argmax agreement with fp32 on FPB test rows vs 0.95 per-tensor, same size.
    logging.disable(logging.WARNING)  # its root-logger advice to pre-process changes nothing here
    try:
        import onnx
        # a fused graph holds com.microsoft ops whose outputs shape inference cannot type: they are float32
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.disable(logging.NOTSET)


MIN_AGREEMENT = {None: 0.99, "int8": 0.9}  # argmax agreement with torch below which an export is refused


def _exportable_run(run_dir: Path, quantize: str | None) -> dict:
    """The run's run.json, or one FinpeftError saying why this run (or this --quantize) cannot be exported."""
    from finpeft.inference.artifacts import read_run_info
    from finpeft.methods import get_method
    info = read_run_info(run_dir)
    if quantize not in (None, "int8"):
        raise FinpeftError(f"--quantize must be int8 (or left out), not {quantize!r}")
    why = {"onnx": "already an ONNX export; export the run it came from",
           "ensemble": "an ensemble is not one graph; distil it (train.distill_from=RUN) and export that",
           "llm": "LLM runs are not exported to ONNX (serve or load the run itself; `finpeft llm merge` folds the "
                  "adapter into a plain transformers model)"}.get(info["artifact"])
    if why:
        raise FinpeftError(f"{run_dir}: {why}")
    if get_method(info["method"]).ONNX is False:
        raise FinpeftError(f"{run_dir}: method {info['method']} cannot be exported to ONNX (its LSTM runs on packed "
                           f"sequences); methods that export: {exportable()}")
    return info


def export_onnx(run_dir: str | Path, output: str | Path | None = None, quantize: str | None = None,
                parity_rows: int = 0, parity_data: str | dict | None = None, say=lambda msg: None,
                min_agreement: float | None = None) -> Path:
    """Export a run to an ONNX folder (default RUN_DIR/onnx, or RUN_DIR/onnx-int8; an earlier export there is
    replaced); returns the folder. parity_rows > 0: compare with the torch model on that many test rows of
    `parity_data` (a dataset id, a recipe `data:` mapping, or None: the run's own data and columns), store the
    numbers in the folder's run.json, and refuse the export (nothing written) when the argmax agreement is under
    `min_agreement` (default 0.99 for fp32, 0.9 for int8)."""
    run_dir = Path(run_dir)
    info = _exportable_run(run_dir, quantize)
    if parity_rows < 0:
        raise FinpeftError(f"--parity-rows must be 0 or more, not {parity_rows}")
    _require_onnx()
    if parity_rows:
        if parity_data is None:  # the run's own test split, with its columns and encoding
            parity_data = run_data(run_dir) or "fpb"
        from finpeft.tasks import get_task
        _dataset_rows(parity_data, "test", 1, get_task(info.get("task")), info)  # a bad --parity-data fails now
    out = Path(output) if output else run_dir / ("onnx-int8" if quantize else "onnx")
    if out.exists() and not _is_export(out):  # never delete what is not ours to replace
        raise FinpeftError(f"{out}: exists and is not an ONNX export folder; pick another --output")
    if not out.parent.is_dir():
        raise FinpeftError(f"{out}: folder {out.parent} does not exist")
    t0 = time.perf_counter()
    tokenizer, model = load_torch_model(run_dir, info)
    if hasattr(model, "merge_and_unload"):  # one plain graph: adapter deltas folded into the base weights
        model = model.merge_and_unload().eval()  # (predict's loader already merges LoRA/DoRA)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        fp32 = work / ("model-fp32.onnx" if quantize else "model.onnx")
        try:
            _eager_attention(model)
            names = _export_graph(model, tokenizer, fp32)
            fused = _optimize(fp32, getattr(model, "config", None))
            _check_graph(model, tokenizer, fp32, names)
        except Exception as e:  # tracer/exporter failures name the op; report them on one line
            detail = str(e).splitlines()[0][:160] if str(e) else ""
            raise FinpeftError(f"{run_dir}: method {info['method']} could not be exported to ONNX ({type(e).__name__}: "
                               f"{detail}); methods that export: {exportable()}") from None
        if quantize:
            _quantize_int8(fp32, work / "model.onnx")
            fp32.unlink()
        tokenizer.save_pretrained(work)
        for extra in ("recipe.yaml",):  # lets `finpeft evaluate EXPORTED` find the run's own data
            if (run_dir / extra).is_file():
                shutil.copy2(run_dir / extra, work / extra)
        exported = {**info, "artifact": "onnx",
                    "onnx": {"quantize": quantize, "opset": OPSET, "inputs": list(names), "fused": fused,
                             "source_run": str(run_dir.resolve()),
                             "export_seconds": round(time.perf_counter() - t0, 1), "parity": None}}
        write_run_info(work, exported)
        if parity_rows:
            say(f"parity check on {parity_rows} {_data_name(parity_data)} test rows")
            # A peft run is compared unmerged (re-loaded), so the merge is checked too.
            reuse = None if info["artifact"] == "peft" else (tokenizer, model)
            par = parity(run_dir, work, parity_data, "test", parity_rows, torch_model=reuse)
            exported["onnx"]["parity"] = par
            floor = MIN_AGREEMENT[quantize] if min_agreement is None else min_agreement
            if par["agreement"] < floor:
                raise FinpeftError(f"{run_dir}: the ONNX model agrees with torch on {par['agreement']:.3f} of "
                                   f"{par['rows']} {_data_name(parity_data)} test rows, under {floor}; nothing written")
            write_run_info(work, exported)
        elif quantize:  # not compared: at least run the quantised graph once
            OnnxClassifier(work).predict_proba(["Operating profit rose.", "Sales fell."], info["max_length"])
        finish(work, out)  # an earlier export there is moved aside first, never lost midway
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _is_export(path: Path) -> bool:
    try:
        return json.loads((path / "run.json").read_text(encoding="utf-8")).get("artifact") == "onnx"
    except (OSError, ValueError, AttributeError):
        return False


def run_data(run_dir: str | Path) -> dict:
    """The `data:` section a run was trained with (its recipe.yaml), {} when there is none."""
    import yaml
    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("data") or {})


def _dataset_rows(data: str | dict, split: str, rows: int, kind, info: dict):
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import validate_recipe
    if split not in ("train", "valid", "test"):
        raise FinpeftError(f"split must be train, valid or test, not {split!r}")
    tree = {"dataset": data} if isinstance(data, str) else {k: v for k, v in data.items() if k != "mix"}
    cfg = validate_recipe({"data": tree}, "--parity-data").data
    if cfg.task is None:  # rows read as the run's task reads them
        cfg = cfg.model_copy(update={"task": kind.name, **kind.data_config(info, cfg)})
    return getattr(load_dataset_splits(cfg), split).iloc[:rows]


def _data_name(data: str | dict) -> str:
    return data if isinstance(data, str) else str(data.get("dataset", "fpb"))


def parity(run_dir: str | Path, onnx_dir: str | Path, dataset: str | dict = "fpb", split: str = "test", rows: int = 256,
           batch_size: int = 64, torch_model=None) -> dict:
    """Torch vs ONNX predictions on the first `rows` rows of a dataset split, as the run's task compares them:
    argmax agreement + the largest probability difference + each side's accuracy (classification), the
    same sign band + the largest score difference + each side's MSE (regression), the same label set
    (multilabel)."""
    from finpeft.inference.artifacts import read_run_info
    from finpeft.data.batching import predict_outputs
    from finpeft.tasks import get_task
    run_dir, onnx_dir = Path(run_dir), Path(onnx_dir)
    info = read_run_info(run_dir)
    kind = get_task(info.get("task"))
    df = _dataset_rows(dataset, split, rows, kind, info)
    texts = df["text"].tolist()
    tokenizer, model = torch_model or load_torch_model(run_dir, info)
    ref = predict_outputs(model, tokenizer, texts, info["max_length"], batch_size, kind.output)
    got = OnnxClassifier(onnx_dir).predict_outputs(texts, info["max_length"], batch_size, kind.output)
    return {"dataset": _data_name(dataset), "split": split, "rows": len(texts),
            **kind.parity(ref, got, df["label"], info)}