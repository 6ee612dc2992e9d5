"""`finpeft export`: ONNX graphs of trained runs (full, LoRA merged, int8), checked against torch on real FPB
test rows, and served through `finpeft.load` / `finpeft predict` like any run."""
import json
import os
import subprocess
import sys

import pytest

from conftest import TINY

pytest.importorskip("onnxruntime")

TEXTS = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "The company cut 300 jobs after sales fell.",
         "The annual general meeting is on 5 May.", "Shares jumped 12 % on the takeover bid."]


@pytest.fixture(scope="module")
def full_onnx(full_run, tmp_path_factory):
    from finpeft.inference.onnx import export_onnx
    # Not the default RUN/onnx: full_run is shared, and test_serve checks that it has no export.
    return export_onnx(full_run, tmp_path_factory.mktemp("export") / "fp32", parity_rows=64)


def test_fp32_export_matches_torch(full_run, full_onnx):
    import finpeft
    assert {"model.onnx", "run.json", "tokenizer.json"} <= set(os.listdir(full_onnx))
    assert os.listdir(full_onnx.parent) == ["fp32"]  # no temp folder left beside it
    info = json.loads((full_onnx / "run.json").read_text())
    assert info["artifact"] == "onnx" and info["labels"] == json.loads((full_run / "run.json").read_text())["labels"]
    assert info["onnx"]["quantize"] is None and info["onnx"]["source_run"] == str(full_run.resolve())
    par = info["onnx"]["parity"]
    # parity on the run's own test split by default (full_run: 48 fpb-allagree test rows), not on FPB
    assert par["dataset"] == "fpb-allagree" and par["rows"] == 48, par
    assert par["agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4, par
    assert par["onnx_accuracy"] == par["torch_accuracy"]
    # attention traced on its eager path, so onnxruntime fuses each layer's attention into one op
    assert info["onnx"]["fused"] is True
    assert _ops(full_onnx)["Attention"] == 6 and "Softmax" not in _ops(full_onnx)

    served, ref = finpeft.load(full_onnx), finpeft.load(full_run)
    assert served.onnx is not None and not hasattr(served, "model")  # no torch model behind it
    got, want = served.predict(TEXTS), ref.predict(TEXTS)
    assert [r["label"] for r in got] == [r["label"] for r in want]
    for g, w in zip(got, want):
        assert max(abs(g["probabilities"][l] - w["probabilities"][l]) for l in w["probabilities"]) < 1e-4
    assert served.predict_proba([]).shape == (0, len(info["labels"]))


def test_int8_is_smaller_and_agrees(full_run, full_onnx, tmp_path):
    from finpeft.inference.onnx import export_onnx
    out = export_onnx(full_run, tmp_path / "int8", quantize="int8", parity_rows=64)
    ratio = (full_onnx / "model.onnx").stat().st_size / (out / "model.onnx").stat().st_size
    assert ratio > 2, ratio
    par = json.loads((out / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] >= 0.9, par
    assert json.loads((out / "run.json").read_text())["onnx"]["quantize"] == "int8"
    assert _ops(out)["QAttention"] == 6  # the fused attention is quantised too, not left in fp32


def _ops(export_dir) -> dict:
    from collections import Counter
    import onnx
    return Counter(n.op_type for n in onnx.load(str(export_dir / "model.onnx"), load_external_data=False).graph.node)


def test_lora_exports_merged(lora_run):
    from finpeft.inference.onnx import export_onnx
    out = export_onnx(lora_run, parity_rows=64)  # compared with the unmerged PeftModel
    assert out == lora_run / "onnx"
    par = json.loads((out / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4, par
    ops = {n.op_type for n in __import__("onnx").load(str(out / "model.onnx"), load_external_data=False).graph.node}
    assert "MatMul" in ops


def test_frozen_encoder_head_exports(tmp_path):
    """mamba-adapter: frozen encoder + adapter head (nn.RMSNorm, the one-step Mamba2 mixer) in one graph."""
    from finpeft import train
    from finpeft.inference.onnx import export_onnx
    run = train(None, TINY + ["method=mamba-adapter", "method.num_adapter_layers=2", "train.max_steps=2"],
                output=tmp_path / "run")
    par = json.loads((export_onnx(run, parity_rows=32) / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4, par


def test_export_refused_under_min_agreement(full_run, tmp_path):
    from finpeft.errors import FinpeftError
    from finpeft.inference.onnx import export_onnx
    with pytest.raises(FinpeftError, match="agrees with torch"):
        export_onnx(full_run, tmp_path / "strict", quantize="int8", parity_rows=32, min_agreement=1.01)
    assert not list(tmp_path.iterdir())  # nothing written, no temp folder left


def test_bad_input_is_a_finpeft_error(full_run, full_onnx, tmp_path):
    from finpeft.errors import FinpeftError
    from finpeft.inference.onnx import export_onnx
    with pytest.raises(FinpeftError, match="not a finpeft run dir"):
        export_onnx(tmp_path)
    with pytest.raises(FinpeftError, match="already an ONNX export"):
        export_onnx(full_onnx)
    with pytest.raises(FinpeftError, match="int8"):
        export_onnx(full_run, quantize="int4")
    lstm = tmp_path / "lstm"
    (lstm / "model").mkdir(parents=True)
    (lstm / "run.json").write_text(json.dumps({**json.loads((full_run / "run.json").read_text()), "method": "bilstm",
                                               "artifact": "frozen"}))
    with pytest.raises(FinpeftError, match="bilstm cannot be exported"):  # refused before any model work
        export_onnx(lstm)
    (tmp_path / "keep.txt").write_text("not ours")
    with pytest.raises(FinpeftError, match="not an ONNX export folder"):  # never deletes a foreign folder
        export_onnx(full_run, tmp_path)
    assert (tmp_path / "keep.txt").is_file()


def finpeft_cli(*args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "finpeft.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_cli_export_then_predict(full_run, tmp_path):
    out = tmp_path / "exported"
    res = finpeft_cli("export", str(full_run), "--format", "onnx", "--output", str(out), "--parity-rows", "16")
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout and "agreement" in res.stdout
    assert "parity ok: the ONNX model gives torch's label on 100.0% of rows" in res.stdout  # said what it means
    res = finpeft_cli("predict", str(out), "--text", TEXTS[0])
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[-1])["label"] in ("negative", "neutral", "positive")


def test_cli_export_bad_run_dir(tmp_path):
    res = finpeft_cli("export", str(tmp_path), "--format", "onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    errors = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and "not a finpeft run dir" in errors[0], res.stderr
