"""Pretraining from scratch (issue 8): corpus tokenizer, span corruption, packing, T5 / Mamba2 steps, resume."""
import json
import unicodedata

import numpy as np
import pytest

from finpeft.training.span_corruption import (CausalCollator, SpanCorruptionCollator, corrupt, expanded_length, pack,
                                             random_spans_noise_mask)


@pytest.fixture(scope="module")
def corpus(data_dir):
    from finpeft.training.mlm import corpus_texts
    texts, _ = corpus_texts("fin-news", [])
    return texts[::20][:2000]  # news headlines from all three sources


@pytest.fixture(scope="module")
def tok(corpus):
    from finpeft.training.tokenizer import train_tokenizer
    return train_tokenizer(corpus, vocab_size=2000)


def test_tokenizer_specials_and_round_trip(tok, corpus):
    from finpeft.training.tokenizer import sentinel_ids
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    sent = sentinel_ids(tok)
    assert len(sent) == 100 and sent[0] == tok.convert_tokens_to_ids("<extra_id_0>") and len(set(sent)) == 100
    for text in corpus[:300]:
        ids = tok(text)["input_ids"]
        assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
        assert tok.decode(ids, skip_special_tokens=True) == unicodedata.normalize("NFKC", text)


def test_span_corruption_format_and_noise_density(tok, corpus):
    from finpeft.training.tokenizer import sentinel_ids
    sent = sentinel_ids(tok)
    raw, target_len = expanded_length(128)
    chunks = pack(tok(corpus[:400])["input_ids"], raw, tok.eos_token_id)
    rng = np.random.default_rng(0)
    noise = []
    for c in chunks[:-1]:
        inputs, targets = corrupt(np.asarray(c), sent, tok.eos_token_id, 0.15, 3.0, rng)
        assert len(inputs) == 128 and len(targets) == target_len  # packed chunks fill the encoder exactly
        used = [t for t in inputs if t in sent]
        assert used == sent[:len(used)] and [t for t in targets if t in sent] == used  # sentinels 0, 1, 2, ... in order
        # put each span back after its sentinel: the original chunk
        spans, k = {}, None
        for t in targets[:-1]:
            if t in sent:
                k = t
                spans[k] = []
            else:
                spans[k].append(t)
        restored = [x for t in inputs[:-1] for x in (spans[t] if t in sent else [t])]
        assert restored == c
        noise.append(sum(len(v) for v in spans.values()) / len(c))
    assert abs(np.mean(noise) - 0.15) < 0.01
    mask = random_spans_noise_mask(1000, 0.15, 3.0, np.random.default_rng(1))
    n_spans = int((mask & ~np.r_[False, mask[:-1]]).sum())
    assert mask.sum() == 150 and n_spans == 50 and not mask[0]  # mean span length 3


def test_denoise_targets_are_the_whole_text_behind_the_same_corrupted_input(tok, corpus):
    """objective=denoise (BART text infilling): the encoder input is T5's corrupted text, the target the original."""
    from finpeft.training.span_corruption import one_per_example
    from finpeft.training.tokenizer import sentinel_ids
    sent, eos = sentinel_ids(tok), tok.eos_token_id
    chunks = one_per_example(tok(corpus[:200])["input_ids"], 128, eos)
    for c in chunks:
        span_in, span_out = corrupt(np.asarray(c), sent, eos, 0.3, 3.0, np.random.default_rng(7))
        full_in, full_out = corrupt(np.asarray(c), sent, eos, 0.3, 3.0, np.random.default_rng(7), full_targets=True)
        assert full_in == span_in and any(t in sent for t in full_in)  # same mask, same encoder input
        assert full_out == c and full_out.count(eos) == 1  # the original headline, one </s>
        assert len(full_out) > len(span_out) or len(c) < 4
    batch = SpanCorruptionCollator(sent, eos, tok.pad_token_id, 0.3, seed=0, full_targets=True)([{"ids": chunks[0]}])
    assert batch["labels"][0].tolist() == chunks[0]


def test_packing_pads_only_the_last_sequence(tok, corpus):
    ids = tok(corpus[:200])["input_ids"]
    chunks = pack(ids, 64, tok.eos_token_id)
    assert all(len(c) == 64 for c in chunks[:-1]) and 0 < len(chunks[-1]) <= 64
    assert sum(chunks, []) == sum(ids, [])  # nothing lost, nothing added (texts already end with </s>)
    batch = CausalCollator(tok.pad_token_id)([{"ids": c} for c in chunks[-3:]])
    pads = (batch["labels"] == -100).sum(1).tolist()
    assert pads[:2] == [0, 0] and pads[2] == 64 - len(chunks[-1])
    from finpeft.training.tokenizer import sentinel_ids
    col = SpanCorruptionCollator(sentinel_ids(tok), tok.eos_token_id, tok.pad_token_id, seed=0)
    feats = [{"ids": c} for c in chunks[:4]]
    first, second = col(feats), col(feats)  # drawn again (next epoch): new spans
    assert not np.array_equal(first["input_ids"].numpy(), second["input_ids"].numpy())
    assert (first["attention_mask"] == 1).all()  # full chunks: no padding


@pytest.mark.parametrize("objective", ["span", "denoise", "clm"])
def test_a_few_pretraining_steps_reduce_held_out_loss(objective, data_dir, tmp_path):
    from finpeft.training.scratch import load_scratch_recipe, pretrain_scratch
    recipe = load_scratch_recipe(None, [f"objective={objective}", "max_texts=800", "vocab_size=1000", "max_length=48",
                                        "train.max_steps=40", "train.batch_size=8", "train.eval_steps=20",
                                        "train.save_steps=20", "train.logging_steps=10",
                                        *(["train.lr=3e-3"] if objective == "clm" else [])])
    out = pretrain_scratch(recipe, tmp_path / objective)
    info = json.loads((out / "pretrain.json").read_text())
    assert info["valid_loss_after"] < info["valid_loss_before"] - 0.5
    assert info["arch"] == ("mamba2" if objective == "clm" else "t5") and info["tokens_per_second_median"] > 0
    assert (out / "loss_curve.png").is_file() and not (out / "checkpoints").exists()
    assert info["excluded"]["tfns"] > 0  # corpus texts shared with a labelled dataset were removed
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM
    loader = AutoModelForCausalLM if objective == "clm" else AutoModelForSeq2SeqLM
    assert loader.from_pretrained(out).config.vocab_size == info["vocab_size"]


def test_interrupted_pretraining_resumes_from_its_checkpoint(data_dir, tmp_path, monkeypatch):
    from transformers import TrainerCallback
    import finpeft.training.scratch as sp
    from finpeft.errors import FinpeftError
    recipe = sp.load_scratch_recipe(None, ["max_texts=400", "vocab_size=800", "max_length=32", "train.max_steps=24",
                                           "train.batch_size=4", "train.save_steps=10", "train.eval_steps=100"])
    real = sp._throughput_callback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 15:
                raise KeyboardInterrupt

    monkeypatch.setattr(sp, "_throughput_callback", lambda n: Crash())
    with pytest.raises(KeyboardInterrupt):
        sp.pretrain_scratch(recipe, tmp_path / "run")
    monkeypatch.setattr(sp, "_throughput_callback", real)
    with pytest.raises(FinpeftError, match="nothing to resume"):
        sp.pretrain_scratch(recipe, tmp_path / "other", resume=True)
    out = sp.pretrain_scratch(recipe, tmp_path / "run", resume=True)
    info = json.loads((out / "pretrain.json").read_text())
    assert info["resumed_from"] == "checkpoint-10" and info["steps"] == 24
    history = json.loads((out / "log_history.json").read_text())
    assert history[-1]["step"] == 24



def test_zero_steps_is_the_random_init_baseline_with_a_given_tokenizer(data_dir, tmp_path):
    """train.max_steps=0 + tokenizer=DIR: the same tokenizer, the model left at its (seeded) initial weights."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    import finpeft.training.scratch as sp
    common = ["max_texts=300", "vocab_size=800", "max_length=32", "train.batch_size=4", "train.eval_steps=100"]
    trained = sp.pretrain_scratch(sp.load_scratch_recipe(None, [*common, "train.max_steps=6"]), tmp_path / "a")
    rand = sp.pretrain_scratch(sp.load_scratch_recipe(None, [*common, "train.max_steps=0", f"tokenizer={trained}"]),
                               tmp_path / "b")
    info = json.loads((rand / "pretrain.json").read_text())
    assert info["steps"] == 0 and info["valid_loss_before"] == info["valid_loss_after"]
    assert AutoTokenizer.from_pretrained(rand).get_vocab() == AutoTokenizer.from_pretrained(trained).get_vocab()
    a, b = AutoModelForSeq2SeqLM.from_pretrained(trained), AutoModelForSeq2SeqLM.from_pretrained(rand)
    assert a.shared.weight.shape == b.shared.weight.shape and not torch.equal(a.shared.weight, b.shared.weight)


@pytest.fixture(scope="module")
def scratch_models(data_dir, tmp_path_factory):
    """A tiny T5 and a tiny Mamba2 pretrained for a few steps on the corpus."""
    from finpeft.training.scratch import load_scratch_recipe, pretrain_scratch
    root = tmp_path_factory.mktemp("scratch")
    common = ["max_texts=600", "vocab_size=1000", "max_length=48", "train.max_steps=10", "train.batch_size=8",
              "train.eval_steps=100", "train.save_steps=100"]
    return {"t5": pretrain_scratch(load_scratch_recipe(None, ["objective=span", *common]), root / "t5"),
            "mamba2": pretrain_scratch(load_scratch_recipe(None, ["objective=clm", *common]), root / "mamba")}


@pytest.mark.parametrize("method,arch,extra", [("t5-head", "t5", []), ("t5-text", "t5", []),
                                               ("t5-head", "t5", ["method.decoder_input=start"]),
                                               ("t5-head", "t5", ["method.decoder_input=text"]),
                                               ("mamba-lm", "mamba2", []), ("mamba-bilstm", "mamba2", []),
                                               ("lora", "mamba2", []), ("t5-text", "t5", ["method.lora_r=4"]),
                                               ("mamba-bilstm", "mamba2", ["method.lora_r=4"])])
def test_scratch_backbones_fine_tune_and_predict(method, arch, extra, scratch_models, tmp_path):
    """finpeft train on FPB rows with a from-scratch backbone; the saved run reloads through finpeft.load.
    With method.lora_r only the adapters (and the BiLSTM head) train, and the run keeps the merged model."""
    import finpeft
    from conftest import TINY
    out = finpeft.train(None, TINY + [f"method={method}", f"model.backbone={scratch_models[arch]}",
                                      "model.max_length=48", *extra], output=tmp_path / "run")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 48 and 0 <= metrics["accuracy"] <= 1
    if "method.lora_r=4" in extra:
        assert metrics["trainable_params"] < 0.35 * metrics["total_params"], metrics
        assert not (out / "model" / "adapter_config.json").exists()  # merged: a plain transformers model dir
    if method == "t5-head":  # the saved run reloads as the class of its decoder_input (default mean)
        kind = next((e.split("=")[1] for e in extra if e.startswith("method.decoder_input=")), "mean")
        expected = {"text": "t5", "start": "t5-start", "mean": "t5-mean"}[kind]
        assert json.loads((out / "model" / "config.json").read_text())["model_type"] == expected
    texts = ["Operating profit rose to EUR 13.1 mn .", "The company's sales fell sharply ."]
    model = finpeft.load(out)
    pred = model.predict(texts)
    assert len(pred) == 2 and {p["label"] for p in pred} <= {"negative", "neutral", "positive"}
    np.testing.assert_allclose(model.predict_proba(texts), finpeft.load(out).predict_proba(texts), atol=1e-6)


def test_t5_head_start_loads_the_pretrained_weights_and_reads_only_the_encoder(scratch_models, fpb_rows):
    """decoder_input=start: every pretrained weight arrives (not left at init), the decoder takes exactly one
    step, and the prediction depends on the text only through the encoder."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration
    from finpeft.core.recipe import ModelConfig
    from finpeft.methods import t5_head
    labels = ["negative", "neutral", "positive"]
    path = str(scratch_models["t5"])
    model = t5_head.build(path, labels, t5_head.Options(decoder_input="start"), ModelConfig()).eval()
    for lin in (model.classification_head.dense, model.classification_head.out_proj):  # T5's init, not std 1
        assert 0.5 < lin.weight.std().item() * model.config.d_model ** 0.5 < 1.5
    pre = T5ForConditionalGeneration.from_pretrained(path)
    for name, w in pre.state_dict().items():
        if name != "lm_head.weight":  # tied to shared.weight
            torch.testing.assert_close(model.transformer.state_dict()[name], w, msg=name)
    tok = AutoTokenizer.from_pretrained(path)
    enc = tok(fpb_rows["text"].iloc[:4].tolist(), padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
        encoded = model.transformer.encoder(**enc).last_hidden_state
        dec = model.transformer.decoder(input_ids=torch.zeros(4, 1, dtype=torch.long), encoder_hidden_states=encoded,
                                        encoder_attention_mask=enc["attention_mask"]).last_hidden_state
        torch.testing.assert_close(logits, model.classification_head(dec[:, 0]))
        assert not torch.allclose(logits[0], logits[1])  # different texts, different scores


def test_t5_head_mean_pools_the_decoder_over_the_text_only(scratch_models, fpb_rows):
    """decoder_input=mean: the pretrained weights arrive, the head reads the mean decoder state - padding a row
    (batching it with a longer text) leaves its logits unchanged, and they differ from the last-state readout."""
    import torch
    from transformers import AutoTokenizer, T5ForConditionalGeneration
    from finpeft.core.recipe import ModelConfig
    from finpeft.methods import t5_head
    labels = ["negative", "neutral", "positive"]
    path = str(scratch_models["t5"])
    model = t5_head.build(path, labels, t5_head.Options(decoder_input="mean"), ModelConfig()).eval()
    assert model.config.model_type == "t5-mean"
    pre = T5ForConditionalGeneration.from_pretrained(path)
    for name, w in pre.state_dict().items():
        if name != "lm_head.weight":
            torch.testing.assert_close(model.transformer.state_dict()[name], w, msg=name)
    tok = AutoTokenizer.from_pretrained(path)
    short = "Sales fell ."
    long = max(fpb_rows["text"].head(50), key=len)  # a real FPB sentence, longer than `short`
    with torch.no_grad():
        alone = model(**tok([short], return_tensors="pt")).logits
        both = model(**tok([short, long], padding=True, return_tensors="pt")).logits
        torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-4)
        enc = tok([short], return_tensors="pt")
        out = model.transformer(**enc, decoder_input_ids=model._shift_right(enc["input_ids"]))
        last = model.classification_head(out.last_hidden_state[:, -1])
    assert not torch.allclose(last, alone, atol=1e-4)


def test_t5_text_decoding_only_emits_label_words(scratch_models, fpb_rows):
    from transformers import AutoTokenizer
    from finpeft.methods import t5_text
    from finpeft.core.recipe import ModelConfig
    labels = ["negative", "neutral", "positive"]
    model = t5_text.build(str(scratch_models["t5"]), labels, t5_text.Options(), ModelConfig())
    tok = AutoTokenizer.from_pretrained(scratch_models["t5"])
    words = model.generate_labels(tok, fpb_rows["text"].iloc[:24].tolist())
    assert len(words) == 24 and set(words) <= set(labels)  # an untrained decoder, yet only label words
    enc = tok(fpb_rows["text"].iloc[:4].tolist(), padding=True, return_tensors="pt")
    import torch
    with torch.no_grad():
        scores = model(**enc).logits  # (B, K) log p(label word | text)
    assert scores.shape == (4, 3) and (scores < 0).all()
    free = model.generate(input_ids=model.with_prefix(enc["input_ids"], enc["attention_mask"])[0], max_new_tokens=3)
    assert free.shape[0] == 4  # the same model also decodes freely (generate passes through)


def test_scratch_method_on_a_wrong_backbone_is_a_one_line_error(data_dir, tmp_path):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "finpeft.cli", "train", "method=t5-text", "-o", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=600)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert last.startswith("finpeft: error: method t5-text needs a t5 backbone (finpeft pretrain objective=span)")


def _tiny_t5():
    import torch
    from transformers import T5ForConditionalGeneration
    from finpeft.models.scratch_sizes import t5_config
    torch.manual_seed(0)
    return T5ForConditionalGeneration(t5_config("tiny", 500, 0, 1)).eval()


def test_slim_attention_equals_standard_attention_and_halves_the_self_attention_cache():
    """Token-by-token cached decoding with slim attention (K cached, V recomputed) gives the logits of one
    uncached standard forward; the self-attention cache holds half the bytes."""
    import torch
    from transformers import DynamicCache, EncoderDecoderCache
    from finpeft.models import slim_attention
    model = _tiny_t5()
    x = torch.randint(3, 500, (3, 20))
    mask = torch.ones_like(x)
    mask[1, 15:] = 0
    y = torch.randint(3, 500, (3, 25))

    def cached(model):
        enc = model.encoder(input_ids=x, attention_mask=mask)
        cache, steps = EncoderDecoderCache(DynamicCache(), DynamicCache()), []
        for i in range(y.shape[1]):
            out = model(encoder_outputs=enc, attention_mask=mask, decoder_input_ids=y[:, i:i + 1],
                        past_key_values=cache, use_cache=True)
            steps.append(out.logits)
            cache = out.past_key_values
        return torch.cat(steps, 1), slim_attention.cache_bytes(cache)

    with torch.no_grad():
        full = model(input_ids=x, attention_mask=mask, decoder_input_ids=y).logits  # (3, 25, 500)
        _, standard_bytes = cached(model)
        slim_attention.enable(model)
        slim, slim_bytes = cached(model)
    assert type(model.decoder.block[0].layer[0].SelfAttention).__name__ == "SlimT5Attention"
    torch.testing.assert_close(slim, full, rtol=1e-4, atol=1e-5 * full.abs().max().item())
    assert slim_bytes["self"] * 2 == standard_bytes["self"] and slim_bytes["cross"] == standard_bytes["cross"]
    slim_attention.enable(model, False)  # and back: the standard class, the same weights
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=x, attention_mask=mask, decoder_input_ids=y).logits, full)


def test_slim_attention_generate_matches_and_t5_text_option(scratch_models, fpb_rows):
    import torch
    from transformers import AutoTokenizer
    from finpeft.methods import t5_text
    from finpeft.core.recipe import ModelConfig
    from finpeft.models import slim_attention
    model = _tiny_t5()
    x = torch.randint(3, 500, (2, 16))
    kw = dict(max_new_tokens=12, do_sample=False, return_dict_in_generate=True, output_scores=True)
    standard = model.generate(input_ids=x, **kw)
    slim_attention.enable(model)
    slim = model.generate(input_ids=x, **kw)
    assert torch.equal(standard.sequences, slim.sequences)
    torch.testing.assert_close(torch.stack(slim.scores), torch.stack(standard.scores), rtol=1e-4, atol=1e-3)

    labels = ["negative", "neutral", "positive"]
    tok = AutoTokenizer.from_pretrained(scratch_models["t5"])
    texts = fpb_rows["text"].iloc[:16].tolist()
    plain = t5_text.build(str(scratch_models["t5"]), labels, t5_text.Options(), ModelConfig())
    slim_model = t5_text.build(str(scratch_models["t5"]), labels, t5_text.Options(slim_attention=True), ModelConfig())
    assert slim_model.config.finpeft_slim_attention
    assert slim_model.generate_labels(tok, texts) == plain.generate_labels(tok, texts)


def test_t5_from_scratch_is_tied_as_documented():
    """scratch/models.py says the T5 is tied (today's transformers ties T5 always), scales the decoder output by
    d_model^-0.5 (as the original, tied T5) and keeps T5's std-1 embeddings; a transformers that changes any of
    these must fail here, not silently change the model."""
    from transformers import T5ForConditionalGeneration
    from finpeft.models.scratch_sizes import t5_config
    model = T5ForConditionalGeneration(t5_config("tiny", 500, 0, 1))
    assert model.lm_head.weight.data_ptr() == model.shared.weight.data_ptr()
    assert model.config.tie_word_embeddings is True and model.config.scale_decoder_outputs is True
    assert 0.9 < float(model.shared.weight.std()) < 1.1


def test_encoder_usage_gap_is_recorded_and_flags_a_decoder_that_ignores_its_encoder(data_dir, tmp_path):
    """pretrain.json records the encoder-usage gap; the gap is large for a T5 that must read its encoder (trained
    to copy real headlines) and near zero - flagged - for the same T5 whose decoder was trained on the span
    targets with the encoder input blanked (it learns target statistics only)."""
    import numpy as np
    import pandas as pd
    import torch
    from transformers import T5ForConditionalGeneration
    from finpeft.training.encoder_usage import MIN_GAP, encoder_usage, usage_line
    from finpeft.training.scratch import load_scratch_recipe, pretrain_scratch
    from finpeft.training.span_corruption import corrupt
    from finpeft.training.tokenizer import load_tokenizer, sentinel_ids
    common = ["objective=span", "max_texts=600", "vocab_size=1000", "max_length=48", "train.batch_size=16",
              "train.eval_steps=1000", "train.save_steps=1000"]
    run = pretrain_scratch(load_scratch_recipe(None, [*common, "train.max_steps=8"]), tmp_path / "run")
    recorded = json.loads((run / "pretrain.json").read_text())["encoder_usage"]
    assert set(recorded) == {"real", "shuffled", "gap", "unigram", "uses_encoder"} and recorded["unigram"] > 0

    tok = load_tokenizer(run)
    texts = pd.read_csv(data_dir / "financial_news_unlabelled" / "cnbc.csv")["text"].dropna().tolist()[:700]
    ids = [x[:24] for x in tok(texts, add_special_tokens=True)["input_ids"] if len(x) > 8]
    rng = np.random.default_rng(0)
    spans = [corrupt(np.asarray(x), sentinel_ids(tok), tok.eos_token_id, 0.15, 3.0, rng) for x in ids]

    def trained(pairs, blank: bool, steps: int):
        torch.manual_seed(0)
        model = T5ForConditionalGeneration.from_pretrained(run)
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
        model.train()
        for step in range(steps):
            batch = [pairs[(step * 16 + k) % (len(pairs) - 64)] for k in range(16)]
            src = torch.full((16, max(len(b[0]) for b in batch)), tok.pad_token_id)
            labels = torch.full((16, max(len(b[1]) for b in batch)), -100)
            for r, (a, b) in enumerate(batch):
                src[r, :len(a)], labels[r, :len(b)] = torch.tensor(a), torch.tensor(b)
            if blank:
                src[:] = tok.pad_token_id
            model(input_ids=src, attention_mask=torch.ones_like(src), labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        return model, pairs[-64:], [p[1] for p in pairs[:-64]]

    copier, valid, targets = trained([(x, x) for x in ids], blank=False, steps=120)
    used = encoder_usage(copier, valid, targets, tok.pad_token_id, len(tok))
    assert used["uses_encoder"] and used["gap"] > 5 * MIN_GAP, used
    blind, valid, targets = trained(spans, blank=True, steps=120)
    c = encoder_usage(blind, valid, targets, tok.pad_token_id, len(tok))
    assert not c["uses_encoder"] and abs(c["gap"]) < MIN_GAP, c
    assert c["real"] < recorded["real"]  # it did learn: the target statistics, not the text
    assert "warning" in usage_line(c) and "warning" not in usage_line(used)


@pytest.mark.slow
def test_unpacked_span_pretraining_reads_its_encoder(data_dir, tmp_path):
    """A short REAL span-corruption run with the default recipe - one headline per example (pack=false) - learns to
    read its encoder: the held-out span loss with another headline's encoder input is clearly above the loss with its
    own (issue 21). Packed seven headlines to a chunk, the same budget leaves the gap near zero (docs/benchmarks.md)."""
    from finpeft.training.encoder_usage import MIN_GAP
    from finpeft.training.scratch import load_scratch_recipe, pretrain_scratch
    recipe = load_scratch_recipe(None, ["objective=span", "max_texts=6000", "vocab_size=2000",
                                        "train.batch_size=64", "train.max_steps=150", "train.eval_steps=1000",
                                        "train.save_steps=1000"])
    run = pretrain_scratch(recipe, tmp_path / "run")
    record = json.loads((run / "pretrain.json").read_text())
    assert record["packed"] is False and record["train_chunks"] > 5000  # one example per headline
    usage = record["encoder_usage"]
    assert usage["uses_encoder"] and usage["gap"] > MIN_GAP, usage
