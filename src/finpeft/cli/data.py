"""finpeft data check, finpeft list."""
from __future__ import annotations

from typing import Optional

import typer

from finpeft.errors import FinpeftError

from finpeft.cli import app, data_app


@data_app.command("check")
def data_check(
    dataset: str = typer.Argument(..., help="Catalog id or a CSV/TSV/JSONL/Parquet file or split folder."),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    encoding: str = typer.Option("auto", "--encoding", help="File encoding (auto: UTF-8, else detected)."),
    task: Optional[str] = typer.Option(None, "--task", help="regression: the label column holds a number per "
                                       "text (default: the catalog dataset's own task, else classification)."),
):
    """Class balance (or score range), lengths, duplicates, conflicting labels, cross-split leakage. Exit 0 if
    readable."""
    import dataclasses
    import json
    from finpeft.data.doctor import check
    from finpeft.data.encoding import check_encoding
    from finpeft.data.load import load_raw
    if task not in (None, "classification", "regression"):
        raise FinpeftError(f"--task must be classification or regression, not {task!r}")
    report = check(load_raw(dataset, text_column, label_column, check_encoding(encoding)), task=task)
    typer.echo(json.dumps(dataclasses.asdict(report), indent=2) if json_out else report.to_text())


@app.command("list")
def list_things():
    """List built-in datasets, backbones and methods."""
    from finpeft.models.backbones import REGISTRY
    from finpeft.data.catalog import CATALOG
    from finpeft.methods import METHODS
    typer.echo("datasets:")
    for e in CATALOG.values():
        typer.echo(f"  {e.id:16s} {e.description}")
    typer.echo("backbones:")
    for b in REGISTRY.values():
        typer.echo(f"  {b.name:16s} {b.hub_id}{' (packaged, offline)' if b.package else ''}")
    typer.echo("methods: " + ", ".join(METHODS))
