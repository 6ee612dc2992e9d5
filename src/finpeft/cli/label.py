"""finpeft label suggest / merge / curve: choose rows to label, join them back, measure the learning curve."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from finpeft.cli.root import app

label_app = typer.Typer(no_args_is_help=True, help="Few labels: which rows to label next, and how many you need.")
app.add_typer(label_app, name="label")


def _csv(value: str, cast=str) -> list:
    return [cast(v.strip()) for v in value.split(",") if v.strip()]


@label_app.command("suggest")
def suggest(
    pool: Path = typer.Argument(..., help="Unlabelled rows: CSV/TSV/JSONL/Parquet."),
    n: int = typer.Option(..., "--n", help="How many rows to suggest."),
    output: Path = typer.Option(..., "--output", "-o", help="The CSV to write (the pool's columns + empty label)."),
    run: Optional[Path] = typer.Option(None, "--run", help="A finished run: rank by its uncertainty."),
    backbone: str = typer.Option("minilm-l6", "--backbone", help="Encoder for the vectors when no --run is given."),
    strategy: str = typer.Option("auto", "--strategy", help="auto, random, kmeans, margin, entropy, margin-kmeans."),
    labelled: Optional[Path] = typer.Option(None, "--labelled", help="Rows already labelled: never suggested again."),
    text_column: str = typer.Option("text", "--text-column"),
    seed: int = typer.Option(42, "--seed"),
):
    """Write the N rows of POOL worth labelling next (never a labelled row or a near-duplicate of one)."""
    from finpeft import api
    r = api.label_suggest(pool, n, output, run=run, backbone=backbone, strategy=strategy, labelled=labelled,
                          text_column=text_column, seed=seed)
    typer.echo(f"{r['rows']} rows to label ({r['strategy']}, from {r['candidates']} candidates; "
               f"{r['duplicates_dropped']} near-duplicates and {r['labelled_dropped']} labelled rows left out) -> "
               f"{r['output']}: fill in the label column, then `finpeft label merge {r['output']} --into TRAIN_FILE`")


@label_app.command("merge")
def merge(
    labelled: Path = typer.Argument(..., help="The suggested CSV with its label column filled in."),
    into: Path = typer.Option(..., "--into", help="The training file to extend (created if missing)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the union here instead of --into."),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
):
    """Append the labelled rows to a training file (rows left blank and texts it already holds are skipped)."""
    from finpeft import api
    r = api.label_merge(labelled, into, output, text_column=text_column, label_column=label_column)
    typer.echo(f"{r['added']} rows added to {r['output']} ({r['unlabelled']} still unlabelled, "
               f"{r['duplicates']} already there)")


@label_app.command("curve")
def curve(
    dataset: str = typer.Argument(..., help="A labelled dataset (catalog id or file): its labels are hidden."),
    output: Path = typer.Option(..., "--output", "-o", help="Curve dir (re-run the command to resume)."),
    methods: str = typer.Option("frozen-head,setfit", "--methods", help="frozen-head, setfit, full, lora."),
    backbones: str = typer.Option("minilm-l6", "--backbones"),
    strategies: str = typer.Option("random,auto", "--strategies"),
    sizes: str = typer.Option("16,32,64,128,256", "--sizes", help="Label counts, one round each."),
    seeds: str = typer.Option("42,43,44", "--seeds"),
    pool_size: Optional[int] = typer.Option(None, "--pool-size", help="Subsample the pool (cheaper rounds)."),
    start_ranks: bool = typer.Option(False, "--start-ranks", help="The run continued (model.init_from, same "
                                     "classes) ranks the first round, as `label suggest --run`; default: k-means."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value train overrides for every run."),
):
    """Accuracy against labels: a simulated labelling loop (curve.csv, curve.md, curve.png)."""
    from finpeft import api
    out = api.label_curve(dataset, output, methods=_csv(methods), backbones=_csv(backbones),
                          strategies=_csv(strategies), sizes=_csv(sizes, int), seeds=_csv(seeds, int),
                          overrides=list(overrides or []), pool_size=pool_size, start_ranks=start_ranks)
    typer.echo((out / "curve.md").read_text(encoding="utf-8"))
    typer.echo(f"curve written to {out} (curve.csv, curve.md, curve.png)")
