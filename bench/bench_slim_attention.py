"""Slim attention vs standard attention in the T5 decoder: cache memory, decoding speed, equal outputs.

    python bench/bench_slim_attention.py [--sizes tiny mini small] [--batch 8] [--source 128] [--new 256]
                                         [--model PRETRAINED_T5_DIR] [--publish docs/benchmarks.md]

For each T5 size of `finpeft pretrain` (random init unless --model gives a pretrained one: the cache size and
the speed do not depend on the weights), the same greedy generation runs twice in one process, standard then
slim (scratch/slim_attention.py). Reported: self- and cross-attention cache bytes after generation (exact, from
the cache tensors), tokens/s, whether the generated ids are identical and the largest logit difference.
"""
from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def measure(model, ids, new_tokens: int) -> dict:
    from finpeft.models.slim_attention import cache_bytes
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1,
              return_dict_in_generate=True, output_scores=True)
    model.generate(input_ids=ids[:, :8], max_new_tokens=4)  # warm-up
    start = time.perf_counter()
    out = model.generate(input_ids=ids, **kw)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens_per_s": ids.shape[0] * new_tokens / seconds, "seqs": out.sequences,
            "scores": torch.stack(out.scores), **cache_bytes(out.past_key_values)}


def run(size: str, a) -> dict:
    from transformers import T5ForConditionalGeneration
    from finpeft.models import slim_attention
    from finpeft.models.scratch_sizes import t5_config
    torch.manual_seed(0)
    if a.model:
        model = T5ForConditionalGeneration.from_pretrained(a.model, dtype=torch.float32).eval()
        size = f"{size} ({a.model})"
    else:
        model = T5ForConditionalGeneration(t5_config(size, 8000, 0, 1)).eval()
    ids = torch.randint(3, model.config.vocab_size, (a.batch, a.source))
    with torch.no_grad():
        standard = measure(model, ids, a.new)
        slim_attention.enable(model)
        slim = measure(model, ids, a.new)
    finite = torch.isfinite(standard["scores"])
    diff = (standard["scores"][finite] - slim["scores"][finite]).abs().max().item()
    scale = standard["scores"][finite].abs().max().item()
    return {"size": size, "params": sum(p.numel() for p in model.parameters()), "standard": standard, "slim": slim,
            "same_ids": bool(torch.equal(standard["seqs"], slim["seqs"])), "max_diff": diff, "scale": scale}


def render(rows: list[dict], a) -> str:
    mib = 2 ** 20
    lines = [f"Command: `python bench/bench_slim_attention.py --batch {a.batch} --source {a.source} --new {a.new}"
             + (f" --model {a.model}" if a.model else "") + f" --publish docs/benchmarks.md` ({date.today()}, "
             f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}). Greedy "
             f"decoding of {a.new} tokens for {a.batch} source texts of {a.source} tokens; "
             + ("random-init weights (cache size and speed do not depend on them)." if not a.model else "pretrained weights."),
             "", "| T5 size | params | self-attn cache standard | self-attn cache slim | cross-attn cache (both) | "
             "total cache saved | tokens/s standard | tokens/s slim | same ids | max logit diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, m = r["standard"], r["slim"]
        saved = 1 - (m["self"] + m["cross"]) / (s["self"] + s["cross"])
        lines.append(f"| {r['size']} | {r['params'] / 1e6:.1f}M | {s['self'] / mib:.2f} MiB | {m['self'] / mib:.2f} MiB | "
                     f"{s['cross'] / mib:.2f} MiB | {saved:.0%} | {s['tokens_per_s']:.0f} | {m['tokens_per_s']:.0f} | "
                     f"{'yes' if r['same_ids'] else 'no'} | {r['max_diff']:.1e} (of {r['scale']:.0f}) |")
    lines += ["", "The self-attention cache halves exactly (K kept, V recomputed as K·W_k^-T·W_v^T); the "
              "cross-attention cache (encoder K/V, computed once) is unchanged. Recomputing V costs one "
              "(T, d)×(d, d) product per layer and step, which on a CPU is paid in time; the saving is memory (a "
              "longer context or a larger batch in the same RAM/GPU memory)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", default=["tiny", "mini", "small"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--source", type=int, default=128)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--model", help="a pretrained T5 dir (finpeft pretrain objective=span) instead of random init")
    ap.add_argument("--publish", type=Path, help="markdown file to write the table into (block slim_attention)")
    a = ap.parse_args()
    rows = []
    for size in ([a.sizes[0]] if a.model else a.sizes):
        rows.append(run(size, a))
        print(f"{rows[-1]['size']}: done in {rows[-1]['standard']['seconds'] + rows[-1]['slim']['seconds']:.0f} s",
              flush=True)
    text = render(rows, a)
    print(text)
    if a.publish:
        from finpeft.core.runs import publish_block
        publish_block(a.publish, "slim_attention", text)


if __name__ == "__main__":
    main()
