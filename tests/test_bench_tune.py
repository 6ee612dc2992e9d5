"""`finpeft bench` (grid -> leaderboard, resume), `finpeft tune` (Optuna, resume, pruning), data.mix."""
import json
import shutil

import optuna
import pandas as pd
import pytest
import yaml

from conftest import TINY
from test_cli import assert_clean_error, finpeft

from finpeft.data import load_dataset_splits
from finpeft.data.doctor import normalise_text
from finpeft.errors import FinpeftError
from finpeft.core.recipe import load_recipe


def _grid(tmp_path, **extra):
    grid = {"overrides": [*TINY, "data.max_train_samples=120"], "datasets": ["fpb"], "seeds": [42, 43],
            "methods": ["head", {"name": "mamba-adapter N=1",
                                 "overrides": ["method=mamba-adapter", "method.num_adapter_layers=1"]}], **extra}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_bench_grid_leaderboard_and_resume(tmp_path):
    from finpeft.experiments.bench import run_grid
    out, lines = tmp_path / "lb", []
    run_grid(_grid(tmp_path), out, echo=lines.append)
    assert len(lines) == 4 and all("accuracy" in l for l in lines), lines
    df = pd.read_csv(out / "leaderboard.csv")
    assert len(df) == 4 and set(df.status) == {"done"}
    assert set(df.method) == {"head", "mamba-adapter N=1"} and set(df.seed) == {42, 43}
    assert (df.peak_rss_mb > 100).all() and (df.test_sentences_per_second > 0).all()
    assert df.weighted_f1.between(0, 1).all() and (df.trainable_params > 0).all()
    # head trains 3 x 384 + 3 weights; the Mamba adapter many more
    assert df[df.method == "head"].trainable_params.iloc[0] < df[df.method != "head"].trainable_params.iloc[0]
    md = (out / "leaderboard.md").read_text()
    assert "## fpb" in md and " ± " in md and "FinLoRA" in md and "2 pending" not in md
    assert (out / "accuracy_vs_time.png").stat().st_size > 0 and (out / "accuracy_vs_params.png").is_file()
    # Resume: only the cell whose run is gone runs again; the others are reused as they are.
    first = json.loads((out / "fpb/head/minilm-l6-s42/metrics.json").read_text())
    shutil.rmtree(out / "fpb/head/minilm-l6-s43")
    lines.clear()
    run_grid(_grid(tmp_path), out, echo=lines.append)
    assert len(lines) == 1 and "head | minilm-l6 | seed 43" in lines[0], lines
    assert json.loads((out / "fpb/head/minilm-l6-s42/metrics.json").read_text())["date"] == first["date"]
    assert len(pd.read_csv(out / "leaderboard.csv").query("status == 'done'")) == 4
    from finpeft.experiments.bench import publish
    doc = tmp_path / "docs" / "benchmarks.md"
    doc.parent.mkdir()
    doc.write_text("# Benchmarks\n\n<!-- leaderboard:start -->\nold\n<!-- leaderboard:end -->\n\n## After\n")
    publish(out, doc)
    text = doc.read_text()
    assert "old" not in text and "### fpb" in text and text.endswith("## After\n")
    assert "(leaderboard_accuracy_vs_time.png)" in text and (doc.parent / "leaderboard_accuracy_vs_time.png").is_file()
    # --report-only runs nothing: a removed cell shows as pending; another grid publishes beside, not over
    shutil.rmtree(out / "fpb/head/minilm-l6-s43")
    res = finpeft("bench", str(_grid(tmp_path)), "--output", str(out), "--report-only", "--publish", str(doc))
    assert res.returncode == 0, res.stderr
    assert not (out / "fpb/head/minilm-l6-s43").exists() and "1 pending" in (out / "leaderboard.md").read_text()
    text = doc.read_text()
    assert "<!-- grid:start -->" in text and "<!-- leaderboard:start -->" in text and "(grid_accuracy_vs_time.png)" in text


def test_bench_failed_cell_is_recorded_and_grid_goes_on(tmp_path):
    from finpeft.experiments.bench import run_grid
    out, lines = tmp_path / "lb", []
    grid = _grid(tmp_path, datasets=[str(tmp_path / "missing.csv"), "fpb"], seeds=[42], methods=["head"])
    run_grid(grid, out, echo=lines.append)
    assert "FAILED (exit 2)" in lines[0] and "file not found" in lines[0]
    assert "accuracy" in lines[1]
    df = pd.read_csv(out / "leaderboard.csv")
    assert list(df.status) == ["failed", "done"]
    lines.clear()
    run_grid(grid, out, echo=lines.append)  # the failure is remembered, not retried silently
    assert len(lines) == 1 and "failed before" in lines[0]


def test_bench_cli_rejects_a_bad_grid_before_running(tmp_path):
    bad = _grid(tmp_path, methods=["head", "prefix-tuning"])
    res = finpeft("bench", str(bad), "--output", str(tmp_path / "lb"))
    assert_clean_error(res, "unknown method")
    assert not (tmp_path / "lb" / "fpb").exists()
    (tmp_path / "typo.yaml").write_text("datasets: [fpb]\nmethod: [head]\n")
    assert_clean_error(finpeft("bench", str(tmp_path / "typo.yaml")), "unknown key 'method'")


def _tune_recipe(tmp_path):
    recipe = {"method": {"name": "head"}, "search": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "train.warmup_ratio": {"type": "categorical", "choices": [0.0, 0.1]}}}
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_tune_runs_resumes_an_interrupted_study_and_writes_best_recipe(tmp_path):
    from finpeft.experiments.tune import tune
    out, lines = tmp_path / "study", []
    tune(str(_tune_recipe(tmp_path)), TINY, 2, out, echo=lines.append)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="finpeft", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # An interruption mid-trial leaves a RUNNING trial behind (as a killed process would).
    cut = study.ask()
    cut.suggest_float("train.lr", 1e-3, 3e-2, log=True)
    cut.suggest_categorical("train.warmup_ratio", [0.0, 0.1])
    lines.clear()
    tune(str(_tune_recipe(tmp_path)), TINY, 3, out, echo=lines.append)
    assert any("trial 2 was interrupted" in l for l in lines) and any("2 of 3 trials already finished" in l for l in lines)
    study = optuna.load_study(study_name="finpeft", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 3 and states[2] == "FAIL"
    assert study.trials[3].params == cut.params  # the interrupted point was re-run, not lost
    best = load_recipe(out / "best.yaml")
    assert best.search == {} and best.method.name == "head"
    assert best.train.lr == pytest.approx(study.best_trial.params["train.lr"])
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and trials.valid_macro_f1.notna().sum() == 3


def test_prune_callback_stops_a_trial_below_the_median():
    from types import SimpleNamespace

    from finpeft.experiments.tune import _PruneOnValid
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    for v in (0.8, 0.7):
        study.add_trial(optuna.trial.create_trial(value=v, intermediate_values={1: v}, params={},
                                                  distributions={}))
    cb = _PruneOnValid(study.ask())
    with pytest.raises(optuna.TrialPruned):
        cb.on_evaluate(None, SimpleNamespace(epoch=1.0, global_step=7), None, metrics={"eval_macro_f1": 0.3})
    good = _PruneOnValid(study.ask())
    good.on_evaluate(None, SimpleNamespace(epoch=1.0, global_step=7), None, metrics={"eval_macro_f1": 0.9})


def test_tune_without_search_section_is_a_clean_error(tmp_path):
    assert_clean_error(finpeft("tune", "method=head", "--output", str(tmp_path / "s")), "no search: section")


def test_mix_merges_training_sets_without_leaking_and_scores_each(tmp_path):
    cfg = load_recipe(None, ["data.mix=[fiqa-sa, {dataset: gold-headlines, label_map: {none: neutral}}]",
                             "data.max_train_samples=200", "data.max_eval_samples=80"]).data
    d = load_dataset_splits(cfg)
    assert set(d.extra_tests) == {"fiqa-sa", "gold-headlines"}
    assert len(d.train) > 400 and set(d.train.label) == {"negative", "neutral", "positive"}
    own = load_dataset_splits(cfg.model_copy(update={"mix": []}))
    assert d.train.iloc[:len(own.train)].equals(own.train) and d.test.equals(own.test)
    mixed = set(d.train.text.iloc[len(own.train):].map(normalise_text))
    for f in [own.valid, d.test, *d.extra_tests.values()]:
        assert not mixed & set(f.text.map(normalise_text))
    with pytest.raises(FinpeftError, match="data.mix gold-headlines.*unknown label.*'none'"):
        load_dataset_splits(load_recipe(None, ["data.mix=[gold-headlines]"]).data)


def test_training_with_mix_reports_every_dataset(tmp_path):
    from finpeft import train
    run = train(None, [*TINY, "method=head", "train.lr=1e-2", "data.mix=[fiqa-sa]"], output=tmp_path / "run")
    m = json.loads((run / "metrics.json").read_text())
    assert set(m["per_dataset"]) == {"fpb", "fiqa-sa"}
    assert m["per_dataset"]["fpb"]["accuracy"] == m["accuracy"]
    fiqa = json.loads((run / "eval/fiqa-sa-test/metrics.json").read_text())
    assert fiqa["n"] == m["per_dataset"]["fiqa-sa"]["n"] == 48
    assert "fiqa-sa" in (run / "report.md").read_text()


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "bench" / "grids").glob("*.yaml")))
def test_shipped_grids_validate(path):
    from finpeft.experiments.bench import cells, load_grid
    grid = load_grid(REPO / path)
    assert len(cells(grid)) == len(grid.datasets) * len(grid.methods) * len(grid.backbones) * len(grid.seeds)


def test_cell_is_labelled_with_the_backbone_its_method_entry_sets(tmp_path):
    from finpeft.experiments.bench import cells, load_grid
    grid = load_grid(_grid(tmp_path, methods=["head", {"name": "head on a dir", "overrides": [
        "method=head", f"model.backbone={tmp_path / 'my-encoder'}"]}]))
    labels = {c["method"]: (c["backbone"], str(c["dir"])) for c in cells(grid) if c["seed"] == 42}
    assert labels["head"] == ("minilm-l6", "fpb/head/minilm-l6-s42")
    # the label names the encoder really trained; the run dir keeps the grid's name (resume finds old cells)
    assert labels["head on a dir"] == (str(tmp_path / "my-encoder"), "fpb/head_on_a_dir/minilm-l6-s42")
    twice = load_grid(_grid(tmp_path, backbones=["minilm-l6", "all-MiniLM-L6-v2"], methods=[
        {"name": "own", "overrides": ["method=head", f"model.backbone={tmp_path / 'my-encoder'}"]}]))
    with pytest.raises(FinpeftError, match="same cell"):
        cells(twice)


@pytest.mark.parametrize("path", sorted(str(p.relative_to(REPO)) for p in (REPO / "recipes").glob("*.yaml")))
def test_shipped_recipes_validate(path):
    import yaml
    from finpeft.methods import checked_method
    from finpeft.training.mlm import load_mlm_recipe
    if "objective" in yaml.safe_load((REPO / path).read_text()):  # a pretraining recipe (finpeft pretrain)
        assert load_mlm_recipe(str(REPO / path)).objective == "mlm"
        return
    recipe = load_recipe(REPO / path)
    checked_method(recipe.method)
    for pre in (recipe.model.init_from, recipe.train.distill_from):  # a prerequisite recipe must ship too
        if pre and pre.endswith(".yaml"):
            assert (REPO / pre).is_file() and not load_recipe(REPO / pre).model.init_from, pre
    if recipe.model.backbone.endswith(".yaml"):  # a backbone made by a pretraining recipe: it ships too
        assert load_mlm_recipe(str(REPO / recipe.model.backbone)).objective == "mlm"


def test_bench_stopped_with_sigterm_stops_its_running_cell(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    out = tmp_path / "lb"
    proc = subprocess.Popen([sys.executable, "-m", "finpeft.cli", "bench", str(_grid(tmp_path)), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = str(out / "fpb")
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for the first cell's train process to start
        found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
        if found:
            break
        time.sleep(0.5)
    assert found, "the first cell never started"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(1)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split() == []
    assert proc.returncode != 0 and not (out / "fpb" / "head" / "minilm-l6-s42" / "metrics.json").exists()


def test_bench_says_when_a_cell_starts_and_how_it_runs(tmp_path):
    from finpeft.experiments.bench import run_grid
    lines, progress = [], []
    run_grid(_grid(tmp_path, seeds=[42], methods=["head"]), tmp_path / "lb", echo=lines.append,
             progress=progress.append, every=0.5)
    assert len(lines) == 1 and "accuracy" in lines[0]
    assert "started (log:" in progress[0] and any(": running " in p for p in progress[1:]), progress
