"""Exponential moving average of the weights (Polyak averaging), evaluated and kept in place of the raw weights.

transformers' Trainer has no EMA option, and torch's `swa_utils.AveragedModel` keeps the average but does not
say when a Trainer evaluates or saves; this callback joins the two. The averaging is torch's
(`AveragedModel`, with a multi_avg_fn that warms the decay up); the callback decides when the averaged weights
stand in for the model:

  every optimizer step : ema <- decay * ema + (1 - decay) * weights         (AveragedModel.update_parameters)
  epoch end            : the model's weights are swapped for the average, so the epoch's evaluation, the
                         checkpoint and therefore `load_best_model_at_end` all see the averaged model
  after the save       : the raw weights come back and training goes on from them

Decay warm-up (`min(decay, (1 + n) / (10 + n))` after n updates, as in TensorFlow's ExponentialMovingAverage
with num_updates) keeps the random-init or first-step weights from dominating a short fine-tune.
"""
from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel
from transformers import TrainerCallback


def warmed_decay(decay: float, updates: int) -> float:
    """The decay used at the `updates`-th update (0-based): small at first, `decay` from ~10/(1-decay) steps on."""
    return min(decay, (1 + updates) / (10 + updates))


def ema_avg_fn(decay: float):
    """AveragedModel's multi_avg_fn: one lerp over all tensors, with the warmed-up decay."""
    def update(ema: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        d = warmed_decay(decay, int(num_averaged))
        torch._foreach_lerp_(ema, current, 1 - d)  # ema + (1 - d)(current - ema) = d ema + (1 - d) current
    return update


class EMACallback(TrainerCallback):
    """`train.ema_decay=D`: train as usual; evaluate, save and keep the exponential moving average of the weights."""

    def __init__(self, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged: AveragedModel | None = None
        self._raw: list[torch.Tensor] | None = None  # the raw weights while the average stands in

    def on_train_begin(self, args, state, control, model=None, **kw):
        # a copy of the model (MPNet: 440 MB); its first update copies the weights, later ones average
        self.averaged = AveragedModel(model, multi_avg_fn=ema_avg_fn(self.decay))

    def on_step_begin(self, args, state, control, model=None, **kw):
        self._restore(model)  # an evaluation without a save (not the finpeft default) leaves nothing swapped

    def on_step_end(self, args, state, control, model=None, **kw):
        self.averaged.update_parameters(model)

    def on_epoch_end(self, args, state, control, model=None, **kw):
        if self._raw is None:  # the average stands in for this epoch's evaluation and checkpoint
            params = list(model.parameters())
            self._raw = [p.detach().clone() for p in params]
            with torch.no_grad():
                torch._foreach_copy_(params, [p.detach() for p in self.averaged.module.parameters()])

    def on_save(self, args, state, control, model=None, **kw):
        self._restore(model)

    def _restore(self, model) -> None:
        if self._raw is not None:
            with torch.no_grad():
                torch._foreach_copy_(list(model.parameters()), self._raw)
            self._raw = None
