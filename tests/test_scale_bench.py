"""`finpeft bench GRID --engine ray`: each cell a Ray task; same leaderboard, resume and failure handling."""
import pandas as pd
import pytest
import yaml

from conftest import TINY
from test_cli import assert_clean_error, finpeft

pytest.importorskip("ray", reason="the scale extra: pip install -e '.[dev,scale]'")


def test_bench_cells_run_as_ray_tasks_and_resume(tmp_path):
    grid = {"overrides": [*TINY, "data.max_train_samples=120"], "datasets": ["fpb"], "seeds": [42, 43],
            "methods": ["head"]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    out = tmp_path / "lb"
    res = finpeft("bench", str(tmp_path / "grid.yaml"), "--output", str(out), "--engine", "ray")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 cells submitted to Ray" in res.stderr
    lb = pd.read_csv(out / "leaderboard.csv")
    done = lb[lb.status == "done"]
    assert sorted(done.seed) == [42, 43] and set(done.method) == {"head"} and done.accuracy.notna().all()
    assert len(pd.read_csv(out / "results.csv")) == 2
    again = finpeft("bench", str(tmp_path / "grid.yaml"), "--output", str(out), "--engine", "ray")
    assert again.returncode == 0 and "submitted" not in again.stderr  # nothing left to run


def test_bench_ray_address_that_does_not_answer_is_one_line(tmp_path):
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"datasets": ["fpb"], "methods": ["head"]}))
    res = finpeft("bench", str(tmp_path / "grid.yaml"), "--output", str(tmp_path / "lb"), "--engine", "ray",
                  "--address", "127.0.0.1:1")
    assert_clean_error(res, "no ray head answers")
    assert not (tmp_path / "lb").exists()
