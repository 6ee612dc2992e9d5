"""Shared machinery of the methods that freeze the encoder and train a head on its states
(mamba-adapter and its variants, gamba, bilstm, cnn-lstm).

Training reads the encoder's states from the feature cache (finpeft.models.features) so an epoch costs only the
head; `train.feature_cache=false` (`--no-cache`) runs the frozen encoder inside every step instead. Either
way the saved artifact is the head alone (model/head.safetensors + head.json); the encoder is re-loaded from
the backbone at predict time, as a peft adapter is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from finpeft.models.features import Features, cached_encode, default_cache_dir

ARTIFACT = "frozen"
# Random-init heads on fixed features want a larger LR and more (cheap, cached) epochs than fine-tuning.
TRAIN_DEFAULTS = {"lr": 1e-3, "epochs": 10, "batch_size": 32, "early_stopping_patience": 3}


class FrozenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The [CLS] state or the mean of the token states; auto: mean for sentence-transformers encoders (their
    # [CLS] is not trained as a sentence vector: MiniLM 0.695 vs 0.752 FPB accuracy), else [CLS].
    sentence_vector: Literal["auto", "cls", "mean"] = "auto"
    dropout: float = Field(0.1, ge=0, lt=1)


def sentence_vector(tokens: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    from finpeft.models.adapters.blocks import masked_mean
    return tokens[:, 0] if kind == "cls" else masked_mean(tokens, mask)


def _output(head_out: dict, labels):
    from transformers.modeling_outputs import SequenceClassifierOutput
    logits = head_out["logits"]
    if labels is None:
        loss = None
    elif logits.shape[-1] == 1:  # regression: one output, a standardised score
        loss = nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
    else:
        loss = nn.functional.cross_entropy(logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)


class _Config:
    """What predict/Trainer read off a model's config."""

    def __init__(self, num_labels: int):
        self.num_labels = num_labels
        self.use_cache = False

    def to_dict(self) -> dict:
        return {"num_labels": self.num_labels}

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict())


class FrozenEncoderClassifier(nn.Module):
    """Frozen encoder + trainable head over tokenized text (the --no-cache training path and predict)."""

    def __init__(self, encoder, head: nn.Module, n_labels: int, sentence: str):
        super().__init__()
        self.encoder, self.head, self.sentence = encoder, head, sentence
        self.config = _Config(n_labels)
        self.encoder.requires_grad_(False)

    @property
    def device(self):
        return next(self.head.parameters()).device

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # no dropout in the frozen encoder: the same states the cache stores
        return self

    def head_inputs(self, input_ids, attention_mask, token_type_ids=None):
        kw = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        with torch.no_grad():
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state
        vec = sentence_vector(states, attention_mask, self.sentence)
        return (vec, states, attention_mask) if self.head.inputs == "tokens" else (vec, None, None)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        return _output(self.head(*self.head_inputs(input_ids, attention_mask, token_type_ids)), labels)


class CachedClassifier(nn.Module):
    """The head alone, fed cached states by FeatureCollator."""

    def __init__(self, head: nn.Module, n_labels: int):
        super().__init__()
        self.head = head
        self.config = _Config(n_labels)

    def forward(self, vec, tokens=None, mask=None, labels=None):
        return _output(self.head(vec, tokens, mask), labels)


class FeatureCollator:
    """Rows {"index", "labels"} -> a padded batch of cached states. store: train and valid features, concatenated."""

    def __init__(self, store: Features, sentence: str):
        self.store, self.sentence = store, sentence

    def __call__(self, rows: list[dict]) -> dict:
        idx = [int(r["index"]) for r in rows]
        labels = torch.tensor([r["labels"] for r in rows])  # class ids, or float scores (regression)
        if self.store.cls is not None:
            return {"vec": self.store.cls[idx].float(), "labels": labels}
        seqs = [self.store.row(i) for i in idx]
        tokens = nn.utils.rnn.pad_sequence(seqs, batch_first=True).float()  # (B, L, H)
        mask = (torch.arange(tokens.shape[1])[None] < torch.tensor([len(s) for s in seqs])[:, None]).long()
        return {"vec": sentence_vector(tokens, mask, self.sentence), "tokens": tokens, "mask": mask, "labels": labels}


def pooling_of(head, opts) -> str:
    """What the cache stores for this head: token states, or one sentence vector per row."""
    return "tokens" if head.inputs == "tokens" else opts.sentence_vector


def concat(a: Features, b: Features) -> Features:
    if a.cls is not None:
        return Features(cls=torch.cat([a.cls, b.cls]))
    return Features(tokens=torch.cat([a.tokens, b.tokens]), offsets=torch.cat([a.offsets, b.offsets[1:] + a.offsets[-1]]))


def load_encoder(model_path: str, trust_remote_code: bool):
    from transformers import AutoModel
    return AutoModel.from_pretrained(model_path, dtype=torch.float32, trust_remote_code=trust_remote_code)


def resolve_sentence_vector(opts, model_path: str):
    if opts.sentence_vector != "auto":
        return opts
    pooling = Path(model_path) / "1_Pooling" / "config.json"
    mean = pooling.is_file() and json.loads(pooling.read_text()).get("pooling_mode_mean_tokens", False)
    return opts.model_copy(update={"sentence_vector": "mean" if mean else "cls"})


def build(method, model_path: str, labels: list[str], opts, model_cfg):
    """(frozen encoder, head, resolved opts) for a frozen method module (it provides build_head(hidden, n_labels, opts))."""
    opts = resolve_sentence_vector(opts, model_path)
    encoder = load_encoder(model_path, model_cfg.trust_remote_code)
    head = method.build_head(encoder.config.hidden_size, len(labels), opts)
    return encoder, head, opts


def save_head(head: nn.Module, method_name: str, opts, hidden: int, labels: list[str], model_dir: Path) -> None:
    from safetensors.torch import save_file
    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(model_dir / "head.safetensors"))
    (model_dir / "head.json").write_text(json.dumps({"method": method_name, "options": opts.model_dump(),
                                                     "hidden_size": hidden, "labels": labels}, indent=2))


def load_frozen_classifier(model_dir: Path, backbone_path: str, trust_remote_code: bool) -> FrozenEncoderClassifier:
    from safetensors.torch import load_file
    from finpeft.methods import get_method
    spec = json.loads((model_dir / "head.json").read_text())
    method = get_method(spec["method"])
    opts = method.Options.model_validate(spec["options"])
    encoder = load_encoder(backbone_path, trust_remote_code)
    if encoder.config.hidden_size != spec["hidden_size"]:
        raise ValueError(f"backbone hidden size {encoder.config.hidden_size} != the head's {spec['hidden_size']}")
    head = method.build_head(spec["hidden_size"], len(spec["labels"]), opts)
    head.load_state_dict(load_file(str(model_dir / "head.safetensors")))
    return FrozenEncoderClassifier(encoder, head, len(spec["labels"]), opts.sentence_vector)


def setup(method, opts, encoder, head, tokenizer, data, label_ids: dict, recipe, model_path: str, say):
    """(model to train, {"train", "valid"} datasets, collator) for a frozen method: from the feature cache, or
    (train.feature_cache=false) the frozen encoder run inside every step."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding
    from finpeft.data.batching import tokenize_frame
    t, n_labels = recipe.train, len(label_ids)
    if not t.feature_cache:
        ds = {s: tokenize_frame(getattr(data, s), tokenizer, label_ids, recipe.model.max_length) for s in ("train", "valid")}
        return FrozenEncoderClassifier(encoder, head, n_labels, opts.sentence_vector), ds, DataCollatorWithPadding(tokenizer)
    cache_dir = Path(t.cache_dir).expanduser() if t.cache_dir else default_cache_dir()
    pooling = pooling_of(head, opts)
    feats = {}
    for split in ("train", "valid"):
        texts = getattr(data, split)["text"].tolist()
        feats[split], hit = cached_encode(encoder, tokenizer, model_path, texts, recipe.model.max_length, pooling,
                                             cache_dir, t.eval_batch_size)
        say(f"feature cache {'hit' if hit else 'miss (encoded and stored)'}: {split} {len(texts)} rows, {pooling} "
            f"states, {cache_dir}")
    n_train = len(feats["train"])
    store = concat(feats["train"], feats["valid"])
    lengths = store.lengths()
    ds = {}
    for split, start in (("train", 0), ("valid", n_train)):
        frame = getattr(data, split)
        index = list(range(start, start + len(frame)))
        ds[split] = Dataset.from_dict({"index": index, "labels": [label_ids[l] for l in frame["label"]],
                                       "length": [lengths[i] for i in index]})
    return CachedClassifier(head, n_labels), ds, FeatureCollator(store, opts.sentence_vector)
