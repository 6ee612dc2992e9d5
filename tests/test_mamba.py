"""Fin-Mamba: the Mamba2 scan against the plain recurrence, frozen-encoder training, the feature cache,
every frozen-encoder variant on real FPB rows, inspection plots and the ablation sweep."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TINY

FROZEN_TINY = TINY + ["train.epochs=3", "train.logging_steps=1"]


def sequential_mixer(m, x):
    """Mamba2Mixer's maths written as the plain per-step recurrence (no chunks), n_groups = 1:
        h_t = exp(dt_t * A) h_{t-1} + dt_t * x_t B_t^T ;  y_t = h_t C_t + D x_t ;  out = W_o RMSNorm(y * silu(z))."""
    b, L, _ = x.shape
    H, P, N, I = m.num_heads, m.head_dim, m.ssm_state_size, m.intermediate_size
    z, xbc, dt = m.in_proj(x).split([I, m.conv_dim, H], -1)
    w = m.conv1d.weight.squeeze(1)  # (C, K): depthwise causal convolution, written out
    K = w.shape[1]
    padded = F.pad(xbc.transpose(1, 2), (K - 1, 0))
    xbc = F.silu(sum(padded[:, :, k:k + L] * w[:, k:k + 1] for k in range(K)) + m.conv1d.bias[:, None]).transpose(1, 2)
    xs, Bm, Cm = xbc.split([I, N, N], -1)
    xs = xs.reshape(b, L, H, P)
    dt = F.softplus(dt + m.dt_bias)  # (b, L, H)
    A = -torch.exp(m.A_log)  # (H,)
    h = torch.zeros(b, H, P, N)
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, t] * A)[:, :, None, None] * h + (dt[:, t, :, None, None] * xs[:, t, :, :, None]
                                                             * Bm[:, t, None, None, :])
        ys.append(((h * Cm[:, t, None, None, :]).sum(-1) + m.D[:, None] * xs[:, t]).reshape(b, I))
    y = torch.stack(ys, 1) * F.silu(z)
    y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + m.norm.variance_epsilon) * m.norm.weight
    return m.out_proj(y)


@pytest.mark.parametrize("L,chunk", [(11, 4), (11, 11), (1, 1), (40, 64)])
def test_mamba2_scan_equals_sequential_recurrence(L, chunk):
    from finpeft.models.adapters.blocks import MambaMixer
    torch.manual_seed(0)
    wrapper = MambaMixer(32, d_state=8, d_conv=4, expand=2, head_dim=16, eps=1e-5).double().float()
    m = wrapper.mixer
    with torch.no_grad():  # non-trivial D and A so every term of the recurrence matters
        m.D.uniform_(0.5, 1.5)
        m.A_log.uniform_(-1, 1)
    x = torch.randn(3, L, 32)
    with torch.no_grad():
        expected = sequential_mixer(m, x)
        m.chunk_size = chunk  # several chunks plus padding of the last (11 = 4 + 4 + 3)
        chunked = m(x)
        wrapped = wrapper(x, None)  # what the adapter block calls (chunk length picked from L)
    assert torch.allclose(chunked, expected, atol=1e-5, rtol=0), (chunked - expected).abs().max()
    assert torch.allclose(wrapped, expected, atol=1e-5, rtol=0), (wrapped - expected).abs().max()


@pytest.mark.parametrize("method", ["mamba-adapter-seq", "attention-adapter", "gamba", "bilstm", "cnn-lstm"])
def test_token_heads_ignore_padding(method):
    """A row scores the same alone and padded inside a batch of longer rows (causal scan, masked pooling)."""
    from finpeft.methods import get_method
    mod = get_method(method)
    opts = mod.Options(**({"inputs": "tokens"} if method == "attention-adapter" else {}))
    torch.manual_seed(0)
    head = mod.build_head(64, 3, opts.model_copy(update={"d_model": 64} if hasattr(opts, "d_model") else {})).eval()
    tokens = torch.randn(2, 9, 64)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, 5:] = 0
    with torch.no_grad():
        batched = head(tokens[:, 0], tokens, mask)["logits"][0]
        alone = head(tokens[:1, 0], tokens[:1, :5], mask[:1, :5])["logits"][0]
    assert torch.allclose(batched, alone, atol=1e-5), (batched, alone)


def _capture():
    from transformers import TrainerCallback

    class Capture(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            self.encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
            self.head_before = {k: v.clone() for k, v in model.head.state_dict().items()}

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 1:
                self.encoder_same = all(torch.equal(v, self.encoder_before[k]) for k, v in model.encoder.state_dict().items())
                self.head_changed = [k for k, v in model.head.state_dict().items() if not torch.equal(v, self.head_before[k])]
    return Capture()


def test_one_step_changes_only_the_head(tmp_path):
    """--no-cache path (the encoder runs inside the step): after one optimiser step the encoder is bit-identical
    and the adapter/head parameters moved."""
    from finpeft import train
    cap = _capture()
    train(None, TINY + ["method=mamba-adapter", "train.max_steps=1", "train.warmup_ratio=0",
                      "train.feature_cache=false"],
          output=tmp_path / "run", callbacks=[cap])
    assert cap.encoder_same
    assert any(k.startswith("trunk.blocks.0.mixer") for k in cap.head_changed), cap.head_changed
    assert "classifier.weight" in cap.head_changed and any(k.startswith("gate.") for k in cap.head_changed)


def test_feature_cache_hit_and_invalidation(tmp_path, fpb_rows):
    from transformers import AutoModel, AutoTokenizer
    from finpeft.models import features as fc
    from finpeft.models.backbones import resolve_backbone
    path = resolve_backbone("minilm-l6")
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    texts = fpb_rows["text"].head(12).tolist()
    f1, hit1 = fc.cached_encode(enc, tok, path, texts, 64, "tokens", tmp_path)
    f2, hit2 = fc.cached_encode(enc, tok, path, texts, 64, "tokens", tmp_path)
    assert (hit1, hit2) == (False, True)
    assert torch.equal(f1.tokens, f2.tokens) and torch.equal(f1.offsets, f2.offsets)
    assert f1.tokens.dtype == torch.float16 and len(f1) == 12
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    # cached states equal a fresh encoder pass (to fp16 precision), row by row, in input order
    with torch.no_grad():
        e = tok(texts[3], return_tensors="pt")
        ref = enc(**e).last_hidden_state[0]
    assert torch.allclose(f1.row(3).float(), ref, atol=1e-2)
    # every part of the key invalidates: max length, a text, pooling, the backbone's files
    for args in [(texts, 32, "tokens"), (texts[:-1] + ["changed"], 64, "tokens"), (texts, 64, "cls")]:
        assert fc.cached_encode(enc, tok, path, *args, tmp_path)[1] is False
    assert fc.cached_encode(enc, tok, path, texts, 32, "tokens", tmp_path)[1] is True
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    import shutil
    other = tmp_path / "other-backbone"
    shutil.copytree(path, other)
    (other / "config.json").write_text((other / "config.json").read_text() + "\n")  # any edit -> another key
    assert fc.cache_key(str(other), texts, 64, "tokens") != fc.cache_key(path, texts, 64, "tokens")
    # a damaged file is re-encoded, not trusted
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert fc.cached_encode(enc, tok, path, texts, 64, "tokens", tmp_path)[1] is False


def test_training_reuses_the_cache(tmp_path, capsys):
    from finpeft import train
    cfg = TINY + ["method=bilstm", f"train.cache_dir={tmp_path / 'cache'}"]
    train(None, cfg, output=tmp_path / "a")
    assert "feature cache miss" in capsys.readouterr().err
    train(None, cfg + ["seed=7"], output=tmp_path / "b")
    err = capsys.readouterr().err
    assert err.count("feature cache hit") == 2 and "miss" not in err


VARIANTS = [
    ["method=mamba-adapter"],
    ["method=mamba-adapter", "method.gate=false"],
    ["method=mamba-adapter", "method.num_adapter_layers=1"],
    ["method=mamba-adapter-seq"],
    ["method=attention-adapter"],
    ["method=gamba"],
    ["method=bilstm"],
    ["method=cnn-lstm"],
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(x.split("=")[1] for x in v))
def test_every_variant_trains_on_fpb(variant, tmp_path):
    from finpeft import load, train
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import load_recipe
    cap = _capture_losses()
    run = train(None, FROZEN_TINY + variant, output=tmp_path / "run", callbacks=[cap])
    assert np.mean(cap.losses[-3:]) < np.mean(cap.losses[:3]), cap.losses  # it learns
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "tsne.png").is_file()
    from transformers import AutoModel
    from finpeft.methods.frozen import FrozenHeadModel
    head = AutoModel.from_pretrained(run / "model")  # the head alone, a transformers model (config + safetensors)
    assert isinstance(head, FrozenHeadModel) and head.config.method == variant[0].split("=")[1]
    assert sum(p.numel() for p in head.parameters()) == metrics["trainable_params"]
    assert metrics["trainable_params"] < metrics["total_params"]
    # the saved artifact reproduces the run's own test scores through the public predict path
    test = load_dataset_splits(load_recipe(None, FROZEN_TINY + variant).data).test
    labels = json.loads((run / "run.json").read_text())["labels"]
    probs = load(run).predict_proba(test["text"].tolist())
    acc = float((probs.argmax(1) == np.array([labels.index(l) for l in test["label"]])).mean())
    assert acc == pytest.approx(metrics["accuracy"])
    if variant == VARIANTS[0]:  # a run saved before the head was a PreTrainedModel (head.json) still loads
        _as_legacy_artifact(run, head, labels)
        np.testing.assert_allclose(load(run).predict_proba(test["text"].tolist()[:32]), probs[:32], atol=1e-5)


def _as_legacy_artifact(run, head, labels):
    from safetensors.torch import save_file
    model = run / "model"
    save_file({k: v.contiguous() for k, v in head.head.state_dict().items()}, str(model / "head.safetensors"))
    (model / "head.json").write_text(json.dumps({"method": head.config.method, "options": head.config.options,
                                                 "hidden_size": head.config.hidden_size, "labels": labels}))
    (model / "model.safetensors").unlink()


def _capture_losses():
    from transformers import TrainerCallback

    class Losses(TrainerCallback):
        def __init__(self):
            self.losses = []

        def on_log(self, args, state, control, logs=None, **kw):
            if "loss" in logs:
                self.losses.append(logs["loss"])
    return Losses()


def test_gate_weights_and_method_defaults(tmp_path):
    from finpeft import train
    from finpeft.core.recipe import load_recipe
    run = train(None, TINY + ["method=mamba-adapter", "method.num_adapter_layers=3"], output=tmp_path / "run")
    gate = json.loads((run / "gate_weights.json").read_text())
    assert gate["unit"] == "adapter layer" and len(gate["mean"]) == 3
    assert sum(gate["mean"]) == pytest.approx(1.0, abs=1e-4)
    assert (run / "gate_weights.png").is_file() and "gate_weights.png" in (run / "report.md").read_text()
    saved = load_recipe(str(run / "recipe.yaml"))
    assert saved.train.lr == 1e-3  # the method's default LR, recorded in the run's recipe
    assert load_recipe(None, ["method=mamba-adapter", "lr=3e-4"]).train.lr == 3e-4


def test_ablate_cli(tmp_path, monkeypatch):
    import pandas as pd
    from typer.testing import CliRunner
    from finpeft.cli import app
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["ablate", "method=mamba-adapter", *TINY, "train.max_steps=2",
                                 "--param", "method.num_adapter_layers=1,2", "--seeds", "2", "-o", "sweep"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "sweep" / "ablation.csv")
    assert sorted(df["method.num_adapter_layers"]) == [1, 1, 2, 2] and sorted(set(df["seed"])) == [42, 43]
    assert (tmp_path / "sweep" / "ablation.png").is_file()
    assert df.loc[df["method.num_adapter_layers"] == 2, "trainable_params"].iloc[0] > \
        df.loc[df["method.num_adapter_layers"] == 1, "trainable_params"].iloc[0]
    # a re-run reuses the finished runs
    mtime = (tmp_path / "sweep" / "num_adapter_layers=1-s42" / "metrics.json").stat().st_mtime
    r = CliRunner().invoke(app, ["ablate", "method=mamba-adapter", *TINY, "train.max_steps=2",
                                 "--param", "method.num_adapter_layers=1,2", "--seeds", "2", "-o", "sweep"])
    assert r.exit_code == 0 and (tmp_path / "sweep" / "num_adapter_layers=1-s42" / "metrics.json").stat().st_mtime == mtime
    # --report-only tabulates what is finished and trains nothing (N=4 has no run yet)
    r = CliRunner().invoke(app, ["ablate", "method=mamba-adapter", *TINY, "train.max_steps=2", "--report-only",
                                 "--param", "method.num_adapter_layers=1,2,4", "--seeds", "2", "-o", "sweep"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "sweep" / "num_adapter_layers=4-s42").exists()
    assert sorted(pd.read_csv(tmp_path / "sweep" / "ablation.csv")["method.num_adapter_layers"]) == [1, 1, 2, 2]
