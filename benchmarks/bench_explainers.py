"""Time each explainer against a plain forward pass of the same model, in the same run.

    python benchmarks/bench_explainers.py [--model resnet34] [--repeats 30]

ResNet34 at 224x224, batch 1, on the CPU, random weights (timing does not depend on them). The
cases run interleaved, round after round, and each reports its median, so that load on a shared
machine weighs on all of them alike; the ratios to the forward pass are the figures to compare.
``benchmarks/bench_methods.py`` times every method of ``gc.METHODS`` the same way, each against its peers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not installed
import gradcam_core as gc  # noqa: E402


def cases(clf: gc.Classifier, x: torch.Tensor, target: int) -> dict[str, Callable[[], object]]:
    model, stages, last = clf.module, clf.stages, clf.stages[-1]

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_backward_params() -> None:
        model.zero_grad(set_to_none=True)
        model(x)[0, target].backward()
        model.zero_grad(set_to_none=True)

    def gradcam_one_layer_at_a_time() -> None:
        for stage in stages:
            gc.GradCAM(model, [stage])(x, target)

    gradient_methods = [name for name, method in gc.METHODS.items() if method.kind == "layer gradient"]

    return {
        "forward (no_grad)": forward,
        "forward + backward filling .grad": forward_backward_params,
        f"Grad-CAM {last}": lambda: gc.GradCAM(model, [last])(x, target),
        f"Grad-CAM {stages[0]}..{last} (one pass)": lambda: gc.GradCAM(model, stages)(x, target),
        f"Grad-CAM {stages[0]}..{last} (one call per layer)": gradcam_one_layer_at_a_time,
        f"CAM {clf.cam_layer}": lambda: gc.CAM(model, clf.cam_layer, clf.fc)(x, target),
        "Guided Backprop": lambda: gc.GuidedBackprop(model)(x, target),
        f"Guided Grad-CAM {stages[0]}..{last}": lambda: gc.GuidedGradCAM(model, stages)(x, target),
        f"explain: {len(gradient_methods)} layer-gradient methods + saliency, {stages[0]}..{last}":
            lambda: gc.explain(model, x, target, stages, [*gradient_methods, "saliency"]),
        "explain: the same + Eigen-CAM, guided backprop, deconvnet, Guided Grad-CAM, CAM":
            lambda: gc.explain(model, x, target, stages, [*gradient_methods, "saliency", "eigen_cam",
                                                          "guided_backprop", "deconvnet", "guided_grad_cam", "cam"]),
    }


def measure(runs: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    for run in runs.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet34", choices=("resnet34", "efficientnet_lite0"))
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs of each case first (default: 3)")
    args = parser.parse_args()

    clf = gc.load_model(args.model, pretrained=False)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    medians = measure(cases(clf, x, target=243), args.repeats, args.warmup)
    forward = medians["forward (no_grad)"]
    print(f"{args.model}, 224x224, batch 1, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved rounds, torch {torch.__version__}")
    print()
    print("| case | ms | x forward |")
    print("|---|---:|---:|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {ms / forward:.2f} |")


if __name__ == "__main__":
    main()
