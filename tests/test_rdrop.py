"""R-Drop (`train.rdrop_alpha`): the loss against a hand-written oracle, its wiring in the Trainer, a real run."""
import json
import math

import torch

from conftest import TINY
from test_cli import assert_clean_error, finpeft

import finpeft as fp
from finpeft.training.rdrop import RDropTrainer, rdrop_loss


def test_rdrop_loss_matches_the_formula_written_out():
    torch.manual_seed(0)
    a, b, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    pa, pb = a.softmax(-1), b.softmax(-1)
    ce = sum(-math.log(pa[i, y[i]]) - math.log(pb[i, y[i]]) for i in range(5)) / 10
    kl = sum(float((pa[i] * (pa[i] / pb[i]).log()).sum() + (pb[i] * (pb[i] / pa[i]).log()).sum()) for i in range(5)) / 10
    assert math.isclose(float(rdrop_loss(a, b, y, 0.7)), ce + 0.7 * kl, rel_tol=1e-5)
    assert math.isclose(float(rdrop_loss(a, a, y, 5.0)), float(torch.nn.functional.cross_entropy(a, y)), rel_tol=1e-6)


def test_rdrop_trainer_runs_each_row_twice_and_scores_both_passes(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                                                     hidden_dropout_prob=0.3)).train()
    seen = []
    model.register_forward_hook(lambda m, i, out: seen.append(out.logits.detach()))
    trainer = RDropTrainer(model=model, args=TrainingArguments(str(tmp_path), report_to=[], use_cpu=True),
                           rdrop_alpha=2.0)
    ids = torch.randint(5, 50, (4, 7))
    loss = trainer.compute_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                                        "labels": torch.tensor([0, 1, 2, 1])})
    (logits,) = seen
    assert logits.shape == (8, 3)  # the batch of 4 stacked on itself: one pass, two dropout masks
    first, second = logits.chunk(2)
    assert not torch.allclose(first, second)  # different masks, so the consistency term is not zero
    assert torch.isclose(loss, rdrop_loss(first, second, torch.tensor([0, 1, 2, 1]), 2.0))


def test_training_with_rdrop_end_to_end_and_its_bad_combinations(tmp_path):
    run = fp.train(None, [*TINY, "train.rdrop_alpha=1.0", "train.max_steps=4"], output=tmp_path / "rdrop")
    assert "rdrop_alpha: 1.0" in (run / "recipe.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] > 0  # trained and scored through the CLI's path
    res = finpeft("train", *TINY, "data.dataset=fiqa-sa-score", "train.rdrop_alpha=1.0", "--output", str(tmp_path / "r"))
    assert_clean_error(res, "not for regression")
    assert not (tmp_path / "r").exists()
