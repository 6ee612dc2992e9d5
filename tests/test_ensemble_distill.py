"""`finpeft ensemble` (saved probability averaging) and `train.distill_from` (knowledge distillation)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY
from test_cli import assert_clean_error, finpeft

import finpeft as fp
from finpeft.training.distill import distill_loss

HEAD = [*TINY, "method=head", "train.lr=1e-2"]
TEXTS = ["Operating profit rose 12% to EUR 4.1 mn.", "The company cut 300 jobs after sales fell.",
         "The annual general meeting will be held on 5 May."]


@pytest.fixture(scope="module")
def head_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    return [fp.train(None, [*HEAD, f"seed={s}"], output=root / f"head-s{s}") for s in (42, 43)]


def test_ensemble_averages_members_is_self_contained_and_evaluates(head_runs, tmp_path):
    out = tmp_path / "ens"
    res = finpeft("ensemble", *map(str, head_runs), "--output", str(out), "--weights", "1,3")
    assert res.returncode == 0, res.stderr
    members = [fp.load(r).predict_proba(TEXTS) for r in head_runs]
    expected = 0.25 * members[0] + 0.75 * members[1]
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "ensemble" and m["seed"] == [42, 43] and len(m["members"]) == 2
    assert m["n"] == 48 and m["train_seconds"] == pytest.approx(sum(x["train_seconds"] for x in m["members"]), abs=0.02)
    moved = tmp_path / "moved"
    for r in head_runs:  # the ensemble keeps working when its member runs are gone
        shutil.copytree(r, moved / r.name)
        shutil.rmtree(r)
    try:
        ens = fp.load(out)
        assert np.allclose(ens.predict_proba(TEXTS), expected, atol=1e-5)
        assert [p["label"] for p in ens.predict(TEXTS)] == [ens.labels[i] for i in expected.argmax(1)]
        res = finpeft("evaluate", str(out))
        assert res.returncode == 0 and f"accuracy {m['accuracy']:.4f}" in res.stdout, res.stderr
    finally:
        for r in head_runs:
            shutil.copytree(moved / r.name, r)


def test_ensemble_rejects_members_of_other_splits(head_runs, tmp_path):
    other = fp.train(None, [*HEAD, "data.max_train_samples=64"], output=tmp_path / "other")
    assert_clean_error(finpeft("ensemble", str(head_runs[0]), str(other), "--output", str(tmp_path / "e")),
                       "other data or another split")
    assert_clean_error(finpeft("ensemble", str(head_runs[0]), "--output", str(tmp_path / "e")), "at least two")
    assert_clean_error(finpeft("ensemble", *map(str, head_runs), "--output", str(tmp_path / "e"), "--weights", "1,x"),
                       "--weights")
    assert not (tmp_path / "e").exists()


def test_distill_loss_limits():
    logits, labels = torch.randn(8, 3), torch.randint(0, 3, (8,))
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.allclose(distill_loss(logits, labels, torch.rand(8, 3).softmax(-1), 0.0, 2.0), ce)
    # a teacher equal to the student (at T=1) adds nothing
    assert distill_loss(logits, labels, logits.softmax(-1), 1.0, 1.0).abs() < 1e-5


def test_distillation_follows_the_teacher(monkeypatch, tmp_path):
    """A teacher that says 'positive' for every row, alpha=1: the student learns to say it too (gold labels,
    mostly neutral, would teach otherwise)."""
    import finpeft.training.distill as d

    def always_positive(teacher_dir, texts, labels, load_teacher):
        probs = np.full((len(texts), len(labels)), 0.01, dtype=np.float32)
        probs[:, labels.index("positive")] = 0.98
        return probs, False
    monkeypatch.setattr(d, "teacher_probabilities", always_positive)
    run = fp.train(None, [*HEAD, "train.epochs=3", "train.distill_from=teacher-dir", "train.distill_alpha=1.0",
                          "train.distill_temperature=1.0"], output=tmp_path / "student")
    m = json.loads((run / "metrics.json").read_text())
    assert m["distilled_from"] == "teacher-dir" and m["teacher_seconds"] >= 0
    cm = np.array(m["confusion_matrix"])  # rows gold, columns predicted, over the 48 test rows
    labels = json.loads((run / "run.json").read_text())["labels"]
    assert cm[:, labels.index("positive")].sum() / cm.sum() > 0.9


def test_training_below_inference_is_handed_its_teacher_loader(head_runs):
    """training.classifier sits below inference: the API passes the Predictor in; a direct call without it is
    one clear error before anything loads."""
    from finpeft.core.recipe import load_recipe
    from finpeft.errors import FinpeftError
    from finpeft.training.classifier import train
    with pytest.raises(FinpeftError, match="load_teacher"):
        train(load_recipe(None, [*TINY, f"train.distill_from={head_runs[0]}"]))


def test_distillation_from_a_saved_run_into_lora(head_runs, tmp_path):
    run = fp.train(None, [*TINY, "method=lora", "train.lr=1e-3", f"train.distill_from={head_runs[0]}"],
                   output=tmp_path / "lora-student")
    m = json.loads((run / "metrics.json").read_text())
    assert m["distilled_from"] == str(head_runs[0]) and m["n"] == 48
    assert_clean_error(finpeft("train", "method=head", *TINY, "train.distill_from=" + str(tmp_path / "nope"),
                               "--output", str(tmp_path / "x")), "not a finpeft run dir")


def test_gold_mask_keeps_unlabelled_rows_out_of_the_hard_loss():
    logits, labels = torch.randn(6, 3), torch.randint(0, 3, (6,))
    teacher = torch.rand(6, 3).softmax(-1)
    gold = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    hard_only = distill_loss(logits, labels, teacher, 0.0, 2.0, gold=gold)
    assert torch.allclose(hard_only, torch.nn.functional.cross_entropy(logits[:3], labels[:3]))
    other = labels.clone()
    other[3:] = (other[3:] + 1) % 3  # the pseudo-labels of unlabelled rows change nothing
    assert torch.allclose(hard_only, distill_loss(logits, other, teacher, 0.0, 2.0, gold=gold))


def test_transfer_texts_leave_out_every_benchmark_text(data_dir):
    from finpeft.data.doctor import normalise_text
    from finpeft.data.load import load_raw
    from finpeft.training.distill import transfer_texts
    texts, stats = transfer_texts("fin-news", [], 500, seed=1)
    assert len(texts) == 500 and stats["used"] == 500 and stats["excluded"]["tfns"] > 0
    held = {normalise_text(t) for name in ("fpb", "tfns", "fiqa-sa") for f in load_raw(name).frames.values()
            for t in f["text"]}
    assert not held & {normalise_text(t) for t in texts}
    assert transfer_texts("fin-news", [], 500, seed=1)[0] == texts  # seeded


def test_teacher_then_student_with_unlabelled_transfer_rows(head_runs, tmp_path):
    """Teacher = a saved run; student = MiniLM full on 96 FPB rows + 64 fin-news rows the teacher labels softly.
    The teacher's probabilities are cached: a second student does not pay for scoring again."""
    opts = [*TINY, "train.lr=1e-4", f"train.distill_from={head_runs[0]}", "train.distill_unlabelled=fin-news",
            "train.distill_unlabelled_max=64"]
    run = fp.train(None, opts, output=tmp_path / "s1")
    m = json.loads((run / "metrics.json").read_text())
    assert m["transfer"]["used"] == 64 and m["teacher_seconds"] is not None
    again = json.loads((fp.train(None, opts + ["seed=43"], output=tmp_path / "s2") / "metrics.json").read_text())
    assert again["teacher_seconds"] is None  # from the cache
    assert_clean_error(finpeft("train", "method=mamba-adapter", *TINY, f"train.distill_from={head_runs[0]}",
                               "train.distill_unlabelled=fin-news", "--output", str(tmp_path / "x")),
                       "distill_unlabelled needs a method that runs the encoder")
    assert not (tmp_path / "x").exists()


def test_student_recipe_trains_its_teacher_once(tmp_path, monkeypatch):
    """`train.distill_from=teacher.yaml`: the teacher is trained first into runs/teachers/, then reused."""
    import yaml
    monkeypatch.chdir(tmp_path)
    teacher = {"seed": 7, "data": {"dataset": "fpb", "max_train_samples": 96, "max_eval_samples": 48},
               "method": {"name": "head"}, "train": {"epochs": 1, "lr": 1e-2, "report_to": [], "progress_bar": False,
                                                     "early_stopping_patience": None}}
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    first = fp.train(None, [*TINY, "method=head", "train.lr=1e-2", "train.distill_from=teacher.yaml"],
                     output=tmp_path / "student1")
    m = json.loads((first / "metrics.json").read_text())
    assert m["distilled_from"] == str(Path("runs/teachers/teacher-s7")) and m["teacher_train_seconds"] > 0
    made = (tmp_path / "runs/teachers/teacher-s7/run.json").stat().st_mtime_ns
    second = fp.train(None, [*TINY, "method=head", "train.lr=1e-2", "train.distill_from=teacher.yaml", "seed=43"],
                      output=tmp_path / "student2")
    assert (tmp_path / "runs/teachers/teacher-s7/run.json").stat().st_mtime_ns == made  # reused, not retrained
    assert json.loads((second / "metrics.json").read_text())["teacher_seconds"] is None  # probabilities cached
    teacher["train"]["lr"] = 5e-3  # the teacher recipe edited: the old teacher is stale, trained again
    (tmp_path / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    third = fp.train(None, [*TINY, "method=head", "train.lr=1e-2", "train.distill_from=teacher.yaml"],
                     output=tmp_path / "student3")
    assert (tmp_path / "runs/teachers/teacher-s7/run.json").stat().st_mtime_ns != made
    assert "lr: 0.005" in (tmp_path / "runs/teachers/teacher-s7/recipe.yaml").read_text()
    assert json.loads((third / "metrics.json").read_text())["teacher_seconds"] is not None  # scored anew
