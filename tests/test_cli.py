"""The CLI: bad input is one line on stderr, exit code 2, no traceback, no half-written run dir."""
import json
import os
import subprocess
import sys

import pytest

from conftest import TINY


def finpeft(*args, cwd=None):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "finpeft.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def assert_clean_error(res, match):
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    errors = [l for l in res.stderr.splitlines() if l.startswith("finpeft: error:")]
    assert len(errors) == 1 and match.lower() in errors[0].lower(), res.stderr
    assert not [l for l in res.stderr.splitlines() if l.strip() and not l.startswith(("finpeft:", "[finpeft]"))]


@pytest.mark.parametrize("args,match", [
    (["train", "train.epoch=3"], "unknown key 'train.epoch'"),
    (["train", "train.lr=abc"], "train.lr"),
    (["train", "--method", "prefix-tuning"], "unknown method"),
    (["train", "--data", "fpb-99agree"], "unknown dataset"),
    (["train", "--data", "missing.csv"], "file not found"),
    (["train", "--backbone", "/nonexistent/model/dir"], "unknown backbone"),
    (["train", "method=qlora"], "qlora"),
    (["data", "check", "missing.csv"], "file not found"),
    (["evaluate", "."], "not a finpeft run dir"),
    (["predict", "."], "either --text"),
    (["train", "train.scheduler=cosin"], "train.scheduler"),
    (["train", "--resume"], "--resume needs --output"),
    (["train", "--bogus"], "no such option: --bogus"),  # a usage error: one line too, not a boxed panel
    (["tune", "--trials", "0", "method=head"], "--trials"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, args, match):
    if args == ["train", "method=qlora"]:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    res = finpeft(*args, cwd=tmp_path)
    assert_clean_error(res, match)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_data_rejected_before_model_loading(tmp_path, fpb_rows):
    path = tmp_path / "bad.csv"
    rows = fpb_rows.iloc[:40].copy()
    rows.loc[rows.index[5], "label"] = "very positive"
    rows.to_csv(path, index=False)
    # bert-base is a hub model, unreachable here: the data error must come first, before any model load
    res = finpeft("train", "--data", str(path), "--backbone", "bert-base", cwd=tmp_path)
    assert_clean_error(res, "'very positive' occur only once")  # the data error, not the backbone one


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nOsakeyhti\xf6 profit up,positive\n".encode("latin-1"))
    # detected (and said) by default; an explicit wrong encoding is still one clean error
    res = finpeft("data", "check", str(path))
    assert res.returncode == 0 and "not UTF-8" in res.stderr, res.stderr
    assert_clean_error(finpeft("train", "--data", str(path), "--encoding", "utf-8", cwd=tmp_path), "not valid utf-8")
    assert_clean_error(finpeft("data", "check", str(path), "--encoding", "utf-8"), "not valid utf-8")


def test_data_check_reports_quality_problems_with_exit_0():
    res = finpeft("data", "check", "fpb", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["leakage"]["train~test"] >= 5
    assert report["splits"]["test"]["rows"] == 1212


def test_help_for_every_command():
    """`finpeft --help` and every (sub)command's help, found from the app itself (a new command is covered)."""
    import typer.main
    from finpeft.cli import app
    res = finpeft("--help")
    assert res.returncode == 0 and "Usage:" in res.stdout and "llm" in res.stdout
    group = typer.main.get_command(app)
    paths = []
    for name, cmd in group.commands.items():
        paths += [[name, sub] for sub in cmd.commands] if hasattr(cmd, "commands") else [[name]]
    assert ["train"] in paths and ["llm", "evaluate"] in paths and ["data", "check"] in paths and len(paths) >= 17
    from typer.testing import CliRunner
    runner = CliRunner()
    for path in paths:
        out = runner.invoke(app, [*path, "--help"])
        assert out.exit_code == 0 and "Usage: " in out.output and " ".join(path) in out.output, (path, out.output)


def test_the_documented_api_is_what_the_package_exports():
    """Every API function has a docstring with an example, and `finpeft.X` is that function."""
    import finpeft
    from finpeft import api
    for name in api.__all__:
        fn = getattr(api, name)
        assert getattr(finpeft, name) is fn and name in finpeft.__all__
        assert fn.__doc__ and f"finpeft.{name}(" in fn.__doc__, f"{name}: no example in its docstring"


def test_cli_predict_and_evaluate(full_run, tmp_path):
    res = finpeft("predict", str(full_run), "--text", "Sales rose 20 %.", "--text", "Loss widened.")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(l) for l in res.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["label"] in ("negative", "neutral", "positive")
    res = finpeft("evaluate", str(full_run), "--data", "fpb")
    assert res.returncode == 0, res.stderr
    assert (full_run / "eval" / "fpb-test" / "metrics.json").is_file()
    import pandas as pd
    row = pd.read_csv(full_run.parent / "results.csv").iloc[-1]  # the evaluate row names its seed and date
    assert row.run_dir == str(full_run) and row.seed == 42 and str(row.date).startswith("20")
    res = finpeft("predict", str(full_run), "--input", str(tmp_path / "none.csv"), "--output", str(tmp_path / "o.csv"))
    assert_clean_error(res, "file not found")
    (tmp_path / "in.csv").write_text("text\nProfit up\n")
    res = finpeft("predict", str(full_run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "no/o.csv"))
    assert_clean_error(res, "does not exist")
    res = finpeft("evaluate", str(full_run), "--data", "gold-headlines")
    assert_clean_error(res, "--label-map")


def test_train_under_accelerate_launch_two_processes(tmp_path):
    """DDP with gloo on CPU: same code, two processes, one finished run dir written once. (`--multi_gpu` is
    accelerate's torchrun launcher; with no GPU it runs CPU processes over gloo. `--cpu` alone means MPI.)"""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "finpeft.cli", "train", *TINY, "data.max_train_samples=64", "--output", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["processes"] == 2 and m["n"] == 48
    assert (out / "model" / "model.safetensors").is_file()
    assert len((out.parent / "results.csv").read_text().splitlines()) == 2  # header + one row, from rank 0 only
