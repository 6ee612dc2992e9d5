"""Mamba2 on a CUDA GPU: mamba-ssm's Triton SSD kernels against transformers' pure-PyTorch chunked scan.

finpeft's Mamba2 blocks (the mamba-adapter heads, the from-scratch Mamba2 LM) are transformers' `Mamba2Mixer`,
which takes each kernel from mamba-ssm / causal-conv1d when they import and its own PyTorch code otherwise. This
runs the same mixer, same weights and inputs, once in a process where mamba-ssm cannot be imported (the PyTorch
path) and once where it can, then compares outputs and gradients and reports tokens/s of forward and
forward+backward. The mixer runs in eval mode (no dropout inside it anyway): in training mode transformers calls
mamba-ssm's fused conv+scan, which needs causal-conv1d's CUDA extension.

    python bench/bench_mamba_kernels.py [--json out.json]

Shapes: x (batch, length, hidden); the scan's chunk is 64 (as finpeft's adapters and Mamba2 LM use).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SHAPES = {  # name: (hidden, state, head_dim, batch, length)
    "adapter-seq (d 192, FPB batch)": (192, 16, 64, 32, 64),
    "mamba-lm small (d 512)": (512, 64, 64, 32, 128),
    "130m-like (d 768), long": (768, 128, 64, 8, 2048),
}


def _worker(path: str, out: str) -> None:
    if path == "torch":
        sys.modules["mamba_ssm"] = None  # import fails -> transformers keeps its PyTorch functions
    import torch
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    if path == "kernels":
        import mamba_ssm.ops.triton.ssd_combined  # noqa: F401  (fails loudly when the kernels are missing)
    results, tensors = {}, {}
    for name, (d, n, p, b, length) in SHAPES.items():
        torch.manual_seed(0)
        cfg = Mamba2Config(hidden_size=d, num_heads=d * 2 // p, head_dim=p, expand=2, state_size=n, conv_kernel=4,
                           n_groups=1, num_hidden_layers=1, chunk_size=64)
        mixer = Mamba2Mixer(cfg, layer_idx=0).cuda().eval()
        x = torch.randn(b, length, d, device="cuda", requires_grad=True)
        y = mixer(x)
        y.square().mean().backward()
        tensors[name] = {"y": y.detach().cpu(), "dx": x.grad.cpu(), "dw": mixer.in_proj.weight.grad.cpu()}
        row = {}
        for dtype in ("fp32", "bf16"):
            ctx = (lambda: torch.autocast("cuda", torch.bfloat16)) if dtype == "bf16" else torch.enable_grad
            for mode in ("forward", "forward+backward"):
                def step():
                    with ctx():
                        if mode == "forward":
                            with torch.no_grad():
                                mixer(x)
                        else:
                            mixer(x).float().square().mean().backward()
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                times = []
                for _ in range(10):
                    t0 = time.perf_counter()
                    step()
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                times.sort()
                row[f"{dtype} {mode} tokens/s"] = round(b * length / times[len(times) // 2])
        results[name] = row
    torch.save(tensors, out + ".pt")
    with open(out + ".json", "w") as f:
        json.dump({"path": path, "torch": torch.__version__, "device": torch.cuda.get_device_name(),
                   "results": results}, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the table as JSON here")
    ap.add_argument("--worker", choices=["torch", "kernels"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.worker, a.out)
    import torch
    if not torch.cuda.is_available():
        sys.exit("bench_mamba_kernels: needs a CUDA GPU")
    tmp = tempfile.mkdtemp()
    runs = {}
    for path in ("torch", "kernels"):
        out = os.path.join(tmp, path)
        subprocess.run([sys.executable, __file__, "--worker", path, "--out", out], check=True)
        runs[path] = (json.load(open(out + ".json")), torch.load(out + ".pt"))
    (meta, ref), (_, ker) = runs["torch"], runs["kernels"]
    report = {"device": meta["device"], "torch": meta["torch"], "shapes": {}}
    print(f"# Mamba2Mixer on {meta['device']} (torch {meta['torch']}): PyTorch scan vs mamba-ssm Triton kernels")
    for name in SHAPES:
        diff = {k: float((ker[name][k] - ref[name][k]).abs().max() / ref[name][k].abs().max()) for k in ref[name]}
        rows = {path: runs[path][0]["results"][name] for path in runs}
        report["shapes"][name] = {"shape (hidden, state, head_dim, batch, length)": SHAPES[name],
                                  "max relative difference (kernels vs torch, fp32)": diff, **rows}
        print(f"\n## {name} {SHAPES[name]}: max |diff| / max |ref|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in diff.items()))
        for key in rows["torch"]:
            t, k = rows["torch"][key], rows["kernels"][key]
            print(f"{key:32s} torch {t:>12,}  kernels {k:>12,}  x{k / t:.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
