"""Grad-CAM at every block against a plain forward pass, and the time of one activation maximization.

    python benchmarks/bench_depth.py [--repeats 20]

Grad-CAM at every block (ResNet34's 16 residual blocks, EfficientNet-Lite0's 16 MBConv blocks and
its head) from one forward and one backward pass, against a plain forward pass and against one
call per block, interleaved as in bench_explainers.py (medians; the ratios are the figures).
Then `synthesis.visualize` at 224x224 with its default steps on EfficientNet-Lite0, a few times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not installed
from bench_explainers import measure

import gradcam_core as gc
from gradcam_core import synthesis


def depth_table(name: str, repeats: int, warmup: int) -> None:
    clf = gc.load_model(name, pretrained=False)
    model, blocks = clf.module, clf.blocks
    x = torch.randn(1, 3, *clf.input_size, generator=torch.Generator().manual_seed(0))

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def one_call_per_block() -> None:
        for block in blocks:
            gc.GradCAM(model, [block])(x, 243)

    runs = {"forward (no_grad)": forward,
            f"Grad-CAM at all {len(blocks)} blocks (one pass)": lambda: gc.GradCAM(model, blocks)(x, 243),
            f"Grad-CAM at all {len(blocks)} blocks (one call per block)": one_call_per_block}
    medians = measure(runs, repeats, warmup)
    forward_ms = medians["forward (no_grad)"]
    print(f"\n{name}, {clf.input_size[0]}x{clf.input_size[1]}, batch 1, CPU, {torch.get_num_threads()} threads, "
          f"median of {repeats} interleaved rounds\n")
    print("| case | ms | x forward |")
    print("|---|---:|---:|")
    for case, ms in medians.items():
        print(f"| {case} | {ms:.1f} | {ms / forward_ms:.2f} |")


def synthesis_table(runs: int) -> None:
    clf = gc.load_model("efficientnet_lite0")
    seconds = []
    for seed in range(runs):
        start = time.perf_counter()
        synthesis.visualize(clf, target=1, seed=seed)
        seconds.append(time.perf_counter() - start)
    print(f"\nsynthesis.visualize, EfficientNet-Lite0, 224x224, {synthesis.DEFAULT_STEPS} steps, "
          f"{torch.get_num_threads()} threads: median {statistics.median(seconds):.1f} s of {runs} runs "
          f"({min(seconds):.1f} to {max(seconds):.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each case first (default: 3)")
    parser.add_argument("--synthesis-runs", type=int, default=3, help="activation maximizations timed (default: 3)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}")
    for name in ("resnet34", "efficientnet_lite0"):
        depth_table(name, args.repeats, args.warmup)
    synthesis_table(args.synthesis_runs)


if __name__ == "__main__":
    main()
