"""Few labels: method=setfit as a run like every other, `label suggest` / `merge`, label issues, the curve."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest



def finpeft(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "finpeft.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=900)


def _balanced(df: pd.DataFrame, per_class: int, seed: int = 0) -> pd.DataFrame:
    return pd.concat([g.sample(per_class, random_state=seed) for _, g in df.groupby("label")]).sample(
        frac=1, random_state=seed)


@pytest.fixture(scope="module")
def setfit_run(tmp_path_factory, data_dir):
    """setfit on 33 labelled FPB rows (11 per class) with FPB test rows as its test file."""
    from finpeft import train
    fpb = pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv")
    d = tmp_path_factory.mktemp("fewshot-data")
    _balanced(fpb, 11).to_csv(d / "train.csv", index=False)
    pd.read_csv(data_dir / "financial_phrasebank/finlora_split/test.csv").head(60).to_csv(d / "test.csv", index=False)
    out = tmp_path_factory.mktemp("fewshot") / "setfit"
    return train(None, [f"data.dataset={d}", "method=setfit", "method.num_iterations=4", "train.progress_bar=false"],
                 output=out)


def test_setfit_run_uses_every_label_and_is_a_run(setfit_run):
    from finpeft import load
    metrics = json.loads((setfit_run / "metrics.json").read_text())
    assert metrics["sizes"]["train"] == 33, metrics["sizes"]  # no valid split cut from 33 labels
    assert any("few labels" in n for n in metrics["notes"])
    assert metrics["body_seconds"] > 0
    assert (setfit_run / "model" / "body" / "model.safetensors").is_file()  # the tuned body travels with the run
    # the tuned body is not the packaged one: its sentence vectors moved
    m = load(setfit_run)
    preds = m.predict(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn.", "Net sales fell by 30 %."])
    assert {p["label"] for p in preds} <= {"negative", "neutral", "positive"}
    assert metrics["macro_f1"] > metrics["baseline"]["macro_f1"] + 0.1, metrics  # learned something from 33 labels


def test_setfit_body_differs_from_backbone(setfit_run):
    from safetensors.torch import load_file
    from finpeft.models.backbones import resolve_backbone
    from pathlib import Path
    tuned = load_file(str(setfit_run / "model" / "body" / "model.safetensors"))
    base = load_file(str(Path(resolve_backbone("minilm-l6")) / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith(key.split("encoder.", 1)[-1]))
    assert not np.allclose(tuned[key].numpy(), base[base_key].numpy())


def test_setfit_exports_evaluates_and_serves(setfit_run, tmp_path):
    from fastapi.testclient import TestClient
    from finpeft import evaluate, load
    from finpeft.inference.onnx import export_onnx
    from finpeft.inference.serve import create_app
    par = json.loads((export_onnx(setfit_run, tmp_path / "onnx", parity_rows=32) / "run.json").read_text())["onnx"]["parity"]
    assert par["agreement"] == 1.0 and par["max_abs_prob_diff"] < 1e-4, par
    _, m = evaluate(setfit_run, "fpb-allagree")
    assert m["n"] > 0 and m["accuracy"] > 0.5, m
    with TestClient(create_app(setfit_run)) as c:
        for _ in range(100):
            if c.get("/health/ready").status_code == 200:
                break
            import time
            time.sleep(0.2)
        r = c.post("/v1/predict", json={"texts": ["Profit doubled."]})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"][0]["label"] == load(setfit_run).predict("Profit doubled.")[0]["label"]


def test_setfit_refuses_regression(tmp_path):
    res = finpeft("train", "--data", "fiqa-sa-score", "method=setfit", "--output", str(tmp_path / "r"))
    assert res.returncode == 2 and "classifies only" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


@pytest.fixture
def pool(tmp_path, data_dir):
    df = pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv").head(400)
    df = df.assign(id=[f"row{i}" for i in range(len(df))], source="fpb")[["id", "text", "source"]]
    dup = df.iloc[[3]].assign(id="dup", text=df.iloc[3]["text"].upper() + " !")  # a near-duplicate of row3
    p = tmp_path / "pool.csv"
    pd.concat([df, dup]).to_csv(p, index=False)
    return p


def test_suggest_keeps_ids_skips_labelled_and_duplicates_and_is_deterministic(pool, tmp_path):
    from finpeft import label_suggest
    rows = pd.read_csv(pool)
    labelled = rows.iloc[:50].assign(label="neutral")
    labelled.to_csv(tmp_path / "done.csv", index=False)
    a = label_suggest(pool, 30, tmp_path / "a.csv", labelled=tmp_path / "done.csv", seed=7)
    b = label_suggest(pool, 30, tmp_path / "b.csv", labelled=tmp_path / "done.csv", seed=7)
    got = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    assert a["strategy"] == "kmeans" and a["labelled_dropped"] == 50 and a["duplicates_dropped"] >= 1
    assert list(got.columns) == ["id", "text", "source", "label"] and (got["label"] == "").all()
    assert got["id"].tolist() == pd.read_csv(tmp_path / "b.csv")["id"].tolist()  # same seed, same rows
    assert not set(got["id"]) & set(labelled["id"]) and "dup" not in set(got["id"])
    assert got["text"].str.lower().str.strip().nunique() == 30


def test_cold_start_covers_every_cluster():
    from sklearn.datasets import make_blobs
    from finpeft.experiments.selection import select
    x, y = make_blobs(n_samples=600, centers=8, n_features=16, cluster_std=0.5, random_state=0)
    picked = select("kmeans", 8, x + 10, None, seed=0)
    assert len(set(picked)) == 8 and set(y[picked]) == set(range(8))  # one row from each of the 8 groups
    rand = select("random", 8, x, None, seed=0)
    assert len(set(rand)) == 8


def test_uncertainty_strategies_pick_the_confusing_rows():
    from finpeft.experiments.selection import select
    probs = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25], [0.7, 0.2, 0.1], [0.34, 0.33, 0.33]])
    assert list(select("margin", 2, None, probs, 0)) == [3, 1]
    assert list(select("entropy", 1, None, probs, 0)) == [3]


def test_suggest_with_a_run_ranks_by_uncertainty(setfit_run, pool, tmp_path):
    from finpeft import label_suggest
    r = label_suggest(pool, 10, tmp_path / "next.csv", run=setfit_run, strategy="margin")
    from finpeft import load
    picked = pd.read_csv(tmp_path / "next.csv")
    everything = pd.read_csv(pool)
    p = load(setfit_run).predict_proba(everything["text"].tolist())
    top = np.sort(p, 1)
    margin = top[:, -1] - top[:, -2]
    chosen = everything["id"].isin(picked["id"]).to_numpy()
    # the head read the cached (fp16-stored) vectors instead of re-running the encoder: same ranking up to that
    assert r["strategy"] == "margin" and margin[chosen].max() <= np.sort(margin[~chosen])[1] + 2e-3


@pytest.mark.parametrize("args,match", [
    (["--n", "5", "--text-column", "body"], "no text column 'body'"),
    (["--n", "100000"], "100000 rows asked for"),
    (["--n", "5", "--strategy", "margin"], "give --run"),
])
def test_suggest_bad_input_is_one_line_exit_2(pool, tmp_path, args, match):
    out = tmp_path / "s.csv"
    res = finpeft("label", "suggest", str(pool), "--output", str(out), *args)
    assert res.returncode == 2 and match in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not out.exists() and not list(tmp_path.glob(".s.csv*"))


def test_suggest_empty_pool_and_foreign_labels(tmp_path, setfit_run, pool):
    (tmp_path / "empty.csv").write_text("text\n")
    res = finpeft("label", "suggest", str(tmp_path / "empty.csv"), "--n", "1", "--output", str(tmp_path / "o.csv"))
    assert res.returncode == 2 and "no rows" in res.stderr
    pd.DataFrame({"text": ["a b c"], "label": ["hawkish"]}).to_csv(tmp_path / "done.csv", index=False)
    res = finpeft("label", "suggest", str(pool), "--n", "3", "--output", str(tmp_path / "o.csv"), "--run",
                  str(setfit_run), "--labelled", str(tmp_path / "done.csv"))
    assert res.returncode == 2 and "do not match" in res.stderr and not (tmp_path / "o.csv").exists()


def test_merge_appends_only_filled_new_rows(tmp_path):
    from finpeft import label_merge
    pd.DataFrame({"text": ["Profit rose.", "Sales fell."], "label": ["up", "down"]}).to_csv(tmp_path / "t.csv",
                                                                                           index=False)
    pd.DataFrame({"id": [1, 2, 3], "text": ["profit rose", "Costs were flat.", "New CEO named."],
                  "label": ["up", "flat", ""]}).to_csv(tmp_path / "s.csv", index=False)
    r = label_merge(tmp_path / "s.csv", tmp_path / "t.csv")
    merged = pd.read_csv(tmp_path / "t.csv")
    assert r == {"output": str(tmp_path / "t.csv"), "added": 1, "unlabelled": 1, "duplicates": 1}
    assert merged["text"].tolist() == ["Profit rose.", "Sales fell.", "Costs were flat."]


def test_label_issues_finds_flipped_labels(tmp_path, data_dir):
    """Flip 20 labels of an all-agree FPB slice on purpose: most of them are among the flagged rows."""
    df = pd.read_csv(data_dir / "financial_phrasebank/sentences_allagree.csv").sample(600, random_state=0)
    df = df.reset_index(drop=True).assign(id=range(600))
    flip = df.sample(20, random_state=1).index
    swap = {"positive": "negative", "negative": "positive", "neutral": "positive"}
    df.loc[flip, "label"] = df.loc[flip, "label"].map(swap)
    df.to_csv(tmp_path / "noisy.csv", index=False)
    out = tmp_path / "issues.csv"
    res = finpeft("data", "check", str(tmp_path / "noisy.csv"), "--label-issues", str(out))
    assert res.returncode == 0, res.stderr
    got = pd.read_csv(out)
    assert list(got.columns[:4]) == ["text", "label", "suggested_label", "score"] and "id" in got.columns
    assert got["score"].is_monotonic_increasing
    # 20 of 600 rows flipped (3 %): most are flagged, and the top 40 hold them at 7x their share
    assert len(set(got["id"]) & set(flip)) >= 12 and len(got) < 150, len(got)
    assert len(set(got["id"].head(40)) & set(flip)) >= 8


def test_curve_runs_and_resumes(tmp_path, data_dir):
    from finpeft import label_curve
    kw = dict(methods=["frozen-head"], strategies=["random", "auto"], sizes=[8, 16], seeds=[42], pool_size=300,
              overrides=["data.max_eval_samples=60"])
    out = label_curve("fpb-allagree", tmp_path / "c", **kw)
    curve = pd.read_csv(out / "curve.csv")
    assert len(curve) == 4 and set(curve["labels"]) == {8, 16} and (out / "curve.png").stat().st_size > 1000
    rounds = sorted((out / "tracks").glob("*/round-16.json"))
    assert len(rounds) == 2 and len(json.loads(rounds[0].read_text())["ids"]) == 16
    stamp = [r.stat().st_mtime_ns for r in rounds]
    label_curve("fpb-allagree", tmp_path / "c", **kw)  # resumes: nothing retrained
    assert [r.stat().st_mtime_ns for r in rounds] == stamp
    assert pd.read_csv(out / "curve.csv").equals(curve)
    from finpeft.errors import FinpeftError
    with pytest.raises(FinpeftError, match="another pool"):  # its rounds are row positions in that pool
        label_curve("fpb-allagree", tmp_path / "c", **{**kw, "pool_size": 299})
    # another seed list first draws the same pool (the pool check would refuse another): seeds run apart pair up
    label_curve("fpb-allagree", tmp_path / "c", **{**kw, "seeds": [43, 42], "strategies": ["random"], "sizes": [8]})
    assert (out / "tracks" / "minilm-l6-frozen-head-random-s43" / "round-8.json").is_file()


def test_frozen_head_over_an_init_from_encoder_reloads_that_encoder(full_run, tmp_path):
    """A head trained on a finished run's encoder (classes need not match) predicts with that encoder again."""
    from conftest import TINY
    from finpeft import evaluate, train
    run = train(None, TINY + ["data=fpb-allagree", "method=setfit", "method.num_iterations=0",
                              f"model.init_from={full_run}"], output=tmp_path / "r")
    m = json.loads((run / "metrics.json").read_text())
    _, again = evaluate(run)
    assert again["accuracy"] == pytest.approx(m["accuracy"], abs=1e-9) and m["accuracy"] > 0.7, (m["accuracy"], again)


def test_curve_start_ranks_lets_the_continued_run_pick_the_first_round(full_run, tmp_path):
    """As `label suggest --run RUN` would: the run the curve continues picks the first rows, among its 10N least
    certain (margin-kmeans; slack for the rows de-duplication drops), where the k-means cold start would not."""
    from finpeft import label_curve
    from finpeft.experiments.curve import _splits
    from finpeft.inference.predictor import Predictor
    out = label_curve("fpb-allagree", tmp_path / "c", methods=["frozen-head"], strategies=["auto"], sizes=[8],
                      seeds=[42], pool_size=300, overrides=["data.max_eval_samples=60", f"model.init_from={full_run}"],
                      start_ranks=True)
    first = json.loads((out / "tracks" / "minilm-l6-frozen-head-auto+init-first-s42" / "round-8.json").read_text())
    assert set(pd.read_csv(out / "curve.csv")["strategy"]) == {"auto+init-first"}
    assert first["ranked_by"] == str(full_run)
    pool = _splits("fpb-allagree", 300)[0]
    probs = np.sort(Predictor(full_run).predict_proba(pool["text"].tolist()), axis=1)
    rank = (probs[:, -1] - probs[:, -2]).argsort().argsort()  # 0 = the least certain row of the pool
    assert rank[first["ids"]].max() < 12 * 8, sorted(rank[first["ids"]])
