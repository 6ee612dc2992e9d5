"""`finpeft predict --engine ray`: an archive scored in shards on Ray, exactly once, resumable, equal to predict_file."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from test_cli import assert_clean_error, finpeft

pytest.importorskip("ray", reason="the scale extra: pip install -e '.[dev,scale]'")


@pytest.fixture
def archive(tmp_path, data_dir):
    """2,400 FPB rows with ids, as a CSV (with a quoted newline), a JSONL file and a Parquet file of row groups."""
    df = pd.read_csv(data_dir / "financial_phrasebank/finlora_split/train.csv").head(2400).reset_index(drop=True)
    df.insert(0, "id", [f"r{i}" for i in range(len(df))])
    df.loc[5, "text"] = 'Sales rose "sharply",\nsaid the company'  # a record that spans two lines
    src = tmp_path / "news"
    src.mkdir()
    df.iloc[:800].to_csv(src / "2019.csv", index=False)
    df.iloc[800:1600].to_json(src / "2020.jsonl", orient="records", lines=True)
    df.iloc[1600:].to_parquet(src / "2021.parquet", row_group_size=200)
    df.to_csv(tmp_path / "all.csv", index=False)
    return src, df


def _parts(out):
    return pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True)


def test_two_node_ray_cluster_scores_every_row_once_like_predict_file_and_resumes(tmp_path, archive, full_run):
    import ray
    from ray.cluster_utils import Cluster

    from finpeft import predict_archive, predict_file
    src, df = archive
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 150 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        m = predict_archive(full_run, str(src / "*"), tmp_path / "scored", address=cluster.address,
                            shard_rows=300, progress=False)
        assert m["workers"] == 2 and m["rows"] == len(df) and len(m["shards"]) == 8  # 3 + 3 + 2 (Parquet: 400-row pairs of row groups)
        got = _parts(tmp_path / "scored")
        assert len(got) == len(df) and got.id.is_unique and set(got.id) == set(df.id)  # once each, none lost
        predict_file(full_run, tmp_path / "all.csv", tmp_path / "one.csv", progress=False)
        one = pd.read_csv(tmp_path / "one.csv", keep_default_na=False).set_index("id")
        got = got.set_index("id").loc[one.index]
        assert (got.predicted_label == one.predicted_label).all()
        probs = [c for c in one.columns if c.startswith("p_")]
        assert np.abs(got[probs].to_numpy(float) - one[probs].to_numpy(float)).max() <= 1e-5
        assert got.loc["r5", "text"] == df.text[5]  # the quoted newline survived the byte-range cut
        # Resume: a lost part is scored again, the other shards are not.
        (tmp_path / "scored" / "part-00004.parquet").unlink()
        (tmp_path / "scored" / "manifest.json").unlink()
        before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scored").glob("part-*")}
        m2 = predict_archive(full_run, str(src / "*"), tmp_path / "scored", address=cluster.address,
                             shard_rows=300, progress=False)
        after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scored").glob("part-*")}
        assert m2["rows"] == len(df) and set(after) == set(before) | {"part-00004.parquet"}
        assert all(after[k] == v for k, v in before.items())
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_worker_killed_mid_job_loses_and_duplicates_nothing(tmp_path, archive, full_run):
    import psutil
    src, df = archive
    out = tmp_path / "scored"
    proc = subprocess.Popen([sys.executable, "-m", "finpeft.cli", "predict", str(full_run), "--input", str(src),
                             "--output", str(out), "--engine", "ray", "--workers", "2", "--shard-rows", "200"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    killed = None
    for line in proc.stderr:  # the progress line of the first shard: both actors are now scoring
        if line.startswith("finpeft: shard 1/"):
            workers = [p for p in psutil.process_iter(["cmdline"]) if "ShardScorer" in " ".join(p.info["cmdline"] or [])]
            killed = workers[0].pid
            os.kill(killed, signal.SIGKILL)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, rest
    assert killed and "scored 2400 rows in 12 shards" in proc.stdout.read()
    got = _parts(out)
    assert len(got) == len(df) and got.id.is_unique and set(got.id) == set(df.id)
    local = tmp_path / "local"
    subprocess.run([sys.executable, "-m", "finpeft.cli", "predict", str(full_run), "--input", str(src), "--output",
                    str(local), "--engine", "local", "--shard-rows", "200"], check=True, capture_output=True)
    ref = _parts(local).set_index("id")
    assert (got.set_index("id").loc[ref.index].predicted_label == ref.predicted_label).all()
    assert not list(out.glob(".*.tmp"))


def test_bad_archive_inputs_are_one_line_and_write_nothing(tmp_path, archive, full_run):
    src, df = archive
    out = tmp_path / "out"
    args = ["predict", str(full_run), "--output", str(out), "--engine", "ray"]
    assert_clean_error(finpeft(*args, "--input", str(tmp_path / "nothing-*.csv")), "no .csv")
    assert_clean_error(finpeft(*args, "--input", str(src), "--address", "127.0.0.1:1"), "no ray head answers")
    df[["id", "text"]].head(5).to_csv(tmp_path / "odd.csv", index=False)
    (tmp_path / "mixed").mkdir()
    df.head(5).to_csv(tmp_path / "mixed" / "a.csv", index=False)
    df[["id", "text"]].head(5).to_csv(tmp_path / "mixed" / "b.csv", index=False)
    assert_clean_error(finpeft(*args, "--input", str(tmp_path / "mixed")), "mixed schemas")
    assert_clean_error(finpeft(*args, "--input", str(src), "--text-column", "headline"), "no column 'headline'")
    assert not out.exists()
    out.mkdir()
    (out / "mine.txt").write_text("x")
    assert_clean_error(finpeft(*args, "--input", str(src)), "not an empty folder")
    assert_clean_error(finpeft("predict", str(full_run), "--input", str(src), "--output", str(out), "--workers", "2"),
                       "need --engine ray")
