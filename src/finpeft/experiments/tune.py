"""`finpeft tune RECIPE --trials N`: Optuna search over the recipe's `search:` section.

TPE sampler, median pruning on the validation macro-F1 reported after every epoch, SQLite storage (so the
study resumes after an interruption and `optuna-dashboard sqlite:///DIR/study.db` can read it). Trials are
chosen on validation macro-F1 only; the test split is scored per trial (as every run is) but never used to
choose. The best trial's recipe is written as best.yaml, ready for `finpeft train`.

    search:
      train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
      train.epochs: {type: int, low: 2, high: 6}
      train.label_smoothing: {type: categorical, choices: [0.0, 0.1]}
"""
from __future__ import annotations

import json
import shutil
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


def tune(recipe_path: str | None, overrides: list[str], n_trials: int, output: str | Path | None = None,
         command: str | None = None, echo=print) -> Path:
    import optuna
    from optuna.trial import TrialState
    from finpeft.core.runs import partial_dir
    from finpeft.inference.predictor import Predictor
    from finpeft.training.classifier import train
    base = load_recipe(recipe_path, overrides)
    from finpeft.data.catalog import task_of
    if task_of(base.data) == "regression":
        raise FinpeftError("finpeft tune maximises the valid macro-F1: a regression recipe is not supported yet; compare regression set-ups "
                           "with finpeft bench (it reports MSE / R²)")
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
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="finpeft", storage=f"sqlite:///{(out / 'study.db').resolve()}", load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    # A resumed study must not replay the first process's random draws: seed the sampler past the trials so far.
    study.sampler = optuna.samplers.TPESampler(seed=base.seed + len(study.trials))
    study.set_user_attr("search", {k: p.model_dump(exclude_none=True) for k, p in base.search.items()})
    # One `tune` process per study: a trial still RUNNING here was cut off by an interruption. Fail it and
    # queue its parameters again so the resumed study re-runs it rather than losing the point.
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # Optuna's public API (no private storage calls)
        study.enqueue_trial(t.params, skip_if_exists=False)
        echo(f"trial {t.number} was interrupted; queued again")

    def objective(trial) -> float:
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
        except KeyboardInterrupt:  # Optuna records the trial as failed; queue its point for the resumed study
            study.enqueue_trial(params, skip_if_exists=False)
            raise
        m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("test_accuracy", m["accuracy"])
        return float(m["best_valid_macro_f1"])

    def report(study, t) -> None:
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
        echo(f"resuming: {finished} of {n_trials} trials already finished in {out / 'study.db'}")
    if n_trials > finished:
        study.optimize(objective, n_trials=n_trials - finished, callbacks=[report], catch=(FinpeftError,))
    write_summary(study, out, recipe_path, overrides, command)
    return out


def write_summary(study, out: Path, recipe_path: str | None, overrides: list[str], command: str | None) -> None:
    from optuna.trial import TrialState
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rows = [{"trial": t.number, "state": t.state.name, "valid_macro_f1": t.value,
             "test_accuracy": t.user_attrs.get("test_accuracy"), **t.params} for t in study.trials]
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
