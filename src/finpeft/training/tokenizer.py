"""A unigram tokenizer (SentencePiece's algorithm, via HF `tokenizers`) trained on the corpus, with T5's special
tokens: <pad>=0 (also T5's decoder start), </s>=1, <unk>=2 and the sentinels <extra_id_0..N-1> that span
corruption puts in place of each dropped span."""
from __future__ import annotations

from pathlib import Path

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"


def sentinel(i: int) -> str:
    return f"<extra_id_{i}>"


def train_tokenizer(texts: list[str], vocab_size: int = 8000, n_sentinels: int = 100):
    """A transformers fast tokenizer: NFKC, metaspace pre-tokenising (spaces survive decoding), unigram pieces,
    </s> appended to every encoded text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    sentinels = [sentinel(i) for i in range(n_sentinels)]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK, *sentinels],
                                      unk_token=UNK, shrinking_factor=0.75, max_piece_length=16)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}",
                                                       special_tokens=[(EOS, tok.token_to_id(EOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   additional_special_tokens=sentinels, model_max_length=1 << 20)


def sentinel_ids(tokenizer) -> list[int]:
    ids, i = [], 0
    while (tid := tokenizer.convert_tokens_to_ids(sentinel(i))) not in (None, tokenizer.unk_token_id):
        ids.append(tid)
        i += 1
    return ids


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path))
