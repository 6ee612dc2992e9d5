"""train.ema_decay: the averaged weights are what is evaluated, checkpointed and kept; training goes on from the raw."""
import json

import pytest
import torch

from conftest import TINY
from finpeft.training.ema import EMACallback, warmed_decay


def _ema_oracle(trajectory: list[torch.Tensor], decay: float) -> torch.Tensor:
    """The sequential definition: the first update copies, the n-th (n >= 1) mixes in with warmed_decay(n)."""
    ema = trajectory[0].clone()
    for n, w in enumerate(trajectory[1:], start=1):
        d = warmed_decay(decay, n)
        ema = d * ema + (1 - d) * w
    return ema


def test_warmed_decay_starts_small_and_reaches_the_decay():
    assert warmed_decay(0.99, 0) == pytest.approx(0.1)
    assert warmed_decay(0.99, 1) == pytest.approx(2 / 11)
    assert warmed_decay(0.99, 5000) == 0.99


def test_ema_callback_swaps_the_average_in_for_the_epoch_end_and_the_raw_weights_back_after_the_save():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    cb = EMACallback(0.9)
    cb.on_train_begin(None, None, None, model=model)
    trajectory = []
    for _ in range(30):  # stand-in optimizer steps
        cb.on_step_begin(None, None, None, model=model)
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        trajectory.append(model.weight.detach().clone())
        cb.on_step_end(None, None, None, model=model)
    raw = model.weight.detach().clone()
    cb.on_epoch_end(None, None, None, model=model)  # the epoch's evaluation and checkpoint see the average
    assert torch.allclose(model.weight, _ema_oracle(trajectory, 0.9), atol=1e-6)
    assert not torch.allclose(model.weight, raw)
    cb.on_save(None, None, None, model=model)  # training goes on from the raw weights
    assert torch.equal(model.weight, raw)
    cb.on_step_begin(None, None, None, model=model)  # nothing left swapped: a second restore changes nothing
    assert torch.equal(model.weight, raw)


def test_ema_decay_run_keeps_the_averaged_weights(tmp_path):
    """A real run (FPB rows, packaged MiniLM): the saved model is the EMA of the weights the optimizer produced,
    not the last raw weights; it fails if the recipe key is ignored."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from finpeft.core.recipe import load_recipe
    from finpeft.training.classifier import train as run_train

    trajectory = []

    class Record(TrainerCallback):  # the classifier weight after every optimizer step
        def on_step_end(self, args, state, control, model=None, **kw):
            trajectory.append(model.classifier.weight.detach().clone())

    out = run_train(load_recipe(None, TINY + ["train.ema_decay=0.8", "train.lr=1e-3"]), output=tmp_path / "r",
                    callbacks=[Record()])
    saved = load_file(str(out / "model" / "model.safetensors"))["classifier.weight"]
    assert len(trajectory) == 6  # 96 rows, batch 16, one epoch
    assert torch.allclose(saved, _ema_oracle(trajectory, 0.8), atol=1e-5)
    assert not torch.allclose(saved, trajectory[-1], atol=1e-4)
    recipe = (out / "recipe.yaml").read_text()
    assert "ema_decay: 0.8" in recipe
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 1
