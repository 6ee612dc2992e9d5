"""Domain-adaptive MLM pretraining on the fin-news corpus: leakage removal, a usable backbone dir."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY

from finpeft.models.backbones import resolve_backbone
from finpeft.data.doctor import normalise_text
from finpeft.data.load import load_raw
from finpeft.training.mlm import corpus_texts, load_mlm_recipe


def test_corpus_drops_texts_of_labelled_datasets():
    texts, stats = corpus_texts("fin-news", ["tfns"])
    # fin-news SOURCE.md: reuters shares 57 texts with tfns/train and 13 with tfns/valid, cnbc 3 with tfns/train
    assert stats["excluded"]["tfns"] >= 70
    tfns = {normalise_text(t) for f in load_raw("tfns").frames.values() for t in f["text"]}
    kept = {normalise_text(t) for t in texts}
    assert not kept & tfns and len(kept) == len(texts) == stats["kept"]
    assert stats["kept"] > 50_000 - 2_000


def test_pretrain_writes_a_backbone_that_trains(tmp_path):
    from finpeft import pretrain
    out = pretrain(None, ["objective=mlm", "exclude=[tfns]", "epochs=1", "lr=5e-4", "train.batch_size=32",
                          "max_length=32", "max_texts=400", "train.precision=bf16"], tmp_path / "dapt")
    assert load_mlm_recipe(str(out / "recipe.yaml")).train.lr == 5e-4  # the resolved recipe, re-loadable
    info = json.loads((out / "pretrain.json").read_text())
    assert info["train_texts"] + info["valid_texts"] == 400 and info["excluded"]["tfns"] >= 70
    assert info["precision"] == "bf16"  # CPU autocast, as `finpeft train` (the MPNet DAPT uses it)
    assert info["valid_mlm_loss_after"] < info["valid_mlm_loss_before"]  # the MLM head starts from random
    assert (out / "1_Pooling" / "config.json").is_file()  # sentence-vector recipe kept: mean pooling
    new = load_file(str(out / "model.safetensors"))
    old = load_file(str(next(Path(resolve_backbone("minilm-l6")).glob("*.safetensors"))))
    key = next(k for k in new if k.endswith("encoder.layer.5.output.dense.weight"))
    old_key = next(k for k in old if k.endswith("encoder.layer.5.output.dense.weight"))
    assert not torch.equal(new[key], old[old_key])  # the encoder itself was adapted
    from finpeft import train
    run = train(None, TINY + ["method=head", f"model.backbone={out}"], output=tmp_path / "run")
    m = json.loads((run / "metrics.json").read_text())
    assert m["backbone"] == str(out) and 0 <= m["accuracy"] <= 1


def test_sparse_mlm_loss_equals_the_models_own_loss():
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling
    from finpeft.training.mlm import _sparse_mlm_loss
    path = resolve_backbone("minilm-l6")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForMaskedLM.from_pretrained(path).eval()
    texts = [t for t in load_raw("fin-news").frames["all"]["text"][:16]]
    batch = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=0)([tok(t) for t in texts])
    with torch.no_grad():
        assert torch.allclose(_sparse_mlm_loss(model, dict(batch)), model(**batch).loss, atol=1e-4)


def test_pretrain_mlm_rejects_a_gpu_only_precision_before_any_work(tmp_path):
    from finpeft import pretrain
    from finpeft.errors import FinpeftError
    if torch.cuda.is_available():
        pytest.skip("fp16 is valid on a GPU")
    with pytest.raises(FinpeftError, match="fp16"):
        pretrain(None, ["objective=mlm", "max_texts=400", "train.precision=fp16"], tmp_path / "dapt")
    assert not (tmp_path / "dapt").exists()  # nothing half-written


def test_a_pretraining_recipe_as_backbone_is_built_once_and_reused(tmp_path, monkeypatch):
    """`model.backbone: dapt.yaml` (how recipes/best-fiqa-sa.yaml names its adapted MPNet): one command, the
    encoder pretrained first into runs/pretrained/, reused by later runs while the recipe text is the same."""
    import yaml
    from finpeft import train
    from test_cli import assert_clean_error, finpeft
    monkeypatch.chdir(tmp_path)
    dapt = {"objective": "mlm", "exclude": ["tfns"], "max_texts": 200, "max_length": 32, "seed": 3,
            "train": {"epochs": 1, "lr": 5e-4, "batch_size": 32}}
    (tmp_path / "dapt.yaml").write_text(yaml.safe_dump(dapt))
    run = train(None, TINY + ["method=head", "model.backbone=dapt.yaml"], output=tmp_path / "run")
    built = tmp_path / "runs/pretrained/dapt-s3"
    info = json.loads((built / "pretrain.json").read_text())
    assert info["train_texts"] + info["valid_texts"] == 200
    assert json.loads((run / "run.json").read_text())["backbone_path"] == str(built)
    made = (built / "pretrain.json").stat().st_mtime_ns
    train(None, TINY + ["method=head", "model.backbone=dapt.yaml"], output=tmp_path / "again")
    assert (built / "pretrain.json").stat().st_mtime_ns == made  # reused, not pretrained again
    (tmp_path / "not-dapt.yaml").write_text(yaml.safe_dump({"data": {"dataset": "fpb"}}))
    res = finpeft("train", *TINY, "model.backbone=not-dapt.yaml", "--output", str(tmp_path / "bad"))
    assert_clean_error(res, "not a pretraining recipe")
    assert not (tmp_path / "bad").exists()
