"""Runs a recipe needs before it can start, named by another recipe, so `finpeft train RECIPE` is one command:

- `train.distill_from: teacher.yaml` - the teacher, trained into runs/teachers/<stem>-s<seed>;
- `model.init_from: other.yaml` (or a finished run dir) - intermediate-task transfer (Phang et al., 2018,
  "STILTs"): this run starts from that run's fine-tuned weights, classification head included, instead of the
  raw backbone. Plain transformers: the saved run's model/ dir is what `from_pretrained` loads;
- `model.backbone: dapt.yaml` - a pretraining recipe (`objective: mlm`): the domain-adapted encoder, pretrained
  into runs/pretrained/<stem>-s<seed>.

A prerequisite is trained once; a finished run of the same recipe text is reused, an edited recipe trains anew
(a stale prerequisite would be silently wrong). Its seed is the prerequisite recipe's own, not this run's.
"""
from __future__ import annotations

import json
from pathlib import Path

from finpeft.errors import FinpeftError


def run_from_recipe(path: str, train_fn, say, folder: str = "teachers",
                    role: str = "teacher") -> tuple[Path, float | None]:
    """The run `path` (a recipe) trains, in runs/<folder>/<recipe stem>-s<seed>: trained now unless a finished run
    of the same recipe is already there. Returns (run dir, its train seconds)."""
    from finpeft.core.recipe import load_recipe
    recipe = load_recipe(path)
    if recipe.train.distill_from or recipe.model.init_from:
        raise FinpeftError(f"{path}: a {role} recipe must be plain (no train.distill_from / model.init_from of its "
                           "own): one level of prerequisites")
    out = Path("runs") / folder / f"{Path(path).stem}-s{recipe.seed}"
    saved = out / "recipe.yaml"
    same = saved.is_file() and saved.read_text(encoding="utf-8") == recipe.to_yaml()
    if (out / "run.json").is_file() and same:
        say(f"{role}: reusing the finished run {out} (trained from {path})")
    else:
        say(f"{role}: {out} was trained from another version of {path}; training it again" if (out / "run.json")
            .is_file() else f"{role}: training {path} into {out} first (done once; later runs reuse it)")
        train_fn(recipe, output=out, overwrite=True, command=f"({role} of another run) finpeft train {path}")
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return out, metrics.get("train_seconds")


def backbone_from_recipe(path: str, say) -> str:
    """`model.backbone: dapt.yaml`: the dir of the encoder that pretraining recipe (`objective: mlm`, see
    finpeft.training.mlm) writes, pretrained now unless a finished one of the same recipe text is there."""
    import yaml
    from finpeft.training.mlm import load_mlm_recipe, pretrain_mlm
    try:
        recipe = load_mlm_recipe(path)
    except FinpeftError as e:
        raise FinpeftError(f"model.backbone {path}: not a pretraining recipe (objective: mlm): {e}") from None
    out = Path("runs") / "pretrained" / f"{Path(path).stem}-s{recipe.seed}"
    saved = out / "recipe.yaml"
    same = saved.is_file() and yaml.safe_load(saved.read_text(encoding="utf-8")) == recipe.model_dump(mode="json")
    if (out / "pretrain.json").is_file() and same:
        say(f"backbone: reusing {out} (pretrained from {path})")
    else:
        say(f"backbone: pretraining {path} into {out} first (done once; later runs reuse it)")
        pretrain_mlm(recipe, out, overwrite=True, command=f"(backbone of another run) finpeft pretrain {path}")
    return str(out.resolve())


def init_weights(init_from: str, backbone: str, train_fn, say) -> tuple[str, Path, list[str]]:
    """`model.init_from`: (the model dir to load instead of the backbone, the run dir, its classifier's labels).
    The run must be a full transformers model (artifact hf: full, or a merged scratch model) of a classifier on
    the same backbone; its labels are checked against the data once they are loaded (check_init_labels)."""
    if init_from.endswith((".yaml", ".yml")):
        run, _ = run_from_recipe(init_from, train_fn, say, folder="intermediate", role="intermediate model")
    else:
        run = Path(init_from)
    from finpeft.core.runinfo import read_run_info
    try:
        info = read_run_info(run)
    except FinpeftError as e:
        raise FinpeftError(f"model.init_from: {e}; give a finished run dir or a recipe .yaml") from None
    if info.get("artifact") != "hf":
        raise FinpeftError(f"model.init_from {init_from}: a {info.get('method')} run saves {info.get('artifact')} "
                           "weights, not a whole model; start from a full fine-tune")
    if info.get("task") != "classification":
        raise FinpeftError(f"model.init_from {init_from}: a {info.get('task')} run; start from a classifier")
    if info.get("backbone") != backbone:
        raise FinpeftError(f"model.init_from {init_from}: trained on backbone {info.get('backbone')}, this recipe "
                           f"says model.backbone={backbone}; make them the same")
    return str((run / "model").resolve()), run, info["labels"]


def check_init_labels(run: Path, had: list[str], labels: list[str], task: str = "classification") -> None:
    """The reused classification head maps row i to label i: the labels must be the same, in the same order."""
    if task != "classification":
        raise FinpeftError(f"model.init_from {run}: a classifier's weights; this data is a {task} task")
    if list(had) != list(labels):
        raise FinpeftError(f"model.init_from {run}: its classifier's labels {had} differ from the data's {labels} "
                           f"(names and order must match; data.labels=[{','.join(had)}] sets the order)")
