"""finpeft data check, finpeft list."""
from __future__ import annotations

from typing import Optional

import typer


from finpeft.cli.root import app, data_app


@data_app.command("check")
def data_check(
    dataset: str = typer.Argument(..., help="Catalog id or a CSV/TSV/JSONL/Parquet file or split folder."),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    encoding: str = typer.Option("auto", "--encoding", help="File encoding (auto: UTF-8, else detected)."),
    task: Optional[str] = typer.Option(None, "--task", help="regression: the label column holds a number per "
                                       "text (default: the catalog dataset's own task, else classification)."),
    label_issues: Optional[str] = typer.Option(None, "--label-issues", help="Also write the rows whose label is "
                                               "probably wrong to this CSV (cleanlab), most suspect first."),
    backbones: str = typer.Option("minilm-l6", "--backbones", help="--label-issues: encoder(s) whose vectors "
                                  "the k-fold model reads, comma-separated (concatenated)."),
):
    """Class balance (or score range), lengths, duplicates, conflicting labels, cross-split leakage. Exit 0 if
    readable."""
    import dataclasses
    import json
    from finpeft import api
    report = api.check_data(dataset, text_column=text_column, label_column=label_column, encoding=encoding, task=task)
    typer.echo(json.dumps(dataclasses.asdict(report), indent=2) if json_out else report.to_text())
    if label_issues:
        r = api.label_issues(dataset, label_issues, backbones=[b.strip() for b in backbones.split(",") if b.strip()],
                             text_column=text_column, label_column=label_column, encoding=encoding)
        typer.echo(f"label issues: {r['issues']} of {r['rows']} rows flagged (cleanlab, 5-fold logistic regression "
                   f"on {'+'.join(r['backbones'])} vectors) -> {r['output']}, most suspect first")


@app.command("list")
def list_things():
    """List built-in datasets, backbones and methods."""
    from finpeft import api
    things = api.catalog()
    typer.echo("datasets:")
    for name, description in things["datasets"].items():
        typer.echo(f"  {name:16s} {description}")
    typer.echo("backbones:")
    for name, where in things["backbones"].items():
        typer.echo(f"  {name:16s} {where}")
    typer.echo("methods: " + ", ".join(things["methods"]))
