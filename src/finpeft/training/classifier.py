"""Training: recipe -> checked data -> backbone + method -> transformers Trainer -> report -> run dir."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from finpeft.version import __version__
from finpeft.models.backbones import load_config, resolve_backbone
from finpeft.data.batching import predict_outputs, predict_proba, tokenize_frame
from finpeft.data import load_dataset_splits
from finpeft.errors import FinpeftError
from finpeft.methods import checked_method
from finpeft.methods.common import count_parameters
from finpeft.core.recipe import Recipe, validate_recipe, with_method_defaults
from finpeft.core.runs import append_result, default_output, finish, last_checkpoint, partial_dir, prepare, write_atomic
from finpeft.core.runinfo import write_run_info
from finpeft.training.checks import check_data, say_truncation
from finpeft.training.runtime import _say, _set_threads, _world, precision_args  # noqa: F401  (precision_args: re-exported)

log = logging.getLogger("finpeft")


def _eval_metrics(pred) -> dict:
    from sklearn.metrics import accuracy_score, f1_score
    y_pred = np.asarray(pred.predictions).argmax(-1)
    return {"accuracy": accuracy_score(pred.label_ids, y_pred),
            "macro_f1": f1_score(pred.label_ids, y_pred, average="macro")}


def _regression_eval(target):
    """Valid-split metrics of a regression model, on the score scale (model selection uses the MSE)."""
    from finpeft.data.regression import regression_metrics

    def metrics(pred) -> dict:
        y = target.inverse(np.asarray(pred.label_ids).reshape(-1))
        m = regression_metrics(y, target.inverse(np.asarray(pred.predictions).reshape(-1)))
        return {k: m[k] for k in ("mse", "r2", "pearson", "sign_accuracy")}
    return metrics


def _peak_memory() -> dict:
    """Peak resident memory of this process (and peak GPU memory allocated by torch, when on a GPU), in MiB."""
    import torch
    out = {}
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        out["peak_rss_mb"] = round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except ImportError:  # Windows
        pass
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class _Clock(TrainerCallback):
    """Keeps the training time spent up to each checkpoint in the work dir, so a resumed run's train_seconds
    include the time spent before the interruption (up to the checkpoint it continues from)."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.t0 = path, time.perf_counter()
        self.before = 0.0
        if resume and path.is_file():
            try:
                self.before = float(json.loads(path.read_text(encoding="utf-8"))["seconds"])
            except (OSError, ValueError, KeyError):
                pass

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            write_atomic(self.path, json.dumps({"seconds": self.before + time.perf_counter() - self.t0,
                                                "step": state.global_step}))


class _StepCounter(TrainerCallback):
    """Remembers the step training (re)started from (on resume, the checkpoint's)."""
    first: int | None = None

    def on_step_begin(self, args, state, control, **kw):
        if self.first is None:
            self.first = state.global_step


def train(recipe: Recipe, output: str | Path | None = None, overwrite: bool = False, resume: bool = False,
          command: str | None = None, callbacks: list | None = None, load_teacher=None) -> Path:
    """Train per the recipe; returns the finished run dir (holding model/, metrics.json, report.md, ...).

    resume=True continues `output`'s interrupted run with the recipe that run was started with."""
    if resume:
        if output is None:
            raise FinpeftError("--resume needs --output: the run dir the interrupted run was writing")
        saved = partial_dir(Path(output)) / "recipe.yaml"
        if saved.is_file():
            import yaml
            recipe = validate_recipe(yaml.safe_load(saved.read_text(encoding="utf-8")), str(saved))
            _say(f"resuming with the interrupted run's recipe ({saved})")
    # 0. A student whose teacher is given as a recipe: train the teacher first, or reuse the finished one.
    teacher_train = None
    if recipe.train.distill_from and load_teacher is None:
        raise FinpeftError("train.distill_from: the teacher is scored through finpeft.inference; call finpeft.train "
                           "(or `finpeft train`), or pass load_teacher=finpeft.inference.predictor.Predictor")
    import functools
    from finpeft.training.prerequisite import backbone_from_recipe, check_init_labels, init_weights, run_from_recipe
    again = functools.partial(train, load_teacher=load_teacher)
    if recipe.train.distill_from and recipe.train.distill_from.endswith((".yaml", ".yml")):
        teacher_dir, teacher_train = run_from_recipe(recipe.train.distill_from, again, _say)
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"distill_from": str(teacher_dir)})})
    # 1. Everything that can be rejected without a model: method, options, data.
    method, opts = checked_method(recipe.method)
    recipe = with_method_defaults(recipe, method.TRAIN_DEFAULTS)
    precision = precision_args(recipe.train.precision)
    from finpeft.training.distill import check_transfer
    check_transfer(recipe, method.ARTIFACT == "frozen")
    if recipe.train.rdrop_alpha and recipe.train.distill_from:
        raise FinpeftError("train.rdrop_alpha and train.distill_from each set the training loss; use one of them")
    if recipe.model.backbone.endswith((".yaml", ".yml")):  # a pretraining recipe: its encoder, built once
        model_path = backbone_from_recipe(recipe.model.backbone, _say)
    else:
        model_path = resolve_backbone(recipe.model.backbone)  # a name check only; nothing is loaded yet
    init_run = None
    if recipe.model.init_from:  # intermediate-task transfer: that run's fine-tuned weights, not the raw backbone
        model_path, init_run, init_labels = init_weights(recipe.model.init_from, recipe.model.backbone, again, _say)
    data = load_dataset_splits(recipe.data)
    if init_run is not None and method.ARTIFACT != "frozen":  # a frozen method keeps the encoder, not the head
        check_init_labels(init_run, init_labels, data.labels, data.task)
    regression = data.task == "regression"
    polarity = check_data(data, recipe, method, _say)
    sizes = data.sizes()  # as loaded: a few-label set has valid 0
    if data.valid_from_train:  # the Trainer's per-epoch evaluation reads the training rows; selection is off
        data.valid = data.train

    stem = recipe.name or f"{data.name}-{recipe.method.name}-{Path(recipe.model.backbone).name}"
    out = Path(output) if output else default_output(Path("runs"), f"{stem}-s{recipe.seed}")
    work = prepare(out, overwrite, resume, is_main=_world()[0] == 0)
    results = Path(recipe.results_csv) if recipe.results_csv else out.parent / "results.csv"
    if results.is_dir():
        raise FinpeftError(f"results_csv {results} is a directory")
    load_config(model_path, recipe.model.trust_remote_code)  # unknown backbone -> clear error, before work starts

    # 2. Model and data tensors.
    import torch
    from transformers import (AutoTokenizer, DataCollatorWithPadding, EarlyStoppingCallback, Trainer,
                              TrainingArguments, set_seed)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    threads = _set_threads(recipe.train.num_threads)
    set_seed(recipe.seed)
    rank, world = _world()
    _say(f"{data.name}: train/valid/test = {sizes} | method {recipe.method.name} | backbone "
         f"{recipe.model.backbone} | {threads} threads x {world} process(es) | working in {work}")
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=recipe.model.trust_remote_code)
    if regression:  # scores are standardised on the training rows; predictions are mapped back
        from finpeft.data.regression import Standardiser
        label_ids = Standardiser(data.train["label"])
    else:
        label_ids = {l: i for i, l in enumerate(data.labels)}
    body_seconds, base_path = 0.0, model_path
    if method.adapt_body is not None:  # e.g. setfit: the encoder is tuned on the training rows first
        began = time.perf_counter()
        model_path = method.adapt_body(model_path, data.train["text"].tolist(),
                                       [label_ids[l] for l in data.train["label"]], opts, recipe,
                                       work / "model" / "body", _say)
        body_seconds = time.perf_counter() - began
    frozen = method.ARTIFACT == "frozen"
    try:
        if frozen:
            from finpeft.methods import frozen as fz
            encoder, head, opts = fz.build(method, model_path, data.labels, opts, recipe.model)
        else:
            model = method.build(model_path, data.labels, opts, recipe.model)
    except (ValueError, OSError) as e:  # e.g. LoRA target modules the backbone does not have
        raise FinpeftError(f"method {recipe.method.name} on {recipe.model.backbone}: {str(e).splitlines()[0]}") from None
    if recipe.train.freeze_embeddings and not frozen:  # the token-embedding matrix: 23M of MPNet's 110M weights
        model.get_input_embeddings().requires_grad_(False)
    if frozen:
        trainable, encoder_params = count_parameters(head)[0], count_parameters(encoder)[1]
        total = trainable + encoder_params
        began = time.perf_counter()
        model, ds, collator = fz.setup(method, opts, encoder, head, tokenizer, data, label_ids, recipe, model_path, _say)
        encode_seconds = time.perf_counter() - began  # feature encoding (or a cache hit): part of the training cost
    else:
        encode_seconds = 0.0
        trainable, total = count_parameters(model)
        ds = {s: tokenize_frame(getattr(data, s), tokenizer, label_ids, recipe.model.max_length)
              for s in ("train", "valid")}  # test is scored after training, in input order
        collator = DataCollatorWithPadding(tokenizer)
    _say(f"trainable parameters {trainable:,} of {total:,} ({trainable / total:.2%})")
    say_truncation(tokenizer, data, recipe.model.max_length, _say)
    teacher_seconds = None
    transfer = None
    if recipe.train.distill_from:
        from finpeft.training.distill import add_teacher_columns
        ds["train"], teacher_seconds, transfer = add_teacher_columns(
            ds["train"], data, recipe, frozen, lambda df: tokenize_frame(df, tokenizer, label_ids, recipe.model.max_length),
            _say, load_teacher)
        from finpeft.training.distill import TeacherCollator
        collator = TeacherCollator(collator)

    # 3. Trainer.
    t = recipe.train
    work.mkdir(parents=True, exist_ok=True)
    if _world()[0] == 0:
        write_atomic(work / "recipe.yaml", recipe.to_yaml())  # so --resume continues with the same recipe
    # transformers v5 takes the TensorBoard dir from this variable only; set per run (a process may train twice).
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(work / "logs")
    args = TrainingArguments(
        output_dir=str(work / "checkpoints"), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler, label_smoothing_factor=t.label_smoothing,
        max_grad_norm=t.max_grad_norm, eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
        load_best_model_at_end=not data.valid_from_train, metric_for_best_model="mse" if regression else "macro_f1",
        greater_is_better=not regression,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        logging_steps=t.logging_steps, report_to=t.report_to, seed=recipe.seed,
        disable_tqdm=not (sys.stderr.isatty() if t.progress_bar is None else t.progress_bar),
        dataloader_pin_memory=torch.cuda.is_available(),
        # Trainer multiplies the loss by the process count for models whose forward takes **kwargs, expecting
        # a token-normalised LM loss; a classifier's mean loss would then train at world-size x the LR under DDP.
        average_tokens_across_devices=False,
        remove_unused_columns=not (frozen and recipe.train.feature_cache),  # the collator needs "index"
        torch_compile=t.compile,
        ddp_backend=None if torch.cuda.is_available() or world == 1 else "gloo", **precision)
    steps = _StepCounter()
    clock = _Clock(work / "elapsed.json", resume)
    callbacks = [steps, clock, *(callbacks or [])]
    if t.ema_decay:
        from finpeft.training.ema import EMACallback
        callbacks.append(EMACallback(t.ema_decay))
    if t.early_stopping_patience and not data.valid_from_train:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience))
    extra = {}  # Trainer keyword arguments beyond the common ones
    if t.layer_lr_decay:  # the configured optimizer (AdamW by default), with one param group per layer
        from finpeft.training.optim import layerwise_param_groups
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        groups = layerwise_param_groups(model, t.lr, t.weight_decay, t.layer_lr_decay)
        extra["optimizer_cls_and_kwargs"] = (cls, {**kwargs, "params": groups})
    trainer_cls = Trainer
    if t.distill_from:
        from finpeft.training.distill import DistillTrainer as trainer_cls
        extra.update(alpha=t.distill_alpha, temperature=t.distill_temperature)
    elif t.rdrop_alpha:
        from finpeft.training.rdrop import RDropTrainer as trainer_cls
        extra.update(rdrop_alpha=t.rdrop_alpha)
    trainer = trainer_cls(
        model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["valid"], data_collator=collator,
        compute_metrics=_regression_eval(label_ids) if regression else _eval_metrics, callbacks=callbacks, **extra)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(out) if resume else None)
    trainer_seconds = time.perf_counter() - started
    # a resumed run adds the time spent before its checkpoint, so the cost of the model is the whole cost
    train_seconds = body_seconds + encode_seconds + trainer_seconds + clock.before
    # rows processed in this process's timed segment (a resumed run counts only what it ran itself)
    samples_seen = (trainer.state.global_step - (steps.first or 0)) * t.batch_size * t.grad_accum * world

    # 4. Test evaluation and writing: rank 0 only, through the same scorer `finpeft.load().predict` uses
    # (Trainer.predict would return rows in its length-grouped sampler's order, not the test set's).
    from finpeft.report.classification import write_evaluation
    if not trainer.is_world_process_zero():
        return out
    scorer = fz.FrozenEncoderClassifier(encoder, head) if frozen else trainer.model
    scored = time.perf_counter()
    probs = predict_outputs(scorer, tokenizer, data.test["text"].tolist(), recipe.model.max_length,
                            t.eval_batch_size, softmax=not regression)
    infer_rate = len(data.test) / (time.perf_counter() - scored)
    y = data.test["label"].to_numpy(dtype=float) if regression else np.array([label_ids[l] for l in data.test["label"]])
    context = {"dataset": data.name, "split": "test", "method": recipe.method.name,
               "backbone": recipe.model.backbone, "seed": recipe.seed, "command": command,
               "train_seconds": round(train_seconds, 2),
               "train_samples_per_second": round(samples_seen / trainer_seconds, 2),
               "encode_seconds": round(encode_seconds, 2),
               **({"body_seconds": round(body_seconds, 2)} if method.adapt_body else {}),
               "resumed_seconds_before": round(clock.before, 2) or None,
               "epochs_run": round(trainer.state.epoch, 3),
               ("best_valid_mse" if regression else "best_valid_macro_f1"): trainer.state.best_metric,
               "test_sentences_per_second": round(infer_rate, 1), **_peak_memory(),
               **({"distilled_from": t.distill_from, "teacher_seconds": teacher_seconds, "transfer": transfer,
                   "teacher_train_seconds": teacher_train} if t.distill_from else {}),
               "trainable_params": trainable, "total_params": total, "data_source": data.source,
               "sizes": sizes, "processes": world, "label_names": data.label_names or None, "notes": data.notes, "finpeft_version": __version__,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if data.extra_tests:  # data.mix: every mixed dataset's own test split, scored by the same model
        from finpeft.report.classification import classification_metrics
        own = classification_metrics(y, probs, data.labels)
        context["per_dataset"] = {data.name: {k: own[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}}
        for name, df in data.extra_tests.items():
            p_extra = predict_proba(scorer, tokenizer, df["text"].tolist(), recipe.model.max_length, t.eval_batch_size)
            m = write_evaluation(work / "eval" / f"{name}-test", df["text"].tolist(),
                                 np.array([label_ids[l] for l in df["label"]]), p_extra, data.labels,
                                 {**context, "dataset": name, "per_dataset": None})
            context["per_dataset"][name] = {k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "n")}
    if regression:
        from finpeft.report.regression import write_regression_evaluation
        metrics = write_regression_evaluation(work, data.test["text"].tolist(), y,
                                              label_ids.inverse(probs[:, 0]), {**context, "task": "regression",
                                                                               "train_mean": label_ids.mean})
    else:
        metrics = write_evaluation(work, data.test["text"].tolist(), y, probs, data.labels, context)

    model_dir = work / "model"
    hf_logging.disable_progress_bar()  # the Trainer turns tqdm back on; one "Writing model shards" bar is noise
    if frozen:
        head.save_pretrained(model_dir)  # a FrozenHeadModel: config.json + model.safetensors, the head alone
    if frozen and t.inspect:
        from finpeft.training.inspection import inspect_frozen
        inspect_frozen(scorer, tokenizer, data.test["text"].tolist(), y, data.labels, work, recipe.model.max_length,
                       t.eval_batch_size, seed=recipe.seed, method=recipe.method.name)
    if not frozen:  # a method may save something else than what it trained (scratch methods: LoRA merged)
        method.saved_model(trainer.model).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    run_info = {"finpeft_version": __version__, "artifact": method.ARTIFACT, "method": recipe.method.name,
                "backbone": recipe.model.backbone, "backbone_path": base_path, "labels": data.labels,
                **({"init_from": str(init_run.resolve())} if init_run is not None else {}),
                "label_names": data.label_names, **({} if regression else {"label_polarity": polarity or {}}),
                "max_length": recipe.model.max_length, "trust_remote_code": recipe.model.trust_remote_code,
                **({"task": "regression", "target": label_ids.to_dict()} if regression else {})}
    write_run_info(work, run_info)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    (work / "elapsed.json").unlink(missing_ok=True)
    finish(work, out)

    append_result(results, {**metrics, "run_dir": str(out)})
    if regression:
        from finpeft.report.regression import summary_lines
        for line in summary_lines(metrics, train_seconds):
            _say(line)
        _say(f"run saved to {out} (report: {out / 'report.md'}; results row appended to {results})")
        return out
    _say(f"test accuracy {metrics['accuracy']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | weighted-F1 "
         f"{metrics['weighted_f1']:.4f} | ECE {metrics['ece']:.4f} | train {train_seconds:.0f}s")
    b = metrics["baseline"]
    _say(f"majority-class baseline (always '{b['label']}'): accuracy {b['accuracy']:.4f} | macro-F1 {b['macro_f1']:.4f}")
    from finpeft.report.classification import warnings_for
    for w in warnings_for(metrics):
        _say(f"warning: {w}")
    _say(f"run saved to {out} (report: {out / 'report.md'}; results row appended to {results})")
    return out
