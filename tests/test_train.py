"""End-to-end runs on real FPB rows with the packaged MiniLM (tiny slices, one epoch)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import finpeft
from conftest import TINY
from finpeft.errors import FinpeftError

LABELS = ["negative", "neutral", "positive"]


def test_full_run_dir_contents(full_run):
    for name in ("metrics.json", "report.md", "recipe.yaml", "run.json", "confusion_matrix.png",
                 "misclassified.csv", "model/config.json", "model/model.safetensors", "model/tokenizer.json"):
        assert (full_run / name).is_file(), name
    assert not any(full_run.parent.glob(".*.partial"))
    m = json.loads((full_run / "metrics.json").read_text())
    assert m["dataset"] == "fpb-allagree" and m["split"] == "test" and m["seed"] == 42 and m["n"] == 48
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["ece"] <= 1
    assert set(m["per_class"]) == set(LABELS)
    assert sum(map(sum, m["confusion_matrix"])) == 48
    assert m["trainable_params"] == m["total_params"] > 20_000_000
    results = pd.read_csv(full_run.parent / "results.csv")
    assert results.iloc[0]["method"] == "full" and results.iloc[0]["accuracy"] == pytest.approx(m["accuracy"])


def test_full_run_learns_something(full_run):
    """192 rows, 3 epochs: clearly above the majority class (macro-F1 0.25 on 3 classes)."""
    m = json.loads((full_run / "metrics.json").read_text())
    assert m["macro_f1"] > 0.45 and m["epochs_run"] == 3


def test_predict_api_and_transformers_pipeline_agree(full_run):
    from transformers import pipeline
    p = finpeft.load(full_run)
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.",
             "The company swung to a net loss of EUR 2 mn.", "The annual meeting will be held in Helsinki."]
    out = p.predict(texts)
    assert [set(o) for o in out] == [{"label", "probabilities", "score"}] * 3
    for o in out:
        assert sum(o["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert o["score"] == pytest.approx(o["probabilities"]["positive"] - o["probabilities"]["negative"], abs=1e-5)
    pipe = pipeline("text-classification", model=str(full_run / "model"), device="cpu")
    assert [r["label"] for r in pipe(texts)] == [o["label"] for o in out]


def test_evaluate_cross_dataset(full_run):
    from finpeft.inference.evaluate import evaluate_run
    from finpeft.core.recipe import DataConfig
    out, m = evaluate_run(full_run, DataConfig(dataset="fiqa-sa"))
    assert m["n"] == 235 and (out / "report.md").is_file() and m["dataset"] == "fiqa-sa"
    with pytest.raises(FinpeftError, match="not among the model's labels"):
        evaluate_run(full_run, DataConfig(dataset="gold-headlines"))
    _, m = evaluate_run(full_run, DataConfig(dataset="gold-headlines", label_map={"none": "neutral"}))
    assert 2100 <= m["n"] <= 2125  # the 20% test split of 10,570 headlines


def test_evaluate_own_data_reproduces_training_metrics(full_run):
    """`finpeft evaluate RUN` re-derives the run's test split from its saved recipe: same rows, same scores."""
    import yaml
    from finpeft.inference.evaluate import evaluate_run
    from finpeft.core.recipe import validate_recipe
    cfg = validate_recipe(yaml.safe_load((full_run / "recipe.yaml").read_text())).data
    _, m = evaluate_run(full_run, cfg)
    trained = json.loads((full_run / "metrics.json").read_text())
    assert m["n"] == trained["n"] and m["confusion_matrix"] == trained["confusion_matrix"]


def test_evaluate_valid_split_is_the_one_training_chose_on(full_run):
    """`--split valid` re-derives the rows the run validated on: the restored best epoch scores its recorded
    best validation macro-F1 there (so runs can be compared without touching test)."""
    from finpeft import api
    trained = json.loads((full_run / "metrics.json").read_text())
    out, m = api.evaluate(full_run, split="valid")
    assert out.name.endswith("-valid") and m["split"] == "valid"
    assert m["n"] == trained["sizes"]["valid"]
    assert m["macro_f1"] == pytest.approx(trained["best_valid_macro_f1"], abs=1e-6)
    with pytest.raises(FinpeftError, match="test, valid or all"):
        api.evaluate(full_run, split="train")


def test_predict_file_streams_and_keeps_order(full_run, fpb_rows, tmp_path):
    src = tmp_path / "in.csv"
    rows = fpb_rows.iloc[:150][["text"]].assign(id=range(150))
    rows.to_csv(src, index=False)
    dst = tmp_path / "out.csv"
    n = finpeft.load(full_run).predict_file(src, dst, chunk_size=64, progress=False)
    out = pd.read_csv(dst)
    assert n == 150 and out["id"].tolist() == list(range(150))
    assert {"label", "p_negative", "p_neutral", "p_positive", "score"} <= set(out.columns)
    direct = finpeft.load(full_run).predict_proba(rows.text.tolist()[:5])
    assert np.allclose(out[["p_negative", "p_neutral", "p_positive"]].values[:5], direct, atol=1e-5)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_predict_file_resumes_after_interruption(full_run, fpb_rows, tmp_path, suffix):
    src = tmp_path / "in.csv"
    fpb_rows.iloc[:150][["text", "label"]].assign(id=range(150)).to_csv(src, index=False)
    predictor = finpeft.load(full_run)
    whole = tmp_path / f"whole{suffix}"
    predictor.predict_file(src, whole, chunk_size=40, progress=False)

    calls, real = [], predictor.predict_proba

    def stop_on_third_chunk(texts):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(texts)

    dst = tmp_path / f"out{suffix}"
    predictor.predict_proba = stop_on_third_chunk
    with pytest.raises(KeyboardInterrupt):
        predictor.predict_file(src, dst, chunk_size=40, progress=False)
    assert not dst.exists() and (tmp_path / f".out{suffix}.partial").is_file()  # nothing half-written at dst
    calls.clear()
    predictor.predict_proba = lambda texts: calls.append(len(texts)) or real(texts)
    assert predictor.predict_file(src, dst, chunk_size=40, progress=False) == 150
    assert calls == [40, 30]  # only the chunks not yet scored
    assert dst.read_bytes() == whole.read_bytes()
    assert not list(tmp_path.glob(".out*"))


def test_predict_file_resume_never_duplicates_rows(full_run, fpb_rows, tmp_path, monkeypatch):
    """JSONL with a blank line (pandas yields a short chunk midway), stopped after the last chunk but before
    the rename: the rerun neither rescores nor repeats rows."""
    import os
    rows = fpb_rows.iloc[:10][["text"]].assign(id=range(10)).to_dict("records")
    src = tmp_path / "in.jsonl"
    lines = [json.dumps(r) for r in rows]
    src.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    predictor, dst = finpeft.load(full_run), tmp_path / "out.csv"
    real_replace = os.replace

    def stop_before_rename(a, b):
        if str(b) == str(dst):
            raise KeyboardInterrupt
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", stop_before_rename)
    with pytest.raises(KeyboardInterrupt):
        predictor.predict_file(src, dst, chunk_size=4, progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    calls, real = [], predictor.predict_proba
    predictor.predict_proba = lambda texts: calls.append(len(texts)) or real(texts)
    assert predictor.predict_file(src, dst, chunk_size=4, progress=False) == 10
    assert calls == [] and pd.read_csv(dst)["id"].tolist() == list(range(10))


def test_lora_saves_adapter_with_head(lora_run):
    """peft loads the adapter dir over the backbone and gives the same predictions as finpeft (the trained
    classifier and pooler travel with the adapter, not a fresh random head)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from finpeft.models.backbones import resolve_backbone
    adapter = lora_run / "model"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert "classifier" in cfg["modules_to_save"] and "pooler" in cfg["modules_to_save"]
    base = AutoModelForSequenceClassification.from_pretrained(resolve_backbone("minilm-l6"), num_labels=3)
    model = PeftModel.from_pretrained(base, adapter).eval()
    tok = AutoTokenizer.from_pretrained(adapter)
    texts = ["Net sales decreased by 12 %.", "Profit before taxes increased to EUR 5.0 mn."]
    with torch.inference_mode():
        probs = torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1).numpy()
    assert np.allclose(probs, finpeft.load(lora_run).predict_proba(texts), atol=1e-5)
    m = json.loads((lora_run / "metrics.json").read_text())
    assert m["trainable_params"] < 0.1 * m["total_params"]


def test_head_method_freezes_encoder():
    from finpeft.methods import get_method, method_options
    from finpeft.models.backbones import resolve_backbone
    from finpeft.core.recipe import load_recipe
    r = load_recipe(None, ["method=head"])
    method = get_method("head")
    model = method.build(resolve_backbone("minilm-l6"), LABELS, method_options(method, r.method), r.model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}


def test_dora_builds_dora_layers():
    from finpeft.methods import get_method, method_options
    from finpeft.models.backbones import resolve_backbone
    from finpeft.core.recipe import load_recipe
    r = load_recipe(None, ["method=dora", "method.r=4"])
    method = get_method("dora")
    model = method.build(resolve_backbone("minilm-l6"), LABELS, method_options(method, r.method), r.model)
    assert any("lora_magnitude_vector" in n for n, _ in model.named_parameters())


def test_qlora_on_cpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(FinpeftError, match="needs a CUDA GPU"):
        finpeft.train(None, ["method=qlora"])


def test_interrupted_run_resumes_and_leaves_nothing_half_written(tmp_path):
    from transformers import TrainerCallback

    class StopAfterFirstSave(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    out = tmp_path / "resumable"
    overrides = [o for o in TINY if not o.startswith("train.epochs")] + ["train.epochs=2"]
    with pytest.raises(KeyboardInterrupt):
        finpeft.train(None, overrides, output=out, callbacks=[StopAfterFirstSave()])
    assert not out.exists()
    assert (tmp_path / ".resumable.partial" / "checkpoints").is_dir()
    # resuming takes the interrupted run's recipe, whatever is passed now
    finpeft.train(None, ["train.epochs=7"], output=out, resume=True)
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and not (tmp_path / ".resumable.partial").exists()
    assert 0 < m["train_samples_per_second"]
    assert not (out / "checkpoints").exists()


def test_layer_lr_decay_groups_and_training(tmp_path):
    from transformers import TrainerCallback

    from finpeft.models.backbones import resolve_backbone
    from finpeft.methods.common import load_classifier
    from finpeft.training.optim import layerwise_param_groups
    from finpeft.core.recipe import ModelConfig
    model = load_classifier(resolve_backbone("minilm-l6"), ["negative", "neutral", "positive"], ModelConfig())
    groups = layerwise_param_groups(model, 1e-4, 0.01, 0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(model.classifier.weight)] == 1e-4  # head at the recipe's lr
    assert lr_of[id(model.bert.encoder.layer[5].output.dense.weight)] == pytest.approx(0.5e-4)
    assert lr_of[id(model.bert.encoder.layer[0].output.dense.weight)] == pytest.approx(1e-4 * 0.5 ** 6)
    assert lr_of[id(model.bert.embeddings.word_embeddings.weight)] == pytest.approx(1e-4 * 0.5 ** 7)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.bert.encoder.layer[0].output.LayerNorm.weight) in no_decay
    assert id(model.classifier.weight) not in no_decay

    seen = []

    class Peek(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kw):
            if not seen:
                seen.extend(sorted({g["initial_lr"] for g in optimizer.param_groups}))

    from finpeft.core.recipe import load_recipe
    from finpeft.training.classifier import train as run_train
    run_train(load_recipe(None, TINY + ["train.layer_lr_decay=0.5", "train.lr=1e-4"]), output=tmp_path / "run",
              callbacks=[Peek()])
    assert seen[-1] == pytest.approx(1e-4) and seen[0] == pytest.approx(1e-4 * 0.5 ** 7) and len(seen) == 8


def test_freeze_embeddings_keeps_the_token_embeddings_and_trains_the_rest(tmp_path):
    from safetensors.torch import load_file

    from finpeft.core.recipe import load_recipe
    from finpeft.models.backbones import resolve_backbone
    from finpeft.training.classifier import train as run_train
    out = run_train(load_recipe(None, TINY + ["train.freeze_embeddings=true", "train.lr=1e-3"]), output=tmp_path / "r")
    m = json.loads((out / "metrics.json").read_text())
    assert m["total_params"] - m["trainable_params"] == 30522 * 384  # MiniLM's token-embedding matrix
    before = load_file(f"{resolve_backbone('minilm-l6')}/model.safetensors")
    after = load_file(str(out / "model" / "model.safetensors"))
    assert torch.equal(after["bert.embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"])
    assert not torch.equal(after["bert.encoder.layer.0.attention.self.query.weight"],
                           before["encoder.layer.0.attention.self.query.weight"])
