"""Training: recipe -> checked data -> backbone + method -> transformers Trainer -> report -> run dir."""
from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from finpeft.version import __version__
from finpeft.models.backbones import load_config, resolve_backbone
from finpeft.data.batching import predict_outputs, tokenize_frame
from finpeft.data import load_dataset_splits
from finpeft.errors import FinpeftError
from finpeft.methods import checked_method
from finpeft.methods.common import count_parameters
from finpeft.core.recipe import Recipe, validate_recipe, with_method_defaults
from finpeft.core.runs import append_result, default_output, finish, last_checkpoint, partial_dir, prepare, write_atomic
from finpeft.core.runinfo import write_run_info
from finpeft.tasks import get_task
from finpeft.training.callbacks import Clock, StepCounter, peak_memory
from finpeft.training.checks import check_data, say_truncation
from finpeft.training.runtime import _say, _set_threads, _world, precision_args  # noqa: F401  (precision_args: re-exported)

log = logging.getLogger("finpeft")


@dataclass
class RunState:
    """What the stages of one training run hand on to each other (filled in stage order)."""
    recipe: Recipe
    method: object = None
    opts: object = None
    precision: dict = field(default_factory=dict)
    model_path: str = ""
    init_run: Path | None = None
    teacher_train: float | None = None
    data: object = None
    task: object = None  # finpeft.tasks: what differs between classification, regression, multilabel
    task_info: dict = field(default_factory=dict)  # the run.json entries the task adds (e.g. label_polarity)
    sizes: dict = field(default_factory=dict)
    out: Path | None = None
    work: Path | None = None
    results: Path | None = None
    # model
    tokenizer: object = None
    label_ids: object = None
    model: object = None
    encoder: object = None
    head: object = None
    ds: dict = field(default_factory=dict)
    collator: object = None
    trainable: int = 0
    total: int = 0
    base_path: str = ""
    body_seconds: float = 0.0
    encode_seconds: float = 0.0
    teacher_seconds: float | None = None
    transfer: dict | None = None
    # fit
    trainer: object = None
    clock: object = None
    trainer_seconds: float = 0.0
    train_seconds: float = 0.0
    samples_seen: int = 0

    @property
    def frozen(self) -> bool:
        return self.method.ARTIFACT == "frozen"


def train(recipe: Recipe, output: str | Path | None = None, overwrite: bool = False, resume: bool = False,
          command: str | None = None, callbacks: list | None = None, load_teacher=None) -> Path:
    """Train per the recipe; returns the finished run dir (holding model/, metrics.json, report.md, ...).
    The stages: plan (prerequisites and every check that needs no model) -> build (tokenizer, model, tensors)
    -> fit (the Trainer) -> evaluate (the test split, reports) -> save (model/, run.json, the run dir).

    resume=True continues `output`'s interrupted run with the recipe that run was started with."""
    s = plan(_resumed_recipe(recipe, output, resume), output, overwrite, resume, load_teacher)
    build(s, load_teacher)
    fit(s, resume, callbacks)
    if not s.trainer.is_world_process_zero():
        return s.out
    metrics = evaluate_test(s, command)
    save(s)
    append_result(s.results, {**metrics, "run_dir": str(s.out)})
    _summarise(s, metrics)
    return s.out


def _resumed_recipe(recipe: Recipe, output, resume: bool) -> Recipe:
    if not resume:
        return recipe
    if output is None:
        raise FinpeftError("--resume needs --output: the run dir the interrupted run was writing")
    saved = partial_dir(Path(output)) / "recipe.yaml"
    if saved.is_file():
        import yaml
        recipe = validate_recipe(yaml.safe_load(saved.read_text(encoding="utf-8")), str(saved))
        _say(f"resuming with the interrupted run's recipe ({saved})")
    return recipe


def plan(recipe: Recipe, output, overwrite: bool, resume: bool, load_teacher) -> RunState:
    """Prerequisites (a teacher, an intermediate run, a pretraining backbone) and everything that can be rejected
    without a model: method, options, data, the output dir."""
    s = RunState(recipe)
    if recipe.train.distill_from and load_teacher is None:
        raise FinpeftError("train.distill_from: the teacher is scored through finpeft.inference; call finpeft.train "
                           "(or `finpeft train`), or pass load_teacher=finpeft.inference.predictor.Predictor")
    import functools
    from finpeft.training.prerequisite import backbone_from_recipe, check_init_labels, init_weights, run_from_recipe
    again = functools.partial(train, load_teacher=load_teacher)
    if recipe.train.distill_from and recipe.train.distill_from.endswith((".yaml", ".yml")):
        teacher_dir, s.teacher_train = run_from_recipe(recipe.train.distill_from, again, _say)
        recipe = recipe.model_copy(update={"train": recipe.train.model_copy(update={"distill_from": str(teacher_dir)})})
    s.method, s.opts = checked_method(recipe.method)
    s.recipe = recipe = with_method_defaults(recipe, s.method.TRAIN_DEFAULTS)
    s.precision = precision_args(recipe.train.precision)
    from finpeft.training.distill import check_transfer
    check_transfer(recipe, s.frozen)
    if recipe.train.rdrop_alpha and recipe.train.distill_from:
        raise FinpeftError("train.rdrop_alpha and train.distill_from each set the training loss; use one of them")
    if recipe.model.backbone.endswith((".yaml", ".yml")):  # a pretraining recipe: its encoder, built once
        s.model_path = backbone_from_recipe(recipe.model.backbone, _say)
    else:
        s.model_path = resolve_backbone(recipe.model.backbone)  # a name check only; nothing is loaded yet
    if recipe.model.init_from:  # intermediate-task transfer: that run's fine-tuned weights, not the raw backbone
        s.model_path, s.init_run, init_labels = init_weights(recipe.model.init_from, recipe.model.backbone, again, _say)
    s.data = data = load_dataset_splits(recipe.data)
    s.task = get_task(data.task)
    if s.init_run is not None and not s.frozen:  # a frozen method keeps the encoder, not the head
        check_init_labels(s.init_run, init_labels, data.labels, data.task)
    s.task_info = check_data(data, recipe, s.method, s.task, _say)
    s.sizes = data.sizes()  # as loaded: a few-label set has valid 0
    if data.valid_from_train:  # the Trainer's per-epoch evaluation reads the training rows; selection is off
        data.valid = data.train
    stem = recipe.name or f"{data.name}-{recipe.method.name}-{Path(recipe.model.backbone).name}"
    s.out = Path(output) if output else default_output(Path("runs"), f"{stem}-s{recipe.seed}")
    s.work = prepare(s.out, overwrite, resume, is_main=_world()[0] == 0)
    s.results = Path(recipe.results_csv) if recipe.results_csv else s.out.parent / "results.csv"
    if s.results.is_dir():
        raise FinpeftError(f"results_csv {s.results} is a directory")
    load_config(s.model_path, recipe.model.trust_remote_code)  # unknown backbone -> clear error, before work starts
    return s


def build(s: RunState, load_teacher) -> None:
    """Tokenizer, label ids, the method's model (a body adapted first where the method does that), the train /
    valid tensors (or cached features), the teacher's soft labels."""
    from transformers import AutoTokenizer, DataCollatorWithPadding, set_seed
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    recipe, data, method = s.recipe, s.data, s.method
    threads = _set_threads(recipe.train.num_threads)
    set_seed(recipe.seed)
    _say(f"{data.name}: train/valid/test = {s.sizes} | method {recipe.method.name} | backbone "
         f"{recipe.model.backbone} | {threads} threads x {_world()[1]} process(es) | working in {s.work}")
    s.tokenizer = AutoTokenizer.from_pretrained(s.model_path, trust_remote_code=recipe.model.trust_remote_code)
    # how long texts are cut, kept in the saved tokenizer: predict, serve and ONNX cut them the same way
    s.tokenizer.init_kwargs.pop("finpeft_truncation", None)  # (an init_from run's tokenizer may carry its own)
    if recipe.model.truncation != "head":
        s.tokenizer.init_kwargs["finpeft_truncation"] = recipe.model.truncation
    s.label_ids = s.task.targets(data)  # label -> model target (class id, standardised score, 0/1 vector)
    s.base_path = s.model_path
    if method.adapt_body is not None:  # e.g. setfit: the encoder is tuned on the training rows first
        began = time.perf_counter()
        s.model_path = method.adapt_body(s.model_path, data.train["text"].tolist(),
                                         [s.label_ids[l] for l in data.train["label"]], s.opts, recipe,
                                         s.work / "model" / "body", _say)
        s.body_seconds = time.perf_counter() - began
    try:
        if s.frozen:
            from finpeft.methods import frozen as fz
            s.encoder, s.head, s.opts = fz.build(method, s.model_path, data.labels, s.opts, recipe.model)
        else:
            s.model = method.build(s.model_path, data.labels, s.opts, recipe.model)
    except (ValueError, OSError) as e:  # e.g. LoRA target modules the backbone does not have
        raise FinpeftError(f"method {recipe.method.name} on {recipe.model.backbone}: {str(e).splitlines()[0]}") from None
    if recipe.train.freeze_embeddings and not s.frozen:  # the token-embedding matrix: 23M of MPNet's 110M weights
        s.model.get_input_embeddings().requires_grad_(False)
    if s.frozen:
        s.trainable, s.total = count_parameters(s.head)[0], count_parameters(s.head)[0] + count_parameters(s.encoder)[1]
        began = time.perf_counter()
        s.model, s.ds, s.collator = fz.setup(method, s.opts, s.encoder, s.head, s.tokenizer, data, s.label_ids, recipe,
                                             s.model_path, _say)
        s.encode_seconds = time.perf_counter() - began  # feature encoding (or a cache hit): part of the training cost
    else:
        s.trainable, s.total = count_parameters(s.model)
        s.ds = {k: tokenize_frame(getattr(data, k), s.tokenizer, s.label_ids, recipe.model.max_length)
                for k in ("train", "valid")}  # test is scored after training, in input order
        s.collator = DataCollatorWithPadding(s.tokenizer)
    _say(f"trainable parameters {s.trainable:,} of {s.total:,} ({s.trainable / s.total:.2%})")
    say_truncation(s.tokenizer, data, recipe.model.max_length, _say)
    if recipe.train.distill_from:
        from finpeft.training.distill import TeacherCollator, add_teacher_columns
        s.ds["train"], s.teacher_seconds, s.transfer = add_teacher_columns(
            s.ds["train"], data, recipe, s.frozen,
            lambda df: tokenize_frame(df, s.tokenizer, s.label_ids, recipe.model.max_length), _say, load_teacher)
        s.collator = TeacherCollator(s.collator)


def fit(s: RunState, resume: bool, callbacks: list | None) -> None:
    """The transformers Trainer, with finpeft's clock and the recipe's training objective (plain, distillation
    or R-Drop), EMA, early stopping and layer-wise learning rates as callbacks / optimizer groups."""
    import torch
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    t, work, data = s.recipe.train, s.work, s.data
    world = _world()[1]
    work.mkdir(parents=True, exist_ok=True)
    if _world()[0] == 0:
        write_atomic(work / "recipe.yaml", s.recipe.to_yaml())  # so --resume continues with the same recipe
    # transformers v5 takes the TensorBoard dir from this variable only; set per run (a process may train twice).
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(work / "logs")
    args = TrainingArguments(
        output_dir=str(work / "checkpoints"), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio, lr_scheduler_type=t.scheduler, label_smoothing_factor=t.label_smoothing,
        max_grad_norm=t.max_grad_norm, eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
        load_best_model_at_end=not data.valid_from_train, metric_for_best_model=s.task.select_metric,
        greater_is_better=s.task.greater_is_better,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        logging_steps=t.logging_steps, report_to=t.report_to, seed=s.recipe.seed,
        disable_tqdm=not (sys.stderr.isatty() if t.progress_bar is None else t.progress_bar),
        dataloader_pin_memory=torch.cuda.is_available(),
        # Trainer multiplies the loss by the process count for models whose forward takes **kwargs, expecting
        # a token-normalised LM loss; a classifier's mean loss would then train at world-size x the LR under DDP.
        average_tokens_across_devices=False,
        remove_unused_columns=not (s.frozen and t.feature_cache),  # the collator needs "index"
        torch_compile=t.compile,
        ddp_backend=None if torch.cuda.is_available() or world == 1 else "gloo", **s.precision)
    steps = StepCounter()
    s.clock = Clock(work / "elapsed.json", resume)
    callbacks = [steps, s.clock, *(callbacks or [])]
    if t.ema_decay:
        from finpeft.training.ema import EMACallback
        callbacks.append(EMACallback(t.ema_decay))
    if t.early_stopping_patience and not data.valid_from_train:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience))
    extra = {}  # Trainer keyword arguments beyond the common ones
    if t.layer_lr_decay:  # the configured optimizer (AdamW by default), with one param group per layer
        from finpeft.training.optim import layerwise_param_groups
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, s.model)
        groups = layerwise_param_groups(s.model, t.lr, t.weight_decay, t.layer_lr_decay)
        extra["optimizer_cls_and_kwargs"] = (cls, {**kwargs, "params": groups})
    trainer_cls = Trainer
    if t.distill_from:
        from finpeft.training.distill import DistillTrainer as trainer_cls
        extra.update(alpha=t.distill_alpha, temperature=t.distill_temperature)
    elif t.rdrop_alpha:
        from finpeft.training.rdrop import RDropTrainer as trainer_cls
        extra.update(rdrop_alpha=t.rdrop_alpha)
    s.trainer = trainer_cls(
        model=s.model, args=args, train_dataset=s.ds["train"], eval_dataset=s.ds["valid"], data_collator=s.collator,
        compute_metrics=s.task.valid_metrics(s.label_ids), callbacks=callbacks, **extra)
    started = time.perf_counter()
    s.trainer.train(resume_from_checkpoint=last_checkpoint(s.out) if resume else None)
    s.trainer_seconds = time.perf_counter() - started
    # a resumed run adds the time spent before its checkpoint, so the cost of the model is the whole cost
    s.train_seconds = s.body_seconds + s.encode_seconds + s.trainer_seconds + s.clock.before
    # rows processed in this process's timed segment (a resumed run counts only what it ran itself)
    s.samples_seen = (s.trainer.state.global_step - (steps.first or 0)) * t.batch_size * t.grad_accum * world


def _scorer(s: RunState):
    if s.frozen:
        from finpeft.methods import frozen as fz
        return fz.FrozenEncoderClassifier(s.encoder, s.head)
    return s.trainer.model


def evaluate_test(s: RunState, command: str | None) -> dict:
    """The test split (and a data.mix's other test splits), rank 0 only, through the same scorer
    `finpeft.load().predict` uses (Trainer.predict would return rows in its length-grouped order)."""
    recipe, data, t, task = s.recipe, s.data, s.recipe.train, s.task
    scorer = _scorer(s)

    def outputs(df):
        return predict_outputs(scorer, s.tokenizer, df["text"].tolist(), recipe.model.max_length, t.eval_batch_size,
                               task.output)
    # a task that picks a cut on valid (multilabel thresholds) does it here, never on test
    s.label_ids = task.calibrate(s.label_ids, lambda: outputs(data.valid), None if data.valid_from_train else data.valid)
    scored = time.perf_counter()
    probs = outputs(data.test)
    infer_rate = len(data.test) / (time.perf_counter() - scored)
    context = {"dataset": data.name, "split": "test", "method": recipe.method.name,
               "backbone": recipe.model.backbone, "seed": recipe.seed, "command": command,
               "train_seconds": round(s.train_seconds, 2),
               "train_samples_per_second": round(s.samples_seen / s.trainer_seconds, 2),
               "encode_seconds": round(s.encode_seconds, 2),
               **({"body_seconds": round(s.body_seconds, 2)} if s.method.adapt_body else {}),
               "resumed_seconds_before": round(s.clock.before, 2) or None,
               "epochs_run": round(s.trainer.state.epoch, 3),
               f"best_valid_{task.select_metric}": s.trainer.state.best_metric,
               "test_sentences_per_second": round(infer_rate, 1), **peak_memory(),
               **({"distilled_from": t.distill_from, "teacher_seconds": s.teacher_seconds, "transfer": s.transfer,
                   "teacher_train_seconds": s.teacher_train} if t.distill_from else {}),
               "trainable_params": s.trainable, "total_params": s.total, "data_source": data.source,
               "sizes": s.sizes, "processes": _world()[1], "label_names": data.label_names or None,
               "notes": data.notes, "finpeft_version": __version__,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    info = {"labels": data.labels, **task.run_info(s.label_ids)}
    if data.extra_tests:  # data.mix (classification): every mixed dataset's own test split, by the same model
        from finpeft.report.classification import classification_metrics
        own = classification_metrics(task.gold(data.test, s.label_ids), probs, data.labels)
        keys = ("accuracy", "macro_f1", "weighted_f1", "n")
        context["per_dataset"] = {data.name: {k: own[k] for k in keys}}
        for name, df in data.extra_tests.items():
            m = task.evaluate(s.work / "eval" / f"{name}-test", df["text"].tolist(), df["label"], outputs(df), info,
                              {**context, "dataset": name, "per_dataset": None})
            context["per_dataset"][name] = {k: m[k] for k in keys}
    return task.evaluate(s.work, data.test["text"].tolist(), data.test["label"], probs, info, context)


def save(s: RunState) -> None:
    """model/ (what the method saves), the tokenizer, run.json; the work dir renamed into the run dir."""
    from transformers.utils import logging as hf_logging
    recipe, data, t, work = s.recipe, s.data, s.recipe.train, s.work
    model_dir = work / "model"
    hf_logging.disable_progress_bar()  # the Trainer turns tqdm back on; one "Writing model shards" bar is noise
    if s.frozen:
        s.head.save_pretrained(model_dir)  # a FrozenHeadModel: config.json + model.safetensors, the head alone
    if s.frozen and t.inspect:
        from finpeft.training.inspection import inspect_frozen
        y = s.task.gold(data.test, s.label_ids)
        inspect_frozen(_scorer(s), s.tokenizer, data.test["text"].tolist(), y, data.labels, work,
                       recipe.model.max_length, t.eval_batch_size, seed=recipe.seed, method=recipe.method.name)
    if not s.frozen:  # a method may save something else than what it trained (scratch methods: LoRA merged)
        s.method.saved_model(s.trainer.model).save_pretrained(model_dir)
    s.tokenizer.save_pretrained(model_dir)
    run_info = {"finpeft_version": __version__, "artifact": s.method.ARTIFACT, "method": recipe.method.name,
                "backbone": recipe.model.backbone, "backbone_path": s.base_path, "labels": data.labels,
                **({"init_from": str(s.init_run.resolve())} if s.init_run is not None else {}),
                "label_names": data.label_names, **s.task_info,
                "max_length": recipe.model.max_length, "truncation": recipe.model.truncation,
                "trust_remote_code": recipe.model.trust_remote_code,
                "task": s.task.name, **s.task.run_info(s.label_ids)}
    write_run_info(work, run_info)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    (work / "elapsed.json").unlink(missing_ok=True)
    finish(work, s.out)


def _summarise(s: RunState, metrics: dict) -> None:
    for line in s.task.summary(metrics, s.train_seconds):
        _say(line)
    _say(f"run saved to {s.out} (report: {s.out / 'report.md'}; results row appended to {s.results})")
