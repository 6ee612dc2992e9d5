"""`finpeft tune --storage URL`: one Optuna study shared by several processes on a real PostgreSQL server."""
import subprocess
import sys

import optuna
import pandas as pd

from conftest import TINY
from test_bench_tune import _tune_recipe
from test_cli import assert_clean_error, finpeft


def _tune_cmd(recipe, out, url, trials):
    return [sys.executable, "-m", "finpeft.cli", "tune", str(recipe), *TINY, "--trials", str(trials), "--storage", url,
            "--study-name", "shared", "--output", str(out)]


def test_two_processes_share_one_postgres_study_and_its_total(tmp_path, postgres_url):
    """Two `finpeft tune` processes (two 'machines', each its own study dir) on one PostgreSQL study: 5 trials in
    all, split between them, no trial run twice, both summaries naming the same best trial."""
    recipe = _tune_recipe(tmp_path)
    outs = [tmp_path / "m1", tmp_path / "m2"]
    procs = [subprocess.Popen(_tune_cmd(recipe, o, postgres_url, 5), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for o in outs]
    logs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    study = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql:", "postgresql+psycopg:"))
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 5
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    workers = [t.user_attrs["worker"] for t in done]  # host:pid of the process that ran each trial
    assert len(set(workers)) == 2, workers  # the work was split between the two processes
    # and no trial was run by both: each process's run dirs (pruned trials' are removed) are its own trials
    ran = [{p.name for p in (o / "trials").iterdir()} if (o / "trials").is_dir() else set() for o in outs]
    assert not ran[0] & ran[1]
    assert not [t for t in study.trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    best = [pd.read_json(o / "best.json", typ="series") for o in outs]
    assert best[0]["trial"] == study.best_trial.number
    # A third process with the same total finds the study finished and runs nothing.
    res = subprocess.run(_tune_cmd(recipe, tmp_path / "m3", postgres_url, 5), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and "resuming: 5 of 5" in res.stdout, res.stdout + res.stderr
    assert not (tmp_path / "m3" / "trials").exists()


def test_a_storage_url_that_cannot_connect_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "study"
    res = finpeft("tune", str(_tune_recipe(tmp_path)), "--trials", "2", "--storage",
                  "postgresql://someone:secret@127.0.0.1:1/nowhere", "--output", str(out))
    assert_clean_error(res, "cannot connect")
    assert "secret" not in res.stderr and not out.exists()
    assert_clean_error(finpeft("tune", str(_tune_recipe(tmp_path)), "--storage", "not a url", "--output", str(out)),
                       "not a database URL")


def test_the_default_path_never_imports_ray_or_psycopg():
    """`pip install -e .` stays as it is: importing finpeft, its API and its CLI loads neither engine."""
    code = ("import sys, finpeft, finpeft.cli, finpeft.api, finpeft.inference.predictor, finpeft.experiments.bench, "
            "finpeft.experiments.tune, finpeft.inference.archive; "
            "print(sorted(m for m in ('ray', 'psycopg', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
