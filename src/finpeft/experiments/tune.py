"""`finpeft tune RECIPE --trials N`: Optuna search over the recipe's `search:` section.

TPE sampler, median pruning on the validation macro-F1 reported after every epoch, SQLite storage (so the
study resumes after an interruption and `optuna-dashboard sqlite:///DIR/study.db` can read it). With
`storage=URL` (any database Optuna's RDB storage supports, e.g. `postgresql://user@host/db`) the study lives
there and several processes or machines running the same command share it: trials are split between them,
`n_trials` is the total across all of them, and a trial whose process died (no heartbeat for 2 minutes) is
failed and queued again (Optuna's heartbeat + RetryFailedTrialCallback). Trials are
chosen on validation macro-F1 only; the test split is scored per trial (as every run is) but never used to
choose. The best trial's recipe is written as best.yaml, ready for `finpeft train`.

    search:
      train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      train.epochs: {type: int, low: 2, high: 6}
      train.label_smoothing: {type: categorical, choices: [0.0, 0.1]}
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

from transformers import TrainerCallback

from finpeft.errors import FinpeftError
from finpeft.methods import checked_method
from finpeft.core.recipe import Recipe, SearchParam, load_recipe
from finpeft.core.runs import write_atomic


def suggest(trial, key: str, p: SearchParam):
    if p.type == "categorical":
        return trial.suggest_categorical(key, p.choices)
    if p.type == "int":
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)


def trial_recipe(recipe_path: str | None, overrides: list[str], params: dict) -> Recipe:
    r = load_recipe(recipe_path, [*overrides, *(f"{k}={json.dumps(v)}" for k, v in params.items())])
    return r.model_copy(update={"search": {}})


class _PruneOnValid(TrainerCallback):
    """Reports valid macro-F1 after each evaluation; stops a trial the median pruner rejects."""

    def __init__(self, trial):
        self.trial = trial

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        import optuna
        step = int(round(state.epoch or 0)) or state.global_step
        self.trial.report(float(metrics["eval_macro_f1"]), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"valid macro-F1 {metrics['eval_macro_f1']:.4f} below the median at epoch {step}")


HEARTBEAT_S, GRACE_S = 30, 120  # shared storage: a RUNNING trial with no heartbeat for GRACE_S is a dead process's


class _Surplus(Exception):
    """A trial asked for after the study's total was reached by other processes (it is failed, never run)."""


def open_storage(url: str | None, out: Path):
    """The study's storage: the study dir's SQLite file by default, else an RDB URL shared by every process.
    `postgresql://` uses psycopg 3 (the driver installed with the `scale` extra). A URL that cannot connect
    is one FinpeftError, the password never shown."""
    import optuna
    if url is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        u = make_url(url)
    except ArgumentError:
        raise FinpeftError(f"--storage {url!r} is not a database URL (e.g. postgresql://user@host:5432/db or "
                           "sqlite:///study.db)") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    shown = u.render_as_string(hide_password=True)
    import warnings
    for attempt in range(3):  # processes starting together race to create the schema: the loser retries
        try:
            with warnings.catch_warnings():  # the heartbeat retry callback is marked experimental
                warnings.simplefilter("ignore")
                return optuna.storages.RDBStorage(
                    u.render_as_string(hide_password=False), heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
        except ModuleNotFoundError as e:
            raise FinpeftError(f"--storage {shown}: the database driver is not installed ({e.name}); "
                               "pip install 'finpeft[scale]'") from None
        except Exception as e:  # sqlalchemy's OperationalError & co: one line, whatever the database said
            if attempt < 2 and "IntegrityError" in type(e).__name__:
                time.sleep(1 + attempt)
                continue
            first = str(getattr(e, "orig", None) or e).strip().splitlines()
            raise FinpeftError(f"--storage {shown}: cannot connect: "
                               f"{first[0][:200] if first else type(e).__name__}") from None


def tune(recipe_path: str | None, overrides: list[str], n_trials: int, output: str | Path | None = None,
         command: str | None = None, echo=print, storage: str | None = None, study_name: str | None = None) -> Path:
    import optuna
    from optuna.trial import TrialState
    base = load_recipe(recipe_path, overrides)
    from finpeft.data.catalog import task_of
    if (task := task_of(base.data)) != "classification":
        raise FinpeftError(f"finpeft tune maximises the valid macro-F1: a {task} recipe is not supported yet; compare {task} set-ups "
                           "with finpeft bench (it reports each task's metrics)")
    if not base.search:
        raise FinpeftError("the recipe has no search: section (e.g. search: {train.lr: {type: float, low: 1.0e-5, "
                           "high: 1.0e-3, log: true}})")
    # Every bound must make a valid recipe before the first trial runs.
    for key, p in base.search.items():
        for v in (p.choices or [p.low, p.high]):
            try:
                checked_method(trial_recipe(recipe_path, overrides, {key: int(v) if p.type == "int" else v}).method)
            except FinpeftError as e:
                raise FinpeftError(f"search.{key}={v!r}: {e}") from None
    out = Path(output) if output else Path("runs") / f"tune-{base.name or base.data.dataset + '-' + base.method.name}"
    store = open_storage(storage, out)  # a URL that cannot connect stops here, before anything is written
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    shared = storage is not None
    study = optuna.create_study(
        study_name=study_name or (out.name if shared else "finpeft"), storage=store,
        load_if_exists=True, direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    # A resumed study (or a second process on a shared one) must not replay another's random draws.
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(study.trials) + (os.getpid() if shared else 0))
    study.set_user_attr("search", {k: p.model_dump(exclude_none=True) for k, p in base.search.items()})
    if not shared:
        # One `tune` process per SQLite study: a trial still RUNNING here was cut off by an interruption. Fail it
        # and queue its parameters again so the resumed study re-runs it rather than losing the point. (On a
        # shared storage a RUNNING trial may be another process's: the heartbeat decides there.)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)  # Optuna's public API (no private storage calls)
            study.enqueue_trial(t.params, skip_if_exists=False)
            echo(f"trial {t.number} was interrupted; queued again")
    objective = _objective(base, recipe_path, overrides, out, command, n_trials, study)

    def report(study, t) -> None:
        if t.user_attrs.get("surplus"):
            return
        if t.state == TrialState.COMPLETE:
            value = f"valid macro-F1 {t.value:.4f}"
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            step = max(t.intermediate_values)
            value = f"pruned after epoch {step} (valid macro-F1 {t.intermediate_values[step]:.4f}, below the median)"
        else:
            value = t.state.name.lower()
        echo(f"trial {t.number}: {value} | {json.dumps(t.params)}")
        write_summary(study, out, recipe_path, overrides, command)

    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    if finished:
        echo(f"resuming: {finished} of {n_trials} trials already finished in "
             f"{out / 'study.db' if not shared else study.study_name}")
    while True:  # one trial per optimize call, so the total is checked against every process's trials
        used, running = _budget(study)
        if used >= n_trials and not running:
            break
        if used >= n_trials:  # the rest run elsewhere: wait for them (a dead one is failed and queued again)
            time.sleep(HEARTBEAT_S / 3)
            optuna.storages.fail_stale_trials(study)
            continue
        study.optimize(objective, n_trials=1, callbacks=[report], catch=(FinpeftError, _Surplus))
    write_summary(study, out, recipe_path, overrides, command)
    return out


def _budget(study, before: int | None = None) -> tuple[int, int]:
    """(trials that count towards the total, of which still running), among the trials numbered below `before`
    (None: all). A trial counts when it finished, was pruned, is running, or failed on its own error; not when it
    was interrupted (it is queued again) or surplus."""
    from optuna.trial import TrialState
    used = running = 0
    for t in study.get_trials(deepcopy=False):
        if before is not None and t.number >= before:
            continue
        if t.state == TrialState.RUNNING:
            running += 1
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or "error" in t.user_attrs:
            used += 1
    return used, running


def _objective(base: Recipe, recipe_path, overrides, out: Path, command, n_trials: int, study):
    import optuna
    from finpeft.core.runs import partial_dir
    from finpeft.inference.predictor import Predictor
    from finpeft.training.classifier import train

    def objective(trial) -> float:
        if _budget(study, before=trial.number)[0] >= n_trials:  # another process took the last trial between our check and this ask
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"the study already has its {n_trials} trials")
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine / process ran it
        params = {k: suggest(trial, k, p) for k, p in base.search.items()}
        run_dir = out / "trials" / f"trial-{trial.number:04d}"
        recipe = trial_recipe(recipe_path, overrides, params).model_copy(
            update={"results_csv": str(out / "results.csv")})
        try:
            train(recipe, output=run_dir, overwrite=True, command=command, callbacks=[_PruneOnValid(trial)],
                  load_teacher=Predictor)
        except optuna.TrialPruned:
            shutil.rmtree(partial_dir(run_dir), ignore_errors=True)
            raise
        except FinpeftError as e:
            trial.set_user_attr("error", str(e)[:300])
            raise
        except KeyboardInterrupt:  # Optuna records the trial as failed; queue its point for the resumed study
            study.enqueue_trial(params, skip_if_exists=False)
            raise
        m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("test_accuracy", m["accuracy"])
        return float(m["best_valid_macro_f1"])
    return objective


def write_summary(study, out: Path, recipe_path: str | None, overrides: list[str], command: str | None) -> None:
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = [{"trial": t.number, "state": t.state.name, "valid_macro_f1": t.value,
             "test_accuracy": t.user_attrs.get("test_accuracy"), "worker": t.user_attrs.get("worker"), **t.params}
            for t in study.trials
            if not t.user_attrs.get("surplus")]
    import pandas as pd
    write_atomic(out / "trials.csv", pd.DataFrame(rows).to_csv(index=False))
    if not done:
        return
    best = study.best_trial
    recipe = trial_recipe(recipe_path, overrides, best.params)
    header = (f"# Best of {len(done)} completed trials (finpeft tune, Optuna TPE + median pruning): trial "
              f"{best.number}, valid macro-F1 {best.value:.4f}\n# command: {command or 'finpeft tune'}\n"
              f"# train it: finpeft train {out / 'best.yaml'}\n")
    write_atomic(out / "best.yaml", header + recipe.to_yaml())
    write_atomic(out / "best.json", json.dumps({"trial": best.number, "valid_macro_f1": best.value,
                                                "params": best.params, **best.user_attrs}, indent=2))
