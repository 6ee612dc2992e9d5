"""Multi-label classification (one text, several labels) on real gold-news headlines: the new task kind is one
module (finpeft/tasks/multilabel.py) + one registry line, and trains (full / lora / head), predicts, scores
files, evaluates, serves and exports like the other tasks."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import TINY

COLUMNS = ["price_direction_up", "price_direction_constant", "price_direction_down", "asset_comparison",
           "past_information", "future_information"]
MULTI = ["data.dataset=gold-headlines", "data.task=multilabel", f"data.label_columns=[{','.join(COLUMNS)}]",
         "data.max_train_samples=400", "data.max_eval_samples=200", "train.epochs=2"]


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory):
    from finpeft import train
    return train(None, TINY + MULTI + ["train.lr=3e-4", "train.epochs=5"], output=tmp_path_factory.mktemp("ml") / "full")


def test_multilabel_data_reads_the_0_1_columns_as_label_sets():
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import validate_recipe
    data = load_dataset_splits(validate_recipe({"data": {"dataset": "gold-headlines", "task": "multilabel",
                                                         "label_columns": COLUMNS}}).data)
    assert data.task == "multilabel" and data.labels == COLUMNS and data.label_names == {}
    row = data.train.iloc[0]
    assert set(row["label"].split("|")) <= set(COLUMNS)
    sizes = data.sizes()
    assert sizes["train"] > 6000 and sizes["valid"] > 900 and sizes["test"] > 1900
    # every label occurs in every split (stratified on the label sets)
    for split in (data.train, data.valid, data.test):
        present = set("|".join(split["label"]).split("|"))
        assert set(COLUMNS) <= present


def test_multilabel_refuses_bad_columns(tmp_path):
    from finpeft import train
    from finpeft.errors import FinpeftError
    with pytest.raises(FinpeftError, match="needs data.label_columns naming two or more"):
        train(None, TINY + ["data.dataset=gold-headlines", "data.task=multilabel"], output=tmp_path / "a")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"text": [f"gold rose {i}" for i in range(20)], "up": ["1", "0"] * 10,
                  "down": ["0", "maybe"] * 10}).to_csv(bad, index=False)
    with pytest.raises(FinpeftError, match="column 'down' holds 'maybe'"):
        train(None, TINY + [f"data.dataset={bad}", "data.task=multilabel", "data.label_columns=[up,down]"],
              output=tmp_path / "b")
    with pytest.raises(FinpeftError, match="setfit predicts one class per text"):
        train(None, TINY + MULTI + ["method=setfit"], output=tmp_path / "c")


def test_multilabel_full_learns_and_chooses_thresholds_on_valid(ml_run):
    m = json.loads((ml_run / "metrics.json").read_text())
    info = json.loads((ml_run / "run.json").read_text())
    assert info["task"] == "multilabel" and info["labels"] == COLUMNS and set(info["thresholds"]) == set(COLUMNS)
    assert all(0.05 <= t <= 0.95 for t in info["thresholds"].values())
    # clearly above each label's majority value (mostly "off": micro-F1 of the baseline is past_information's)
    assert m["micro_f1"] > m["baseline"]["micro_f1"] + 0.05, m
    assert m["per_label"]["price_direction_up"]["f1"] > 0.5 and m["per_label"]["price_direction_down"]["f1"] > 0.5, m
    assert "best_valid_micro_f1" in m and "| price_direction_up |" in (ml_run / "report.md").read_text()


def test_multilabel_run_predicts_files_and_evaluates(ml_run, tmp_path):
    import finpeft
    from finpeft.core.recipe import validate_recipe
    from finpeft.inference.evaluate import evaluate_run
    p = finpeft.load(ml_run)
    got = p.predict(["Gold prices rise as the dollar weakens", "Gold falls for a third straight session"])
    assert set(got[0]) == {"labels", "probabilities"} and set(got[0]["probabilities"]) == set(COLUMNS)
    assert "price_direction_up" in got[0]["labels"] and "price_direction_down" in got[1]["labels"], got
    assert p.predict_proba(["Gold prices rise"]).shape == (1, 6)  # per-label probabilities (independent sigmoids)
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2], "text": ["Gold prices rise as the dollar weakens", ""]}).to_csv(src, index=False)
    p.predict_file(src, tmp_path / "out.csv", progress=False)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["id", "text", "labels"] + [f"p_{c}" for c in COLUMNS]
    assert out["labels"].iloc[0] == "|".join(got[0]["labels"]) and out["labels"].iloc[1] == ""
    # evaluate reads the run's own label columns; the same test split gives the same numbers
    _, m = evaluate_run(ml_run, validate_recipe({"data": {"dataset": "gold-headlines", "max_eval_samples": 200}}).data)
    trained = json.loads((ml_run / "metrics.json").read_text())
    assert m["micro_f1"] == pytest.approx(trained["micro_f1"], abs=1e-6) and m["n"] == trained["n"]


def test_multilabel_run_serves_and_exports(ml_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from fastapi.testclient import TestClient
    import finpeft
    from finpeft.inference.onnx import export_onnx
    from finpeft.inference.serve import create_app
    with TestClient(create_app(ml_run)) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
        r = client.post("/v1/predict", json={"texts": ["Gold prices rise as the dollar weakens"]})
        assert r.status_code == 200, r.text
        pred = r.json()["predictions"][0]
        assert pred["label"] is None and "price_direction_up" in pred["labels"] and len(pred["probabilities"]) == 6
        assert r.json()["model"]["task"] == "multilabel"
    out = export_onnx(ml_run, tmp_path / "onnx", parity_rows=48)
    par = json.loads((out / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4, par
    texts = ["Gold prices rise", "Gold slips as yields climb"]
    assert np.allclose(finpeft.load(out).predict_proba(texts), finpeft.load(ml_run).predict_proba(texts), atol=1e-4)
    assert finpeft.load(out).predict(texts)[0]["labels"] == finpeft.load(ml_run).predict(texts)[0]["labels"]


EXTRA = {"lora": ["method=lora", "train.lr=1e-3"], "head": ["method=head", "train.lr=1e-2", "train.epochs=10"],
         "mamba-adapter": ["method=mamba-adapter", "train.epochs=10"]}


@pytest.mark.parametrize("method", list(EXTRA))
def test_multilabel_with_lora_and_a_frozen_head(tmp_path, method):
    from finpeft import train
    run = train(None, TINY + MULTI + EXTRA[method], output=tmp_path / method)
    m = json.loads((run / "metrics.json").read_text())
    assert m["micro_f1"] > m["baseline"]["micro_f1"], m
    if method == "mamba-adapter":  # a head over cached states: its inspection maps the label sets too
        assert (run / "tsne.png").is_file() and (run / "gate_weights.json").is_file()
    import finpeft
    assert set(finpeft.load(run).predict(["Gold prices rise"])[0]) == {"labels", "probabilities"}
