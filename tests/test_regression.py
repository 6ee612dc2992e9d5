"""Regression (a sentiment score per text, FiQA-2018 task 1): data, checks, metrics, training with full / lora /
a frozen-encoder head on real FiQA rows, and the score coming back from load / predict / evaluate / serve / export."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import TINY

SCORE = ["data=fiqa-sa-score", "train.epochs=3", "data.max_eval_samples=120"]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "fiqa_sa", "all.csv")


def test_fiqa_score_split_keeps_the_finlora_test_texts_in_test():
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import validate_recipe
    data = load_dataset_splits(validate_recipe({"data": {"dataset": "fiqa-sa-score"}}).data)
    allrows = pd.read_csv(SHARED, dtype=str, keep_default_na=False)
    finlora = set(allrows.loc[allrows["in_finlora_test"] == "yes", "text"])
    assert data.task == "regression" and data.labels == ["score"]
    assert set(data.test["text"]) == finlora and len(data.test) == 258  # every annotation of the 235 test texts
    assert not (set(data.train["text"]) | set(data.valid["text"])) & finlora
    assert data.train["label"].dtype == float and data.train["label"].between(-1, 1).all()
    # the valid split is seeded by data.split_seed, and stratified on the score's sign
    again = load_dataset_splits(validate_recipe({"data": {"dataset": "fiqa-sa-score"}}).data)
    other = load_dataset_splits(validate_recipe({"data": {"dataset": "fiqa-sa-score", "split_seed": 7}}).data)
    assert list(again.valid["text"]) == list(data.valid["text"]) != list(other.valid["text"])
    assert (data.valid["label"] < -0.1).mean() == pytest.approx((data.train["label"] < -0.1).mean(), abs=0.05)


def test_regression_metrics_and_standardiser():
    from finpeft.tasks.regression import Standardiser, regression_metrics
    y = np.array([-0.8, -0.05, 0.3, 0.6])
    perfect = regression_metrics(y, y, train_mean=0.1)
    assert perfect["mse"] == 0 and perfect["r2"] == 1 and perfect["pearson"] == pytest.approx(1)
    assert perfect["sign_accuracy"] == 1 and perfect["baseline"]["mse"] == pytest.approx(np.mean((y - 0.1) ** 2))
    m = regression_metrics(y, np.array([-0.5, 0.2, 0.3, -0.1]))  # bands: neg/pos/pos/neg vs neg/neu/pos/pos
    assert m["sign_accuracy"] == 0.5 and m["mae"] == pytest.approx((0.3 + 0.25 + 0 + 0.7) / 4)
    assert m["rmse"] == pytest.approx(np.sqrt(m["mse"]))
    s = Standardiser([1.0, 2.0, 3.0])
    assert len(s) == 1 and s[2.0] == 0 and s.inverse(np.array([s[3.0]]))[0] == pytest.approx(3.0)


@pytest.mark.parametrize("content, says", [
    ("text,score\n" + "".join(f"t{i} rose,0.{i}\n" for i in range(12)) + "t12 fell,abc\n",
     "non-numeric value(s) in the score column 'score' (row 14 'abc')"),
    ("text,score\n" + "".join(f"t{i} rose,\n" for i in range(12)), "has no numbers"),
    ("text,score\n" + "".join(f"t{i} rose,0.5\n" for i in range(12)), "is constant (0.5)"),
    ("text,score\n" + "".join(f"t{i} rose,{i}\n" for i in range(12)),
     None),  # out of [-1, 1] is fine without data.score_range ...
])
def test_bad_targets_are_one_line_and_exit_2(tmp_path, content, says):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    args = [sys.executable, "-m", "finpeft", "train", "--data", str(path), "--task", "regression", "--label-column",
            "score", "train.max_steps=1", "--output", str(tmp_path / "run")]
    if says is None:  # ... and refused with it
        args.insert(4, "data.score_range=[-1,1]")
        says = "score(s) outside data.score_range [-1.0, 1.0]"
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert says in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def score_run(tmp_path_factory):
    from finpeft import train
    return train(None, TINY + SCORE + ["data.max_train_samples=400", "train.lr=1e-4"],
                 output=tmp_path_factory.mktemp("reg") / "full")


def test_full_regression_learns_the_fiqa_score(score_run):
    m = json.loads((score_run / "metrics.json").read_text())
    info = json.loads((score_run / "run.json").read_text())
    assert info["task"] == "regression" and info["labels"] == ["score"] and set(info["target"]) == {"mean", "std"}
    assert m["task"] == "regression" and m["n"] == 120
    # learned something real: well correlated with the annotators' scores and better than the training mean
    assert m["pearson"] > 0.4 and m["r2"] > 0.1 and m["mse"] < m["baseline"]["mse"], m
    assert {"mse", "rmse", "mae", "r2", "pearson", "spearman", "sign_accuracy"} <= set(m)
    assert (score_run / "scatter.png").stat().st_size > 1000 and "R²" in (score_run / "report.md").read_text()
    errors = pd.read_csv(score_run / "largest_errors.csv")
    assert errors["abs_error"].is_monotonic_decreasing
    row = pd.read_csv(score_run.parent / "results.csv").iloc[-1]
    assert row["task"] == "regression" and row["mse"] == pytest.approx(m["mse"])


def test_regression_run_predicts_scores(score_run, tmp_path):
    import finpeft
    p = finpeft.load(score_run)
    got = p.predict(["Profit soared and the shares hit a record high", "The bank faces huge losses and a probe"])
    assert set(got[0]) == {"score"} and got[0]["score"] > got[1]["score"]
    with pytest.raises(TypeError, match="regression run"):
        p.predict_proba(["Profit soared"])
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["Shares jumped on strong earnings", ""], "score": [0.7, 0.0]}).to_csv(src, index=False)
    p.predict_file(src, tmp_path / "out.csv", progress=False)
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["text", "score", "predicted_score"] and out["score"].tolist() == [0.7, 0.0]
    assert out["predicted_score"].iloc[0] == pytest.approx(got[0]["score"], abs=0.2) and pd.isna(out["predicted_score"].iloc[1])


def test_regression_run_evaluates_and_serves(score_run):
    from fastapi.testclient import TestClient
    from finpeft.inference.evaluate import evaluate_run
    from finpeft.core.recipe import validate_recipe
    from finpeft.inference.serve import create_app
    out, m = evaluate_run(score_run, validate_recipe({"data": {"dataset": "fiqa-sa-score",
                                                                "max_eval_samples": 120}}).data)
    trained = json.loads((score_run / "metrics.json").read_text())
    assert m["mse"] == pytest.approx(trained["mse"], abs=1e-5) and (out / "scatter.png").is_file()
    with TestClient(create_app(score_run)) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
        r = client.post("/v1/predict", json={"texts": ["Profit soared", "Losses widened sharply"]})
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert preds[0]["label"] is None and preds[0]["probabilities"] is None
        assert preds[0]["score"] > preds[1]["score"] and r.json()["model"]["task"] == "regression"


def test_regression_run_exports_to_onnx(score_run, tmp_path):
    pytest.importorskip("onnxruntime")
    import finpeft
    from finpeft.inference.onnx import export_onnx
    out = export_onnx(score_run, tmp_path / "onnx", parity_rows=48)
    par = json.loads((out / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] == 1.0 and par["max_abs_score_diff"] < 1e-3, par
    texts = ["Profit soared", "Losses widened sharply"]
    assert np.allclose(finpeft.load(out).predict_scores(texts), finpeft.load(score_run).predict_scores(texts), atol=1e-3)


@pytest.mark.parametrize("method", ["lora", "mamba-adapter"])
def test_lora_and_frozen_head_regression(tmp_path, method):
    from finpeft import train
    extra = ["method=lora", "train.lr=1e-3"] if method == "lora" else \
        ["method=mamba-adapter", "method.num_adapter_layers=1", "train.epochs=10", "train.lr=1e-3"]
    run = train(None, TINY + SCORE + ["data.max_train_samples=400"] + extra, output=tmp_path / method)
    m = json.loads((run / "metrics.json").read_text())
    assert m["pearson"] > 0.3 and m["mse"] < m["baseline"]["mse"], m
    import finpeft
    assert finpeft.load(run).predict_scores(["Profit soared"]).shape == (1,)


def test_classification_only_methods_refuse_regression(tmp_path):
    from finpeft import train
    from finpeft.errors import FinpeftError
    with pytest.raises(FinpeftError, match="t5-head classifies only"):
        train(None, TINY + SCORE + ["method=t5-head"], output=tmp_path / "t5")


def test_bench_reports_a_regression_leaderboard(tmp_path):
    import yaml
    from finpeft.experiments.bench import run_grid
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"overrides": [*TINY, *SCORE, "data.max_train_samples=200", "train.lr=1e-3"],
                                    "datasets": ["fiqa-sa-score"], "seeds": [42, 43], "methods": ["head"]}))
    out, lines = tmp_path / "lb", []
    run_grid(grid, out, echo=lines.append)
    assert len(lines) == 2 and all("MSE" in l and "R²" in l for l in lines), lines
    df = pd.read_csv(out / "leaderboard.csv")
    assert set(df.task) == {"regression"} and df.mse.notna().all() and df.accuracy.isna().all()
    md = (out / "leaderboard.md").read_text()
    assert "## fiqa-sa-score (regression)" in md and "| MSE | RMSE | R² |" in md and " ± " in md
    assert "FinBERT" in md and "10-fold cross-validation" in md  # the published rows, with their protocol


def test_tune_and_ablate_say_they_do_not_cover_regression():
    from finpeft.experiments.ablate import ablate
    from finpeft.errors import FinpeftError
    from finpeft.experiments.tune import tune
    with pytest.raises(FinpeftError, match="regression recipe is not supported yet"):
        tune(None, ["data=fiqa-sa-score", "search={train.lr: {type: float, low: 1.0e-5, high: 1.0e-3}}"], 2)
    with pytest.raises(FinpeftError, match="regression recipe is not supported yet"):
        ablate(None, ["data.dataset=my.csv", "data.task=regression"], "train.lr=1e-4,1e-3")
