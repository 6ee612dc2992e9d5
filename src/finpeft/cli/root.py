"""The typer apps every command module registers on, and the helpers they share (kept apart from cli/__init__.py,
which imports the command modules, so that no command module imports its own package: no import loop)."""
from __future__ import annotations

import shlex
import sys

import typer


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate and use financial-text classifiers (CPU first, offline).")


def _version(value: bool) -> None:
    if value:
        from finpeft.version import __version__
        typer.echo(f"finpeft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Fine-tune, evaluate and use financial-text classifiers (CPU first, offline)."""


data_app = typer.Typer(no_args_is_help=True, help="Inspect datasets.")
app.add_typer(data_app, name="data")
llm_app = typer.Typer(no_args_is_help=True, help="Instruction-tune and score causal LMs (SmolLM2 offline).")
app.add_typer(llm_app, name="llm")

def _command() -> str:
    """The command line as typed, recorded in the run dir (recipe provenance)."""
    return "finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _recipe_and_overrides(recipe: str | None, overrides: list[str] | None) -> tuple[str | None, list[str]]:
    """`finpeft train method=lora` has no recipe file: its first argument is an override."""
    items = list(overrides or [])
    if recipe and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        return None, [recipe, *items]
    return recipe, items


def _with_flags(items: list[str], data, method, backbone, no_cache: bool, text_column: str | None = None,
                label_column: str | None = None, encoding: str | None = None, task: str | None = None) -> list[str]:
    flags = {"data.dataset": data, "method.name": method, "model.backbone": backbone,
             "train.feature_cache": "false" if no_cache else None, "data.text_column": text_column,
             "data.label_column": label_column, "data.encoding": encoding, "data.task": task}
    return items + [f"{k}={v}" for k, v in flags.items() if v is not None]
