"""`model.init_from`: intermediate-task transfer - a run starts from another finished run's weights, head included."""
import json

import yaml
from safetensors.torch import load_file
import torch

from conftest import TINY
from test_cli import assert_clean_error, finpeft

import finpeft as fp

FIRST = {"seed": 7, "data": {"dataset": "fpb", "max_train_samples": 96, "max_eval_samples": 48},
         "method": {"name": "head"}, "train": {"epochs": 1, "lr": 1e-2, "report_to": [], "progress_bar": False,
                                               "early_stopping_patience": None}}


def _head(run):
    w = load_file(run / "model" / "model.safetensors")
    return {k: v for k, v in w.items() if k.startswith("classifier")}


def test_run_starts_from_the_intermediate_recipes_weights_trained_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(FIRST))
    # lr ~0 and one step: what the second run saves is what it started from
    second = fp.train(None, [*TINY, "method=full", "train.lr=1e-12", "train.max_steps=1",
                             "model.init_from=first.yaml"], output=tmp_path / "second")
    first = tmp_path / "runs/intermediate/first-s7"
    assert (first / "run.json").is_file()
    a, b = _head(first), _head(second)
    assert a.keys() == b.keys() and a
    for k in a:  # a fresh head would be random: the intermediate's trained head must have been loaded
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert json.loads((second / "run.json").read_text())["init_from"] == str(first)
    made = (first / "run.json").stat().st_mtime_ns
    fp.train(None, [*TINY, "method=full", "train.lr=1e-12", "train.max_steps=1", "model.init_from=first.yaml"],
             output=tmp_path / "third")
    assert (first / "run.json").stat().st_mtime_ns == made  # reused, not retrained
    # the same classes in another order would silently swap the reused head's outputs: one clear line
    res = finpeft("train", *TINY, "train.max_steps=1", f"model.init_from={first}",
                  "data.labels=[positive,neutral,negative]", "--output", str(tmp_path / "bad"))
    assert_clean_error(res, "labels")
    assert not (tmp_path / "bad").exists()


def test_init_from_what_is_not_a_finished_run_is_one_clear_error(tmp_path):
    res = finpeft("train", *TINY, f"model.init_from={tmp_path}", "--output", str(tmp_path / "out"))
    assert_clean_error(res, "not a finpeft run dir")
    assert not (tmp_path / "out").exists()
