"""Sequence classifiers over the from-scratch models, loadable with AutoModelForSequenceClassification (so
`finpeft train / predict / serve` treat them like any transformers model).

Written here because transformers has no Mamba2 classification head and no text-to-text classifier:
- Mamba2ForSequenceClassification: the Mamba2 LM body, then the state of the last real token (a causal model
  has read the whole text there) or a BiLSTM over all token states (`finpeft_head: bilstm`).
- T5StartClassifier: T5 reading the text with its encoder only; the decoder takes one step (the start token),
  cross-attending to the encoder, and a classification head reads that step's state (t5-head
  `method.decoder_input=start`). transformers' T5ForSequenceClassification instead feeds the whole text to the
  decoder too and reads its last </s> state - an input a span-pretrained decoder never saw.
- T5MeanClassifier: the decoder reads the whole text as in transformers' class, but the head reads the mean of
  the decoder's states over the text instead of the last one (t5-head `method.decoder_input=mean`). The last
  state is trained in pretraining to predict </s>, the same target for every text: of the three readouts a
  linear probe tries on FPB it is the one pretraining makes worse, the mean the one it makes better.
- T5TextClassifier: T5 text-to-text. The input gets a task prefix ("sentiment: "), the target is the label
  word + </s>; the loss is the usual LM loss on the gold target, and the logits are the log-likelihoods of every
  label word, so prediction (argmax) can only ever answer with a label word. `generate_labels` decodes with
  the vocabulary constrained to the label words' token trie.
Shapes: tokens (B, L), states (B, L, H), label targets (K, T), logits (B, K).
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import (AutoConfig, AutoModelForSequenceClassification, Mamba2Config, Mamba2Model,
                          Mamba2PreTrainedModel, T5Config, T5ForConditionalGeneration, T5ForSequenceClassification)
from transformers.modeling_outputs import SequenceClassifierOutput


class Mamba2ForSequenceClassification(Mamba2PreTrainedModel):
    def __init__(self, config: Mamba2Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = Mamba2Model(config)  # same prefix as Mamba2ForCausalLM: its weights load as they are
        self.head_kind = getattr(config, "finpeft_head", "last")
        width = config.hidden_size
        if self.head_kind == "bilstm":
            hidden = getattr(config, "finpeft_lstm_hidden", 128)
            self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
            width = 2 * hidden
        self.dropout = nn.Dropout(getattr(config, "classifier_dropout", 0.1) or 0.0)
        self.score = nn.Linear(width, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        if self.head_kind == "bilstm":
            from finpeft.models.adapters.recurrent import _final_states
            rep = _final_states(self.lstm, states, attention_mask)
        else:  # right padding: the last real token of each row
            last = attention_mask.sum(1).clamp(min=1) - 1
            rep = states[torch.arange(states.shape[0], device=states.device), last]
        logits = self.score(self.dropout(rep))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class T5StartConfig(T5Config):
    model_type = "t5-start"


class T5StartClassifier(T5ForSequenceClassification):
    """Same weights and names as T5ForSequenceClassification (`transformer.*`, `classification_head.*`), so a
    span-pretrained T5 loads into it as it does into transformers' class; only the decoder's input differs."""
    config_class = T5StartConfig

    def _init_weights(self, module):
        super()._init_weights(module)
        head = getattr(self, "classification_head", None)
        if head is not None and (module is head.dense or module is head.out_proj):
            # transformers treats a class defined outside it as custom code: the head's Linears get the generic
            # init (std = initializer_factor = 1: logits ~10 at step 0, training stuck on the majority class) and
            # T5's head branch is skipped. Give them T5's std d_model^-0.5 here.
            nn.init.normal_(module.weight, std=self.config.initializer_factor * self.config.d_model ** -0.5)
            nn.init.zeros_(module.bias)

    def features(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, H): the decoder's single step from the start token."""
        start = torch.full((input_ids.shape[0], 1), self.config.decoder_start_token_id, dtype=torch.long,
                           device=input_ids.device)  # (B, 1)
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=start,
                               use_cache=False)
        return out.last_hidden_state[:, 0]

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.classification_head(self.features(input_ids, attention_mask))  # (B, H) -> (B, K)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class T5MeanConfig(T5Config):
    model_type = "t5-mean"


class T5MeanClassifier(T5StartClassifier):
    """T5StartClassifier's weights, init and forward; only `features` (what the head reads) differs."""
    config_class = T5MeanConfig

    def features(self, input_ids, attention_mask) -> torch.Tensor:
        """(B, H): the mean decoder state over the text. Decoder input: the text shifted right (start, x1 ..
        x_{n-1}); position i has read x_1 .. x_i."""
        out = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               decoder_input_ids=self._shift_right(input_ids), decoder_attention_mask=attention_mask,
                               use_cache=False)
        mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)  # (B, L, 1)
        return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1)


class T5TextConfig(T5Config):
    model_type = "t5-text"

    def __init__(self, label_token_ids: list[list[int]] | None = None, prefix_ids: list[int] | None = None, **kw):
        super().__init__(**kw)
        self.label_token_ids = label_token_ids or []  # per label: its word's tokens + </s>
        self.prefix_ids = prefix_ids or []  # the task prefix, e.g. "sentiment: ", without </s>


class T5TextClassifier(T5ForConditionalGeneration):
    config_class = T5TextConfig

    def __init__(self, config: T5TextConfig):
        super().__init__(config)
        if getattr(config, "finpeft_slim_attention", False):  # decoding caches keys only
            from finpeft.models.slim_attention import enable
            enable(self)

    def _targets(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, T) label targets padded with -100, and (K,) their token counts."""
        ids = self.config.label_token_ids
        width = max(len(t) for t in ids)
        out = torch.full((len(ids), width), -100, dtype=torch.long, device=device)
        for k, t in enumerate(ids):
            out[k, :len(t)] = torch.tensor(t, device=device)
        return out, (out != -100).sum(1)

    def with_prefix(self, input_ids, attention_mask):
        if not self.config.prefix_ids:
            return input_ids, attention_mask
        p = torch.tensor(self.config.prefix_ids, device=input_ids.device).expand(input_ids.shape[0], -1)
        return torch.cat([p, input_ids], 1), torch.cat([torch.ones_like(p), attention_mask], 1)

    def forward(self, input_ids=None, attention_mask=None, labels=None, decoder_input_ids=None, **kwargs):
        if decoder_input_ids is not None or kwargs.get("encoder_outputs") is not None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                                   decoder_input_ids=decoder_input_ids, **kwargs)  # generate() and plain LM use
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids, attention_mask = self.with_prefix(input_ids, attention_mask)
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        targets, lengths = self._targets(input_ids.device)
        loglik = []
        for k in range(targets.shape[0]):  # K short decoder passes (label words are 1-3 tokens)
            t = targets[k].expand(input_ids.shape[0], -1).contiguous()
            logits = super().forward(encoder_outputs=(encoded,), attention_mask=attention_mask,
                                     decoder_input_ids=self._shift_right(t)).logits  # (B, T, V)
            logp = torch.log_softmax(logits.float(), -1)
            picked = logp.gather(-1, t.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (t != -100)
            loglik.append(picked.sum(1))
        scores = torch.stack(loglik, 1)  # (B, K) log p(label word | text)
        loss = None
        if labels is not None:  # LM loss on the gold target (mean over its tokens), as text-to-text trains
            loss = -(scores.gather(1, labels[:, None]).squeeze(1) / lengths[labels]).mean()
        return SequenceClassifierOutput(loss=loss, logits=scores)

    @torch.no_grad()
    def generate_labels(self, tokenizer, texts: list[str], max_length: int = 128) -> list[str]:
        """Greedy decoding restricted to the label words' token trie: the answer is always a label word."""
        enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        ids, mask = self.with_prefix(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        words = self.config.label_token_ids
        start = self.config.decoder_start_token_id

        def allowed(batch_id, prefix):
            done = prefix.tolist()[1:]  # after the decoder start token
            nxt = {w[len(done)] for w in words if len(w) > len(done) and w[:len(done)] == done}
            return sorted(nxt) or [self.config.pad_token_id]  # a finished word: only padding follows

        out = self.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(len(w) for w in words),
                            prefix_allowed_tokens_fn=allowed, do_sample=False, num_beams=1,
                            decoder_start_token_id=start)
        return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in out]


def register() -> None:
    """Make the classes above loadable through the Auto API (idempotent)."""
    if getattr(register, "done", False):
        return
    AutoConfig.register("t5-text", T5TextConfig, exist_ok=True)
    AutoConfig.register("t5-start", T5StartConfig, exist_ok=True)
    AutoConfig.register("t5-mean", T5MeanConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(T5MeanConfig, T5MeanClassifier, exist_ok=True)
    AutoModelForSequenceClassification.register(T5StartConfig, T5StartClassifier, exist_ok=True)
    AutoModelForSequenceClassification.register(T5TextConfig, T5TextClassifier, exist_ok=True)
    AutoModelForSequenceClassification.register(Mamba2Config, Mamba2ForSequenceClassification, exist_ok=True)
    register.done = True
