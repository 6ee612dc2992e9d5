"""The `finpeft` command: a thin typer layer over the Python API (finpeft.api). Each command parses its flags,
calls one API function and prints; commands live in cli/classifier.py, cli/llm.py and cli/data.py."""
from __future__ import annotations

import shlex
import sys

import typer

from finpeft.errors import FinpeftError

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



def main() -> None:
    try:
        code = app(standalone_mode=False)  # usage errors come back to us: one line, not a boxed panel
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Abort:
        print("finpeft: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # typer's click: usage errors (and a bare `finpeft`: show the help)
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            return
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        print(f"finpeft: error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2) or 2)
    except FinpeftError as e:
        print(f"finpeft: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("finpeft: interrupted (train: continue with --resume; bench, tune, ablate, predict --input: run the "
              "same command again to continue)", file=sys.stderr)
        sys.exit(130)



from finpeft.cli import classifier as _classifier, data as _data, label as _label, llm as _llm  # noqa: E402,F401  (registers commands)
