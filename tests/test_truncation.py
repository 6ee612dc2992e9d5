"""Long texts: model.truncation=head_tail keeps a text's first and last tokens (Sun et al. 2019) instead of its
start alone; the run's saved tokenizer carries the choice, so predict / serve / ONNX cut the same way."""
import json

from conftest import TINY


def _tokenizer():
    from transformers import AutoTokenizer
    from finpeft.models.backbones import resolve_backbone
    return AutoTokenizer.from_pretrained(resolve_backbone("minilm-l6"))


def test_head_tail_keeps_both_ends_and_head_keeps_the_start():
    from finpeft.data.batching import encode_texts, encoded_batches
    tok = _tokenizer()
    text = " ".join(f"w{i}" for i in range(200))  # ~400 word pieces
    short = "Operating profit rose."
    plain = tok([text, short], truncation=True, max_length=32)
    assert encode_texts(tok, [text, short], 32)["input_ids"] == plain["input_ids"]  # head: the tokenizer's own
    tok.init_kwargs["finpeft_truncation"] = "head_tail"
    enc = encode_texts(tok, [text, short], 32)
    long_ids, short_ids = enc["input_ids"]
    assert short_ids == plain["input_ids"][1] and len(long_ids) == 32
    assert long_ids[0] == tok.cls_token_id and long_ids[-1] == tok.sep_token_id  # special tokens kept
    kept = tok.decode(long_ids, skip_special_tokens=True).replace(" ", "")
    assert kept.startswith("w0w1") and kept.endswith("w198w199"), kept
    assert enc["attention_mask"][0] == [1] * 32 and len(enc["token_type_ids"][0]) == 32
    (_, batch), = list(encoded_batches(tok, [text], 32, 8))
    assert batch["input_ids"][0].tolist() == long_ids


def test_a_head_tail_run_remembers_how_it_cuts(tmp_path):
    import finpeft
    from finpeft import train
    from finpeft.data.batching import truncation_of
    run = train(None, TINY + ["model.max_length=24", "model.truncation=head_tail"], output=tmp_path / "ht")
    assert json.loads((run / "run.json").read_text())["truncation"] == "head_tail"
    m = finpeft.load(run)
    assert truncation_of(m.tokenizer) == "head_tail"
    ending = "Operating profit rose. " + "The company said. " * 20
    # the same long text with another ending scores differently only because the tail is kept
    a = m.predict_proba([ending + "Sales collapsed and losses widened sharply."])
    b = m.predict_proba([ending + "Sales soared to a record and profit doubled."])
    assert abs(a - b).max() > 1e-4
    head = train(None, TINY + ["model.max_length=24"], output=tmp_path / "h")
    h = finpeft.load(head)
    assert truncation_of(h.tokenizer) == "head"
    assert abs(h.predict_proba([ending + "Sales collapsed."]) - h.predict_proba([ending + "Sales soared."])).max() < 1e-6
