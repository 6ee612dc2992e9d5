"""The `finpeft` command: a thin typer layer over the Python API."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import FinpeftError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate and use financial-text classifiers (CPU first, offline).")


def _version(value: bool) -> None:
    if value:
        from .version import __version__
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


@app.command(context_settings={"allow_extra_args": False})
def train(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (default: MiniLM + FPB + full, as recipes/fpb.yaml)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. method=lora train.epochs=3"),
    data: Optional[str] = typer.Option(None, "--data", help="Catalog id (fpb, tfns, ...) or a CSV/TSV/JSONL/Parquet file."),
    method: Optional[str] = typer.Option(None, "--method", help="full, head, lora, dora, qlora, mamba-adapter, ... (finpeft list)."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Registered name, local model dir or hub id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run dir (default runs/<name>-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run dir."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Frozen-encoder methods: run the encoder every step "
                                  "instead of training on cached states."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="= data.text_column"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="= data.label_column"),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="= data.encoding (default: detected)"),
    task: Optional[str] = typer.Option(None, "--task", help="= data.task: classification or regression (a score "
                                       "per text in --label-column; default: the dataset's own)"),
):
    """Train and evaluate; writes model, metrics.json, report.md and the resolved recipe to the run dir."""
    from .recipe import load_recipe
    from .training import train as run_train
    recipe, items = _recipe_and_overrides(recipe, overrides)
    r = load_recipe(recipe, _with_flags(items, data, method, backbone, no_cache, text_column, label_column, encoding,
                                        task))
    try:
        run_train(r, output=output, overwrite=overwrite, resume=resume,
                  command="finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    except KeyboardInterrupt:
        hint = f" --output {output}" if output else " --output RUN_DIR"
        print(f"finpeft: interrupted; continue with: finpeft train{hint} --resume", file=sys.stderr)
        raise typer.Exit(130)


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


@app.command()
def ablate(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML (default: the defaults)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides for every run."),
    param: str = typer.Option(..., "--param", help="The swept key and values, e.g. method.num_adapter_layers=1,2,4,8"),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Seeds per value (recipe seed, +1, +2, ...)."),
    data: Optional[str] = typer.Option(None, "--data"),
    method: Optional[str] = typer.Option(None, "--method"),
    backbone: Optional[str] = typer.Option(None, "--backbone"),
    no_cache: bool = typer.Option(False, "--no-cache"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Sweep dir (default runs/ablate-<method>-<key>)."),
    report_only: bool = typer.Option(False, "--report-only", help="Write the table and plot from the runs finished "
                                     "so far; train nothing."),
):
    """Sweep one recipe key x seeds: ablation.csv, ablation.md (mean ± std) and ablation.png (error bars)."""
    from .ablate import ablate as run_ablate
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = run_ablate(recipe, _with_flags(items, data, method, backbone, no_cache), param, seeds, output,
                     command="finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:]), report_only=report_only)
    typer.echo((out / "ablation.md").read_text(encoding="utf-8"))
    typer.echo(f"sweep saved to {out} (ablation.csv, ablation.png)")


@app.command()
def bench(
    grid: Path = typer.Argument(..., help="Grid YAML: datasets, methods, backbones, seeds (see bench/grids/)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Grid dir (default runs/bench-<grid name>)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run cells that failed before again."),
    publish: Optional[Path] = typer.Option(None, "--publish", help="Also write the leaderboard into this markdown "
                                           "file (between <!-- GRIDNAME:start/end --> markers)."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing: write the leaderboard from the "
                                     "cells finished so far."),
):
    """Run a grid of train runs; leaderboard.csv, leaderboard.md (mean ± std) and plots. Resumes when re-run."""
    from .leaderboard import publish as publish_to, run_grid
    out = run_grid(grid, output, retry_failed, echo=typer.echo, report_only=report_only)
    if publish:
        publish_to(out, publish, grid.stem)
    typer.echo((out / "leaderboard.md").read_text(encoding="utf-8"))
    typer.echo(f"leaderboard saved to {out} (leaderboard.csv, accuracy_vs_time.png, accuracy_vs_params.png)")


@app.command()
def tune(
    recipe: Optional[str] = typer.Argument(None, help="Recipe YAML with a search: section."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides for every trial."),
    trials: int = typer.Option(20, "--trials", min=1, help="Finished trials wanted in the study (a resumed study "
                               "runs only the rest)."),
    data: Optional[str] = typer.Option(None, "--data"),
    method: Optional[str] = typer.Option(None, "--method"),
    backbone: Optional[str] = typer.Option(None, "--backbone"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Study dir (default runs/tune-<name>)."),
):
    """Optuna search (TPE, median pruning on valid macro-F1) over the recipe's search: section; writes best.yaml."""
    from .tune import tune as run_tune
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = run_tune(recipe, _with_flags(items, data, method, backbone, False), trials, output,
                   command="finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:]), echo=typer.echo)
    best = out / "best.json"
    if best.is_file():
        import json
        b = json.loads(best.read_text(encoding="utf-8"))
        typer.echo(f"best trial {b['trial']}: valid macro-F1 {b['valid_macro_f1']:.4f} | {json.dumps(b['params'])}")
    typer.echo(f"study saved to {out} (best.yaml, trials.csv; optuna-dashboard sqlite:///{(out / 'study.db').resolve()})")


@app.command()
def pretrain(
    recipe: Optional[str] = typer.Argument(None, help="From scratch: a pretraining recipe YAML or key=value "
                                           "(objective=span: T5 span corruption; objective=clm: Mamba2 LM)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. size=mini train.max_steps=2000"),
    output: Path = typer.Option(..., "--output", "-o", help="Where the pretrained / adapted backbone is written."),
    resume: bool = typer.Option(False, "--resume", help="From scratch: continue an interrupted run's checkpoints."),
    backbone: str = typer.Option("minilm-l6", "--backbone", help="DAPT (no recipe): the encoder to adapt."),
    corpus: str = typer.Option("fin-news", "--corpus", help="DAPT: unlabelled corpus (catalog id or file/folder)."),
    exclude: str = typer.Option("fpb,tfns,fiqa-sa", "--exclude",
                                help="DAPT: comma-separated datasets whose texts are removed ('' for none)."),
    epochs: float = typer.Option(1.0, "--epochs", min=0.01),
    lr: float = typer.Option(1e-4, "--lr", min=0),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    max_length: int = typer.Option(64, "--max-length", min=8),
    max_texts: Optional[int] = typer.Option(None, "--max-texts", min=50, help="DAPT: pretrain on a random subset."),
    seed: int = typer.Option(42, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """Pretrain on an unlabelled corpus: domain-adaptive MLM of an encoder (default), or with a recipe /
    key=value a tokenizer + T5 (span corruption) or Mamba2 (causal LM) from scratch. Then
    `finpeft train model.backbone=OUTPUT`."""
    command = "finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if recipe or overrides:
        from .scratch.pretrain import load_scratch_recipe, pretrain_scratch
        path, items = _recipe_and_overrides(recipe, overrides)
        pretrain_scratch(load_scratch_recipe(path, items), output, overwrite, resume, command)
        return
    if resume:
        raise FinpeftError("--resume is for pretraining from scratch (objective=span or clm)")
    from .pretrain import pretrain_mlm
    pretrain_mlm(backbone, corpus, tuple(x.strip() for x in exclude.split(",") if x.strip()), output, epochs, lr,
                 batch_size, max_length, seed=seed, max_texts=max_texts, overwrite=overwrite, command=command)


@app.command()
def ensemble(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more finished run dirs (same data split and labels)."),
    output: Path = typer.Option(..., "--output", "-o", help="Ensemble dir to write."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Comma-separated member weights (default equal)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output."),
):
    """Average several runs' probabilities into one saved model, scored on the members' test split."""
    from .ensemble import build_ensemble
    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise FinpeftError(f"--weights must be numbers separated by commas, not {weights!r}") from None
    build_ensemble(run_dirs, output, w, overwrite, command="finpeft " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    typer.echo((output / "report.md").read_text(encoding="utf-8"))


@app.command()
def evaluate(
    run_dir: Path = typer.Argument(..., help="A finished run dir."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset to score on (default: the run's own)."),
    split: Optional[str] = typer.Option(None, "--split", help="test or all (default: test; all for a single file)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Default: the run's own data.text_column."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Default: the run's data.label_column."),
    label_map: Optional[str] = typer.Option(None, "--label-map", help="YAML map of raw -> model labels, e.g. '{0: negative}'."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="Default: the run's data.encoding (auto)."),
):
    """Score a saved model on a labelled dataset (cross-dataset evaluation)."""
    import yaml
    from .evaluate import evaluate_run
    from .predict import read_run_info
    from .recipe import validate_recipe
    read_run_info(run_dir)
    if split not in (None, "test", "all"):
        raise FinpeftError(f"--split must be test or all, not {split!r}")
    if data is None:  # the run's own data, split exactly as in training
        recipe_path = run_dir / "recipe.yaml"
        if not recipe_path.is_file():
            raise FinpeftError(f"{run_dir}: no recipe.yaml; pass --data")
        cfg = validate_recipe(yaml.safe_load(recipe_path.read_text(encoding="utf-8")), str(recipe_path)).data
        split = split or "test"
    else:
        try:
            mapping = yaml.safe_load(label_map) if label_map else {}
        except yaml.YAMLError:
            mapping = None
        if not isinstance(mapping, dict):
            raise FinpeftError("--label-map must be a YAML mapping like '{0: negative, 1: positive}'")
        own = {}  # the run's own column names and encoding, unless given
        if (run_dir / "recipe.yaml").is_file():
            own = (yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
        cfg = validate_recipe({"data": {"dataset": data, "text_column": text_column or own.get("text_column", "text"),
                                        "label_column": label_column or own.get("label_column", "label"),
                                        "encoding": encoding or own.get("encoding", "auto"),
                                        "label_map": mapping}}, "--data").data
        split = split or ("all" if Path(data).is_file() else "test")
    out, m = evaluate_run(run_dir, cfg, split)
    if m.get("task") == "regression":
        from .report_regression import summary_lines
        typer.echo(f"{m['dataset']} ({m['split']}, n={m['n']}): " + "\n".join(summary_lines(m)).removeprefix("test "))
    else:
        typer.echo(f"{m['dataset']} ({m['split']}, n={m['n']}): accuracy {m['accuracy']:.4f} | macro-F1 "
                   f"{m['macro_f1']:.4f} | weighted-F1 {m['weighted_f1']:.4f} | ECE {m['ece']:.4f}")
    typer.echo(f"report: {out / 'report.md'}")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A finished run dir."),
    text: Optional[List[str]] = typer.Option(None, "--text", "-t", help="Text to score (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="CSV/TSV/JSONL/Parquet file to score."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write the scored file (.csv/.jsonl)."),
    text_column: str = typer.Option("text", "--text-column"),
    chunk_size: int = typer.Option(2048, "--chunk-size", min=1),
    encoding: str = typer.Option("auto", "--encoding", help="Input file encoding (auto: UTF-8, else detected)."),
):
    """Score texts: label, class probabilities and score = P(positive) - P(negative)."""
    import json
    if bool(text) == bool(input):
        raise FinpeftError("give either --text (repeatable) or --input FILE --output FILE")
    if input and not output:
        raise FinpeftError("--input needs --output")
    if input and not input.is_file():
        raise FinpeftError(f"{input}: file not found")
    from .predict import Predictor, check_output_path
    if output:
        check_output_path(output)
    p = Predictor(run_dir)
    if text:
        for t, r in zip(text, p.predict(text)):
            typer.echo(json.dumps({"text": t, **r}, ensure_ascii=False))
        return
    from .data.encoding import check_encoding
    try:
        n = p.predict_file(input, output, text_column, chunk_size, progress=True, encoding=check_encoding(encoding))
    except KeyboardInterrupt:
        print(f"finpeft: interrupted; the rows scored so far are kept ({output.name}.partial beside {output}); "
              "the same command resumes after them", file=sys.stderr)
        raise typer.Exit(130)
    typer.echo(f"scored {n} rows -> {output}")


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A finished run dir (methods full, head, lora, dora, mamba-adapter, "
                                   "attention-adapter)."),
    format: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: dynamic int8 weights (about 4x smaller)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder to write (default RUN_DIR/onnx, "
                                          "or RUN_DIR/onnx-int8; an earlier export there is replaced)."),
    parity_rows: int = typer.Option(256, "--parity-rows", min=0, help="Test rows on which to compare ONNX with the "
                                    "torch model (0: skip)."),
    parity_data: Optional[str] = typer.Option(None, "--parity-data", help="Dataset whose test split the parity rows "
                                              "come from (default: the run's own data, columns and encoding)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="With --parity-data: its text column."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="With --parity-data: its label column."),
    encoding: Optional[str] = typer.Option(None, "--encoding", help="With --parity-data: its encoding (auto)."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", min=0, max=1,
                                                  help="Refuse the export under this argmax agreement with torch "
                                                  "(default 0.99 fp32, 0.9 int8)."),
):
    """Export a run to ONNX (model.onnx, tokenizer, run.json); predict, evaluate, serve and load take the folder."""
    import json
    from .onnx_backend import export_onnx
    if format != "onnx":
        raise FinpeftError(f"--format must be onnx, not {format!r}")
    data = None
    if parity_data is not None:
        data = {"dataset": parity_data, **{k: v for k, v in (("text_column", text_column), ("label_column", label_column),
                                                              ("encoding", encoding)) if v is not None}}
    elif text_column or label_column or encoding:
        raise FinpeftError("--text-column / --label-column / --encoding go with --parity-data (the run's own data "
                           "uses its own columns)")
    out = export_onnx(run_dir, output, quantize, parity_rows, data, say=lambda m: typer.echo(f"[finpeft] {m}"),
                      min_agreement=min_agreement)
    info = json.loads((out / "run.json").read_text(encoding="utf-8"))["onnx"]
    typer.echo(f"exported to {out} (model.onnx {(out / 'model.onnx').stat().st_size / 1e6:.1f} MB, "
               f"{info['quantize'] or 'fp32'}, opset {info['opset']})")
    p = info["parity"]
    if p:
        acc = lambda a: "n/a" if a is None else f"{a:.4f}"  # noqa: E731
        typer.echo(f"parity on {p['rows']} {p['dataset']} {p['split']} rows: agreement {p['agreement']:.4f} | "
                   f"max |prob diff| {p['max_abs_prob_diff']:.2e} | accuracy torch {acc(p['torch_accuracy'])}, "
                   f"onnx {acc(p['onnx_accuracy'])}")


@app.command()
def serve(
    run_dir: Path = typer.Argument(..., help="A finished run dir or its ONNX export."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (default: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    backend: str = typer.Option("auto", "--backend", help="torch, onnx (the run's export) or auto (as saved)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="FINPEFT_API_KEY",
                                          help="Require this key in the X-API-Key header (or set FINPEFT_API_KEY)."),
    max_texts: int = typer.Option(64, "--max-texts", min=1, help="Texts per request."),
    max_chars: int = typer.Option(2000, "--max-chars", min=1, help="Characters per text."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1024),
    max_batch: int = typer.Option(64, "--max-batch", min=1, help="Texts per forward pass (micro-batching)."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="How long a batch waits to fill."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="Allow this origin (repeatable; "
                                                    "CORS is off by default)."),
):
    """REST API + web page: POST /v1/predict, GET /healthz /readyz /metrics /docs, and / to try it."""
    from .serve import ServeSettings, serve as run_serve
    settings = ServeSettings(max_texts=max_texts, max_chars=max_chars, max_body_bytes=max_body_bytes,
                             max_batch=max_batch, max_wait_ms=max_wait_ms, api_key=api_key or None,
                             cors_origins=list(cors_origin or []))
    run_serve(run_dir, host, port, backend, settings)


@llm_app.command("train")
def llm_train(
    recipe: Optional[str] = typer.Argument(None, help="LLM recipe YAML (default: smollm2-135m, LoRA, task fpb)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. tasks=[fpb,tfns] method=dora shots=3"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run dir (default runs/llm-...-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run dir."),
):
    """LoRA / rsLoRA / DoRA / QLoRA (CUDA) instruction tuning on one or several mixed tasks (loss on answer tokens), then per-task test scores."""
    from .llm.train import load_llm_recipe, train_llm
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = train_llm(load_llm_recipe(recipe, items), output, overwrite)
    typer.echo((out / "report.md").read_text(encoding="utf-8"))


@llm_app.command("compare")
def llm_compare(
    recipe: Optional[str] = typer.Argument(None, help="LLM recipe YAML with several tasks."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. tasks=[fpb,tfns,fiqa-sa] "
                                                    "mixing.strategy=balanced"),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the runs and compare.md (resumes)."),
):
    """Each task trained alone vs all tasks mixed: per-task scores side by side (negative transfer)."""
    from .llm.compare import compare_single_multi
    from .llm.train import load_llm_recipe
    recipe, items = _recipe_and_overrides(recipe, overrides)
    r = load_llm_recipe(recipe, items)
    if len(r.tasks) < 2:
        raise FinpeftError("compare needs at least two tasks, e.g. tasks=[fpb,tfns]")
    out = compare_single_multi(r, output, echo=lambda m: typer.echo(f"[finpeft] {m}", err=True))
    typer.echo((out / "compare.md").read_text(encoding="utf-8"))


@llm_app.command("evaluate")
def llm_evaluate(
    run_dir: Optional[Path] = typer.Argument(None, help="An LLM run dir (omit to score the plain --backbone)."),
    task: Optional[List[str]] = typer.Option(None, "--task", help="Task name or YAML (repeatable; default: the "
                                             "run's tasks, or fpb)."),
    backbone: str = typer.Option("smollm2-135m", "--backbone", help="Without RUN_DIR: the untuned model to score."),
    shots: int = typer.Option(0, "--shots", min=0, help="Few-shot examples from the task's train split."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="Score the first N test rows."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=16, help="Prompt budget in tokens "
                                             "(default: the run's max_length, or 512)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="Free-text tasks "
                                                 "(default: the task's)."),
    sample: bool = typer.Option(False, "--sample", help="Free-text tasks: sample instead of greedy decoding."),
    seed: int = typer.Option(42, "--seed", help="Picks the few-shot examples (and seeds sampling)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Divide out the label prior the model shows on "
                                   "content-free inputs (Zhao et al. 2021; classification tasks)."),
):
    """Zero-shot / few-shot / tuned scores on the tasks' test splits (label scoring or generation)."""
    import json
    from transformers import set_seed
    from .llm.data import task_splits
    from .llm.generate import GenerationSettings
    from .llm.tasks import Task, load_task
    from .llm.train import evaluate_task, headline, load_backbone, load_llm_run, pick_shots, read_llm_run
    info = read_llm_run(run_dir) if run_dir else {}
    tasks = [load_task(t) for t in task] if task else [Task.model_validate(t) for t in info.get("tasks", [])] \
        or [load_task("fpb")]
    max_length = max_length or info.get("max_length", 512)
    if calibrate and not any(t.is_classification for t in tasks):
        raise FinpeftError("--calibrate is for tasks with choices (classification); "
                           f"{', '.join(t.name for t in tasks)} generate free text")
    splits = {t.name: task_splits(t) for t in tasks}  # data problems surface before the model loads
    tok, model = (load_llm_run(run_dir)[:2]) if run_dir else load_backbone(backbone)
    generation = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=sample)
    results = {}
    for t in tasks:
        set_seed(seed)
        test = splits[t.name].test.iloc[:max_samples] if max_samples else splits[t.name].test
        _, results[t.name] = evaluate_task(model, tok, t, test, pick_shots(splits[t.name].train, t, shots, seed),
                                           max_length, generation, calibrate=calibrate)
        tag = ", calibrated" if calibrate and t.is_classification else ""
        typer.echo(f"{t.name} (test, n={results[t.name]['n']}, {shots}-shot{tag}): {headline(results[t.name])}")
    if json_out:
        from .runs import write_atomic
        write_atomic(json_out, json.dumps({"model": str(run_dir or backbone), "shots": shots, "seed": seed,
                                           "calibrate": calibrate, "metrics": results}, indent=2))


@llm_app.command("predict")
def llm_predict(
    run_dirs: List[Path] = typer.Argument(..., help="LLM run dirs (adapters of one backbone), loaded once."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="Which adapter answers (a run dir's name; "
                                          "default the first; 'base' = no adapter)."),
    text: Optional[List[str]] = typer.Option(None, "--text", "-t", help="Text to answer (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="CSV/JSONL file; an `adapter` column picks "
                                         "the adapter per row."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where --input's predictions go (CSV)."),
    task: Optional[str] = typer.Option(None, "--task", help="Ask this task (name or YAML) instead of each "
                                       "adapter's first task; --input then needs the task's columns."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
):
    """Answer with one of several adapters on one base, switched per request (or per row of --input)."""
    import pandas as pd
    from .llm.generate import GenerationSettings
    from .llm.predict import LLMPredictor
    if bool(text) == bool(input):
        raise FinpeftError("give either --text (repeatable) or --input FILE --output FILE")
    if input and not output:
        raise FinpeftError("--input needs --output")
    if input:
        from .data.load import read_table
        rows = read_table(input)
    predictor = LLMPredictor(run_dirs)
    chosen = adapter or predictor.adapters[0]
    if input and "adapter" not in rows:
        rows = rows.assign(adapter=chosen)
    names = set(rows["adapter"]) if input else {chosen}
    for a in names - {"base"}:
        if a not in predictor.adapters:
            raise FinpeftError(f"unknown adapter {a!r}: loaded {', '.join(predictor.adapters)} (or base)")
    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    if text:
        for _, r in predictor.predict(text, None if chosen == "base" else chosen, task,
                                      generation=generation).iterrows():
            typer.echo(f"[{r['adapter']}] {r['prediction']}\t{r['input']}")
        return
    parts = []
    for a in sorted(names):  # one batch per adapter, then back into input order
        mine = rows[rows["adapter"] == a]
        parts.append(predictor.predict(mine.drop(columns=["adapter"]), None if a == "base" else a, task,
                                       generation=generation).set_index(mine.index))
    from .runs import write_atomic
    result = pd.concat(parts).sort_index()
    write_atomic(output, result.to_csv(index=False))
    typer.echo(f"{len(result)} predictions -> {output}")


@llm_app.command("merge")
def llm_merge(
    run_dir: Path = typer.Argument(..., help="An LLM run dir (LoRA / rsLoRA / DoRA adapter)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model dir to write (usable as backbone=...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dir."),
):
    """Fold the adapter into the base weights: a standalone transformers model (safetensors)."""
    from .llm.train import merge_run
    typer.echo(f"merged model -> {merge_run(run_dir, output, overwrite)}")


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
    from .data.doctor import check
    from .data.encoding import check_encoding
    from .data.load import load_raw
    if task not in (None, "classification", "regression"):
        raise FinpeftError(f"--task must be classification or regression, not {task!r}")
    report = check(load_raw(dataset, text_column, label_column, check_encoding(encoding)), task=task)
    typer.echo(json.dumps(dataclasses.asdict(report), indent=2) if json_out else report.to_text())


@app.command("list")
def list_things():
    """List built-in datasets, backbones and methods."""
    from .backbones import REGISTRY
    from .data.catalog import CATALOG
    from .methods import METHODS
    typer.echo("datasets:")
    for e in CATALOG.values():
        typer.echo(f"  {e.id:16s} {e.description}")
    typer.echo("backbones:")
    for b in REGISTRY.values():
        typer.echo(f"  {b.name:16s} {b.hub_id}{' (packaged, offline)' if b.package else ''}")
    typer.echo("methods: " + ", ".join(METHODS))


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


if __name__ == "__main__":
    main()
