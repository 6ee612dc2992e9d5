"""Shared machinery of the methods that freeze the encoder and train a head on its states
(mamba-adapter and its variants, gamba, bilstm, cnn-lstm).

Training reads the encoder's states from the feature cache (finpeft.models.features) so an epoch costs only the
head; `train.feature_cache=false` (`--no-cache`) runs the frozen encoder inside every step instead. Either
way the saved artifact is the head alone, a transformers model (FrozenHeadModel: model/config.json +
model.safetensors); the encoder is re-loaded from the backbone at predict time, as a peft adapter's base is.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

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


def _output(head_out: dict, labels, task: str):
    """The head's logits and, when training, its task's loss (cross-entropy, MSE on a standardised score, BCE)."""
    from transformers.modeling_outputs import SequenceClassifierOutput
    from finpeft.tasks import get_task
    logits = head_out["logits"]
    loss = None if labels is None else get_task(task).loss(logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)


class FrozenHeadConfig(PretrainedConfig):
    """The head's config: which method built it, its options, the encoder width it reads, the sentence vector."""
    model_type = "finpeft-frozen-head"

    def __init__(self, method: str = "head", options: dict | None = None, hidden_size: int = 384,
                 sentence_vector: str = "mean", task: str = "classification", **kwargs):
        super().__init__(**kwargs)
        self.method, self.options, self.hidden_size = method, dict(options or {}), hidden_size
        self.sentence_vector, self.task = sentence_vector, task  # task: finpeft.tasks, whose loss trains the head
        self.use_cache = False


class FrozenHeadModel(PreTrainedModel):
    """The trainable head of a frozen-encoder method as a transformers model: `save_pretrained` writes
    config.json + model.safetensors (the head alone, a few MB: the encoder is the backbone's, re-loaded at predict
    time as a PEFT adapter's base is); `from_pretrained` / `AutoModel` load it. Trained on cached states
    (forward(vec, tokens, mask)); `FrozenEncoderClassifier` puts it on the encoder for text."""
    config_class = FrozenHeadConfig
    base_model_prefix = "head"
    main_input_name = "vec"

    def __init__(self, config: FrozenHeadConfig):
        super().__init__(config)
        from finpeft.methods import get_method
        method = get_method(config.method)
        self.options = method.Options.model_validate(config.options)
        self.head = method.build_head(config.hidden_size, config.num_labels, self.options)
        self.post_init()

    def _init_weights(self, module):  # the head modules initialise themselves (Mamba2 A/dt, gates); keep that
        pass

    @property
    def inputs(self) -> str:  # "tokens" (token states) or "vector" (one sentence vector per row)
        return self.head.inputs

    def forward(self, vec, tokens=None, mask=None, labels=None):
        return _output(self.head(vec, tokens, mask), labels, self.config.task)


AutoConfig.register(FrozenHeadConfig.model_type, FrozenHeadConfig, exist_ok=True)
AutoModel.register(FrozenHeadConfig, FrozenHeadModel, exist_ok=True)


class FrozenEncoderClassifier(nn.Module):
    """Frozen encoder + a FrozenHeadModel over tokenized text (the --no-cache training path, predict, export)."""

    def __init__(self, encoder, head_model: FrozenHeadModel):
        super().__init__()
        self.encoder, self.head_model = encoder, head_model
        self.config, self.sentence = head_model.config, head_model.config.sentence_vector
        self.encoder.requires_grad_(False)

    @property
    def head(self) -> nn.Module:
        return self.head_model.head

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
        return _output(self.head(*self.head_inputs(input_ids, attention_mask, token_type_ids)), labels, self.config.task)


class FeatureCollator:
    """Rows {"index", "labels"} -> a padded batch of cached states. store: train and valid features, concatenated."""

    def __init__(self, store: Features, sentence: str):
        self.store, self.sentence = store, sentence

    def __call__(self, rows: list[dict]) -> dict:
        idx = [int(r["index"]) for r in rows]
        labels = torch.tensor([r["labels"] for r in rows])  # the task's targets: class ids, scores, 0/1 vectors
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
    """(frozen encoder, FrozenHeadModel, resolved opts) for a frozen method (its module provides
    build_head(hidden, n_labels, opts))."""
    opts = resolve_sentence_vector(opts, model_path)
    encoder = load_encoder(model_path, model_cfg.trust_remote_code)
    config = FrozenHeadConfig(method=method.name, options=opts.model_dump(), hidden_size=encoder.config.hidden_size,
                              sentence_vector=opts.sentence_vector, num_labels=len(labels),
                              id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    return encoder, FrozenHeadModel(config), opts


def load_frozen_classifier(model_dir: Path, backbone_path: str, trust_remote_code: bool) -> FrozenEncoderClassifier:
    from safetensors.torch import load_file
    if (model_dir / "head.json").is_file():  # runs saved before the head was a PreTrainedModel: head.json + weights
        spec = json.loads((model_dir / "head.json").read_text())
        head = FrozenHeadModel(FrozenHeadConfig(
            method=spec["method"], options=spec["options"], hidden_size=spec["hidden_size"],
            sentence_vector=spec["options"].get("sentence_vector", "mean"), num_labels=len(spec["labels"])))
        head.head.load_state_dict(load_file(str(model_dir / "head.safetensors")))
    else:
        head = FrozenHeadModel.from_pretrained(model_dir)
    encoder = load_encoder(backbone_path, trust_remote_code)
    if encoder.config.hidden_size != head.config.hidden_size:
        raise ValueError(f"backbone hidden size {encoder.config.hidden_size} != the head's {head.config.hidden_size}")
    return FrozenEncoderClassifier(encoder, head.eval())


def setup(method, opts, encoder, head, tokenizer, data, label_ids: dict, recipe, model_path: str, say):
    """(model to train, {"train", "valid"} datasets, collator) for a frozen method: from the feature cache, or
    (train.feature_cache=false) the frozen encoder run inside every step."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding
    from finpeft.data.batching import tokenize_frame
    t = recipe.train
    head.config.task = data.task  # the loss the head trains with (saved in its config.json)
    if not t.feature_cache:
        ds = {s: tokenize_frame(getattr(data, s), tokenizer, label_ids, recipe.model.max_length) for s in ("train", "valid")}
        return FrozenEncoderClassifier(encoder, head), ds, DataCollatorWithPadding(tokenizer)
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
    return head, ds, FeatureCollator(store, opts.sentence_vector)
