"""What a user means: a bare string is one text, empty texts are refused, artifacts are readable by others,
a spreadsheet's cp1252 + CRLF CSV reads right everywhere, recipe typos get a suggestion, --version."""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import TINY

FINPEFT = [sys.executable, "-m", "finpeft.cli"]


def run(*args, cwd=None):
    return subprocess.run([*FINPEFT, *args], capture_output=True, text=True, cwd=cwd)


def test_bare_string_is_one_text(full_run):
    from finpeft import load
    p = load(full_run)
    text = "Operating profit rose to EUR 13.1 mn."
    one = p.predict(text)
    assert len(one) == 1 and one == p.predict([text])
    assert p.predict_proba(text).shape == (1, 3)


def test_empty_and_non_string_texts_are_refused(full_run):
    from finpeft import load
    p = load(full_run)
    with pytest.raises(ValueError, match="texts\\[1\\] is empty"):
        p.predict(["Sales rose.", "   "])
    with pytest.raises(TypeError, match="texts\\[0\\]"):
        p.predict([3.5])


def test_predict_file_gives_empty_rows_no_prediction(full_run, tmp_path):
    from finpeft import load
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["Sales rose 20 %.", "", "Loss widened."]}).to_csv(src, index=False)
    n = load(full_run).predict_file(src, tmp_path / "out.csv", progress=False)
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert n == 3 and out["label"].tolist()[1] == "" and out["label"].tolist()[0] != ""


def test_artifacts_follow_the_umask(lora_run, tmp_path):
    # lora_run was written under the test process's umask (022 by default in CI and shells)
    old = os.umask(0o022)
    try:
        from finpeft import train
        out = train(None, TINY + ["method=lora", "train.lr=1e-3", "train.epochs=0.2"], output=tmp_path / "r")
    finally:
        os.umask(old)
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o755 if p.is_dir() else 0o644), f"{p.relative_to(out)}: {oct(mode)}"
    assert (out / "model" / "adapter_model.safetensors").is_file()


def test_lora_is_merged_for_inference(lora_run):
    from finpeft import load
    p = load(lora_run)
    assert not any("lora_" in n for n, _ in p.model.named_parameters())  # one plain model, no adapter hops


@pytest.fixture(scope="module")
def cp1252_csv(tmp_path_factory, data_dir):
    """Real FPB rows saved the way Excel on Windows saves a CSV: cp1252, CRLF, with € – ’ in the texts."""
    df = pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv").groupby("label").head(20)
    df = df.assign(text=df["text"] + " – the firm’s sales were €5 mn").rename(
        columns={"text": "headline", "label": "sentiment"})
    df["sentiment"] = df["sentiment"].map({"positive": "Bullish", "negative": "Bearish", "neutral": "Neutral"})
    path = tmp_path_factory.mktemp("xl") / "excel.csv"
    path.write_bytes(df.to_csv(index=False, lineterminator="\r\n").encode("cp1252"))
    return path, df


def test_cp1252_crlf_csv_is_read_right(cp1252_csv, capsys):
    from finpeft.data.load import read_table
    path, df = cp1252_csv
    got = read_table(path)
    assert got["headline"].tolist() == df["headline"].tolist()  # € – ’ intact, no \r left
    assert "cp1252" in capsys.readouterr().err
    assert read_table(path, "cp1252")["headline"].tolist() == df["headline"].tolist()


def test_cp1252_csv_in_data_check_and_predict(cp1252_csv, full_run, tmp_path):
    path, df = cp1252_csv
    res = run("data", "check", str(path), "--text-column", "headline", "--label-column", "sentiment")
    assert res.returncode == 0, res.stderr
    assert "cp1252" in res.stderr
    res = run("predict", str(full_run), "--input", str(path), "--output", str(tmp_path / "o.csv"),
              "--text-column", "headline")
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["headline"].tolist() == df["headline"].tolist()
    assert "rows/s" in res.stderr  # progress lines, not a terminal bar, when stderr is not a terminal


def test_recipe_typos_get_a_suggestion():
    res = run("train", "train.epoch=2")
    assert res.returncode == 2 and "did you mean 'train.epochs'" in res.stderr
    res = run("train", "data.text_column", "headline")
    assert res.returncode == 2 and "key=value" in res.stderr and "Traceback" not in res.stderr


def test_version():
    from finpeft import __version__
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"finpeft {__version__}"


def test_signed_integer_labels_are_flagged(tmp_path, data_dir):
    df = pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv").head(60)
    df["label"] = df["label"].map({"negative": -1, "neutral": 0, "positive": 1})
    df.to_csv(tmp_path / "s.csv", index=False)
    res = run("data", "check", str(tmp_path / "s.csv"))
    assert "-1/0/1" in res.stdout and "no problems found" not in res.stdout


def test_majority_baseline_and_collapse_warning(full_run):
    from finpeft.inference.evaluate import classification_metrics, warnings_for
    m = json.loads((full_run / "metrics.json").read_text())
    counts = {l: c["support"] for l, c in m["per_class"].items()}
    top = max(counts, key=counts.get)
    assert m["baseline"]["label"] == top
    assert m["baseline"]["accuracy"] == pytest.approx(counts[top] / m["n"])
    assert "Majority-class baseline" in (full_run / "report.md").read_text()
    # a model that always answers one class: no better than the baseline, the other classes collapsed
    y = np.array([0] * 30 + [1] * 50 + [2] * 20)
    probs = np.tile([0.1, 0.8, 0.1], (100, 1))
    w = warnings_for(classification_metrics(y, probs, ["negative", "neutral", "positive"]))
    assert any("majority-class baseline" in x for x in w)
    assert any("'negative'" in x for x in w) and any("'positive'" in x for x in w)


def test_user_label_names_come_back_in_every_output(tmp_path, data_dir):
    """A file labelled Bullish / Bearish / Neutral: trained on the canonical labels, answered in the user's."""
    from finpeft import load, train
    df = pd.read_csv(data_dir / "financial_phrasebank/sentences_allagree.csv").sample(frac=1, random_state=0)
    df = df.groupby("label").head(40)
    df["label"] = df["label"].map({"positive": "Bullish", "negative": "Bearish", "neutral": "Neutral"})
    df.to_csv(tmp_path / "mine.csv", index=False)
    out = train(None, TINY + [f"data.dataset={tmp_path / 'mine.csv'}", "data.max_train_samples=null",
                              "data.max_eval_samples=null", "train.lr=3e-4"], output=tmp_path / "run")
    info = json.loads((out / "run.json").read_text())
    assert info["labels"] == ["negative", "neutral", "positive"]
    assert info["label_names"] == {"negative": "Bearish", "neutral": "Neutral", "positive": "Bullish"}
    p = load(out).predict("Operating profit rose to EUR 13.1 mn.")[0]
    assert p["label"] in ("Bearish", "Neutral", "Bullish") and set(p["probabilities"]) == {"Bearish", "Neutral", "Bullish"}
    assert "| Bullish |" in (out / "report.md").read_text()
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["Sales rose 20 %."]}).to_csv(src, index=False)
    load(out).predict_file(src, tmp_path / "o.csv", progress=False)
    assert {"p_Bullish", "p_Bearish", "p_Neutral"} <= set(pd.read_csv(tmp_path / "o.csv").columns)


def test_bench_names_file_datasets_by_their_name():
    from finpeft.experiments.bench import dataset_name
    assert dataset_name("/tmp/tmpab12cd/my_tweets.csv") == "my_tweets"
    assert dataset_name("fpb") == "fpb" and dataset_name("data/splits/") == "splits"
