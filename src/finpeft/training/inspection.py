"""Looking inside a frozen-encoder head after training: the mean gate weight per adapter layer (or expert)
and a t-SNE map of the fused representations coloured by label. Written beside the run's report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def head_outputs(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Run encoder + head over texts; {"representation": (n, H), "gate": (n, N) if the head has one}."""
    import torch
    model.eval()
    out: dict[str, list] = {}
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(model.device)
            res = model.head(*model.head_inputs(**enc))
            for k in ("representation", "gate"):
                if k in res:
                    out.setdefault(k, []).append(res[k].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_gate(mean: np.ndarray, std: np.ndarray, path: Path, title: str, xlabel: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(mean) + 2), 3))
    ax.bar(np.arange(1, len(mean) + 1), mean, yerr=std, capsize=3, color="#4c72b0")
    ax.axhline(1 / len(mean), color="grey", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean gate weight (test rows)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_tsne(rep: np.ndarray, y: np.ndarray, labels: list[str], path: Path, title: str, seed: int,
              max_points: int = 2000) -> None:
    from sklearn.manifold import TSNE
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(rep), size=min(max_points, len(rep)), replace=False)
    xy = TSNE(n_components=2, perplexity=min(30.0, (len(idx) - 1) / 3), init="pca",
              random_state=seed).fit_transform(rep[idx])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    for k, label in enumerate(labels):
        # y: class ids (n,), or a multi-hot (n, L) label-set matrix where a point belongs to each label it has
        sel = y[idx] == k if y.ndim == 1 else y[idx, k] > 0.5
        ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.7, label=f"{label} ({sel.sum()})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, markerscale=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def inspect_frozen(model, tokenizer, texts: list[str], y: np.ndarray, labels: list[str], out: Path,
                   max_length: int, batch_size: int, seed: int, method: str = "") -> dict:
    """Write gate_weights.json/.png (heads with a gate) and tsne.png into out; note them in out/report.md."""
    res = head_outputs(model, tokenizer, texts, max_length, batch_size)
    lines = ["", "## Inside the head (test rows)", ""]
    summary: dict = {}
    if "gate" in res:
        g = res["gate"]
        what = "expert" if hasattr(model.head, "experts") else "adapter layer"
        summary = {"unit": what, "mean": [round(float(v), 6) for v in g.mean(0)],
                   "std": [round(float(v), 6) for v in g.std(0)], "n": len(g)}
        (out / "gate_weights.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        plot_gate(g.mean(0), g.std(0), out / "gate_weights.png", f"gate weight per {what} {method}".strip(), what)
        lines += [f"Mean gate weight per {what}: " + ", ".join(f"{v:.3f}" for v in summary["mean"]),
                  "", "![gate weights](gate_weights.png)", ""]
    if len(texts) >= 10:
        plot_tsne(res["representation"], y, labels, out / "tsne.png", f"t-SNE of fused representations {method}".strip(),
                  seed)
        lines += ["![t-SNE of the fused representations](tsne.png)", ""]
    with open(out / "report.md", "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return summary
