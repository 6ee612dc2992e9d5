"""Run directories written atomically: work happens in a hidden `.NAME.partial` folder that is renamed to
NAME only when everything is written, so a failed or interrupted run never leaves a half-written NAME
(and `--resume` finds its checkpoints in the partial folder)."""
from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from pathlib import Path

from finpeft.errors import FinpeftError

_BASE = ["date", "run_dir", "dataset", "split", "method", "backbone", "seed", "accuracy", "macro_f1",
         "weighted_f1", "ece", "train_seconds", "train_samples_per_second", "trainable_params", "task"]


def result_fields() -> list[str]:
    """_BASE, then every other task's metrics (finpeft.tasks: Task.metric_columns) in registry order: mse, r2,
    pearson (regression), micro_f1, subset_accuracy (multilabel); an older file gains new columns when next
    written. A function, so importing this module does not import every task (and sklearn)."""
    from finpeft.tasks import TASKS, get_task
    return _BASE + list(dict.fromkeys(c for name in TASKS for c in get_task(name).metric_columns if c not in _BASE))


def partial_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.partial"


def default_output(root: Path, stem: str) -> Path:
    """runs/STEM, or runs/STEM-2, -3 ... when taken (deterministic, so every DDP rank picks the same)."""
    out, n = root / stem, 1
    while out.exists():
        n += 1
        out = root / f"{stem}-{n}"
    return out


def last_checkpoint(output: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint
    ckpts = partial_dir(output) / "checkpoints"
    return get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None


def prepare(output: Path, overwrite: bool, resume: bool, is_main: bool = True) -> Path:
    """Check the target and return the partial dir to work in (cleared unless resuming)."""
    if output.exists() and not overwrite:
        raise FinpeftError(f"{output} already exists; pass --overwrite or another --output")
    work = partial_dir(output)
    if resume and last_checkpoint(output) is None:
        raise FinpeftError(f"nothing to resume: no checkpoint in {work / 'checkpoints'} (an epoch must finish first)")
    if not resume and is_main and work.exists():
        shutil.rmtree(work)  # a stale interrupted run must not leak checkpoints into this one
    return work


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path` (and everything under a folder) the modes a plain open()/mkdir() would: temp-file writers
    (mkstemp 0600, mkdtemp 0700, some savers) otherwise leave artifacts that other users cannot read."""
    mask = umask()
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in items:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def finish(work: Path, output: Path) -> None:
    """Swap the finished work dir in; an old run being overwritten is moved aside first, never lost midway."""
    apply_umask(work)
    old = output.parent / f".{output.name}.old"
    if output.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(output, old)
    os.replace(work, output)
    shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o666 & ~umask())
    os.replace(tmp, path)


def publish_block(doc: Path, name: str, body: str) -> str:
    """Put `body` into a markdown doc between <!-- NAME:start --> and <!-- NAME:end --> (appended with the
    markers when they are absent), so each benchmark rewrites only its own section. Returns the block."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    write_atomic(doc, text)
    return block


def append_result(csv_path: Path, row: dict) -> None:
    """Append one row under an exclusive lock, rewriting via temp file + rename (never a torn file)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # portable (fcntl is POSIX-only), already installed with the HF stack
    with FileLock(str(csv_path.with_name(f".{csv_path.name}.lock"))):
        old = csv_path.read_text(encoding="utf-8") if csv_path.exists() else ""
        buf = io.StringIO()
        fields = result_fields()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        if not old or old.splitlines()[0] != ",".join(fields):
            writer.writeheader()  # a file written before the newest columns: rewritten under the new header
            writer.writerows(csv.DictReader(io.StringIO(old)))
        else:
            buf.write(old)
        writer.writerow(row)
        write_atomic(csv_path, buf.getvalue())
