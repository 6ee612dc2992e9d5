"""Multi-node training: `accelerate launch` on two "machines" (two launchers, machine ranks 0 and 1, one process
each, a gloo process group over 127.0.0.1) trains one run, equal within tolerance to one process."""
import json
import os
import socket
import subprocess
import sys

from conftest import TINY

RECIPE = [*TINY, "data=fpb-allagree", "data.max_train_samples=256", "data.max_eval_samples=96", "train.epochs=6",
          "train.lr=2e-2", "method=head"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_train_one_run_like_one_process(tmp_path):
    port, env = _free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two-nodes"
    launchers = []
    for rank in (0, 1):  # what each machine runs; here both on localhost
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
               "--machine_rank", str(rank), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "finpeft.cli", "train", *RECIPE, "train.batch_size=8", "--output", str(out)]
        launchers.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=tmp_path, env=env))
    logs = [p.communicate(timeout=900)[0] for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], "\n".join(l[-2000:] for l in logs)
    two = json.loads((out / "metrics.json").read_text())
    assert two["processes"] == 2
    # One process with the same global batch (2 x 8): same data, same steps; only the sampler's order differs.
    one_dir = tmp_path / "one"
    res = subprocess.run([sys.executable, "-m", "finpeft.cli", "train", *RECIPE, "train.batch_size=16", "--output",
                          str(one_dir)], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    one = json.loads((one_dir / "metrics.json").read_text())
    assert one["processes"] == 1 and two["n"] == one["n"]
    assert min(one["macro_f1"], two["macro_f1"]) > 0.5  # both learned (the majority class scores 0.25)
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.06 and abs(two["macro_f1"] - one["macro_f1"]) <= 0.08, (one, two)
