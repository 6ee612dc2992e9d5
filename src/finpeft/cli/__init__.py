"""The `finpeft` command: a thin typer layer over the Python API (finpeft.api). Each command parses its flags,
calls one API function and prints; commands live in cli/classifier.py, cli/llm.py and cli/data.py."""
from __future__ import annotations

import sys

import typer

from finpeft.errors import FinpeftError

from finpeft.cli.root import _command, _recipe_and_overrides, _with_flags, app, data_app, llm_app  # noqa: F401


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
