"""docs/results.md is built by `finpeft results` from bench outputs: the most accurate and the fastest model per
dataset, with the command that trains it and the published anchors; the merged summary it writes beside the
page rebuilds the page alone, and a newer bench replaces the rows it re-ran."""
import subprocess
import sys

import pandas as pd
import yaml

from conftest import TINY


def _bench(tmp_path, name, methods):
    from finpeft.experiments.bench import run_grid
    grid = tmp_path / f"{name}.yaml"
    grid.write_text(yaml.safe_dump({"overrides": [*TINY, "data.max_train_samples=120"], "datasets": ["fpb"],
                                    "seeds": [42, 43], "methods": methods}))
    return run_grid(grid, tmp_path / name, echo=lambda line: None)


def test_results_page_from_bench_outputs(tmp_path):
    out = _bench(tmp_path, "g1", [{"name": "head", "overrides": ["method=head", "train.lr=1e-3"]}, "full"])
    lb = pd.read_csv(out / "leaderboard.csv")
    assert lb.command.str.startswith("finpeft train ").all() and not lb.command.str.contains("seed=").any()
    page = tmp_path / "results.md"
    r = subprocess.run([sys.executable, "-m", "finpeft", "results", str(out), "--output", str(page)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = pd.read_csv(tmp_path / "results.csv")
    assert len(s) == 2 and set(s.method) == {"head", "full"} and (s.seeds == 2).all()
    best = s.sort_values(["accuracy_mean", "train_seconds"], ascending=[False, True]).iloc[0]  # a tie: the faster
    fastest = s.sort_values("train_seconds").iloc[0]
    text = page.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| fpb |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:6] == [f"{best.method} / minilm-l6", f"{best.accuracy_mean:.4f} ± {best.accuracy_std:.4f}",
                          f"{best.train_seconds:.0f}"], row
    assert cells[6] == f"{fastest.method} / minilm-l6" and cells[8] == f"{fastest.train_seconds:.0f}", row
    assert "FinLoRA" in text and "`finpeft train " in text and "seed=S`" in text  # anchors and the commands
    # the summary alone rebuilds the same table; a newer bench replaces only the rows it re-ran
    again = tmp_path / "again.md"
    from finpeft import results
    results([tmp_path / "results.csv"], again)
    assert [line for line in again.read_text().splitlines() if line.startswith("| fpb |")] == [row]
    out2 = _bench(tmp_path, "g2", ["lora"])
    results([tmp_path / "results.csv", out2], page)
    assert set(pd.read_csv(tmp_path / "results.csv").method) == {"head", "full", "lora"}


def test_results_refuses_what_is_not_a_bench_output(tmp_path):
    r = subprocess.run([sys.executable, "-m", "finpeft", "results", str(tmp_path), "--output",
                        str(tmp_path / "r.md")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a bench output dir" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r.md").exists()
