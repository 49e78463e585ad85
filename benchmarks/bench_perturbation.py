"""Time our Score-CAM and Ablation-CAM against the peer libraries' own, in the same run.

    pip install -r benchmarks/requirements.txt --no-deps   # the peers; see that file
    python benchmarks/bench_perturbation.py [--model resnet34] [--repeats 3]

Peers: pytorch-grad-cam (PyPI ``grad-cam``: ``ScoreCAM``, ``AblationCAM``) and TorchCAM (PyPI
``torchcam``: ``ScoreCAM``; it has no Ablation-CAM). A peer that does not import is skipped with
the reason printed. ResNet34 at 224x224, batch 1, on the CPU, random weights (seeded; timing does
not depend on them), class 243. Every implementation gets the same batch size for its masked or
ablated copies (``--score-batch``, ``--ablation-batch``; ours' defaults), and each is called the
way its documentation shows, progress bars off (``TQDM_DISABLE``).

Each method needs hundreds of forward passes, so there are few rounds and no untimed ones by default
(a few plain forwards warm up first); the cases run interleaved,
round after round, and each reports its median, so that load on a shared machine weighs on all of
them alike. ``x forward`` is the ratio to a plain ``torch.no_grad()`` forward of the same model in
the same run; ``ours faster`` is the peer's time over ours for the same method and layer.

``r vs ours`` checks that the comparison is of one method: Pearson's correlation between the
peer's map and ours, both brought to the input's resolution (bilinear) and min-max normalized
(pytorch-grad-cam returns its maps that way already; TorchCAM's and ours are at the layer's
resolution). The maps come from the last timed round.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the peers draw progress bars

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not installed
import gradcam_core as gc  # noqa: E402
from gradcam_core.maps import correlation, normalize, upsample  # noqa: E402

SKIPPED: dict[str, str] = {}  # peer -> why it is not in the table

try:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except Exception as error:  # noqa: BLE001 - any failure to import (cv2 without libGL, sklearn...) skips it
    pytorch_grad_cam = None
    SKIPPED["pytorch-grad-cam"] = f"import failed: {type(error).__name__}: {error}"

try:
    import torchcam
    import torchcam.methods
except Exception as error:  # noqa: BLE001
    torchcam = None
    SKIPPED["torchcam"] = f"import failed: {type(error).__name__}: {error}"


@dataclass
class Case:
    method: str  # "forward", "Score-CAM", "Ablation-CAM"
    library: str  # "torch", "ours" or the peer
    layer: str
    batch: int | None
    run: Callable[[], object]  # the timed call, as its library documents it
    to_map: Callable[[object], torch.Tensor] | None = None  # its output -> (H, W), untimed

    @property
    def name(self) -> str:
        if self.method == "forward":
            return "forward (no_grad)"
        return f"{self.method} {self.layer}, {self.library}"


def ours_map(layer: str, size: tuple[int, int]) -> Callable[[object], torch.Tensor]:
    return lambda result: normalize(upsample(result.maps[layer], size))[0]


def cases(clf: gc.Classifier, x: torch.Tensor, target: int, score_batch: int, ablation_batch: int) -> list[Case]:
    model, size = clf.module, tuple(x.shape[-2:])

    def forward() -> None:
        with torch.no_grad():
            model(x)

    found: list[Case] = [Case("forward", "torch", "", None, forward)]
    score_layers, ablation_layers = ["layer4"], ["layer4", "layer3"]

    def add_score_cams() -> None:
        for layer in score_layers:
            found.append(Case(
                "Score-CAM", "ours", layer, score_batch,
                lambda layer=layer: gc.ScoreCAM(model, [layer], batch_size=score_batch)(x, target=target),
                ours_map(layer, size),
            ))
            if pytorch_grad_cam is not None:
                found.append(Case(
                    "Score-CAM", f"pytorch-grad-cam {pytorch_grad_cam_version()}", layer, score_batch,
                    lambda layer=layer: grad_cam_run(pytorch_grad_cam.ScoreCAM, model, layer, x, target,
                                                     batch_size=score_batch),
                    grad_cam_map,
                ))
            if torchcam is not None:
                found.append(Case(
                    "Score-CAM", f"torchcam {torchcam.__version__}", layer, score_batch,
                    lambda layer=layer: torchcam_run(model, layer, x, target, score_batch),
                    lambda cams: normalize(upsample(cams[0], size))[0],
                ))

    def add_ablation_cams() -> None:
        for layer in ablation_layers:
            found.append(Case(
                "Ablation-CAM", "ours", layer, ablation_batch,
                lambda layer=layer: gc.AblationCAM(model, [layer], batch_size=ablation_batch)(x, target=target),
                ours_map(layer, size),
            ))
            if pytorch_grad_cam is not None:
                found.append(Case(
                    "Ablation-CAM", f"pytorch-grad-cam {pytorch_grad_cam_version()}", layer, ablation_batch,
                    lambda layer=layer: grad_cam_run(pytorch_grad_cam.AblationCAM, model, layer, x, target,
                                                     batch_size=ablation_batch),
                    grad_cam_map,
                ))

    add_score_cams()
    add_ablation_cams()
    return found


def pytorch_grad_cam_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("grad-cam")
    except PackageNotFoundError:
        return "?"


def grad_cam_run(method, model: torch.nn.Module, layer: str, x: torch.Tensor, target: int, batch_size: int):
    """pytorch-grad-cam's documented use: a context manager (its hooks go when it ends)."""
    with method(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        # AblationCAM takes batch_size in its constructor; ScoreCAM reads the attribute if set
        # (16 otherwise). Setting it after construction works for both.
        cam.batch_size = batch_size
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])


def grad_cam_map(maps: np.ndarray) -> torch.Tensor:
    return normalize(torch.from_numpy(maps)[0])  # (N, H, W) at the input's size, already min-max scaled


def torchcam_run(model: torch.nn.Module, layer: str, x: torch.Tensor, target: int, batch_size: int):
    """TorchCAM's documented use: hook, run the model, then ask for the class."""
    with torchcam.methods.ScoreCAM(model, layer, batch_size=batch_size, input_shape=tuple(x.shape[1:])) as cam:
        with torch.no_grad():
            model(x)
        return cam(class_idx=target)


def measure(runs: list[Case], repeats: int, warmup: int) -> tuple[dict[str, float], dict[str, object]]:
    last: dict[str, object] = {}
    for _ in range(3):  # threads and allocator; each method warms up within its own hundreds of passes
        runs[0].run()
    for case in runs:
        for _ in range(warmup):
            last[case.name] = case.run()
    samples: dict[str, list[float]] = {case.name: [] for case in runs}
    for _ in range(repeats):
        for case in runs:
            start = time.perf_counter()
            last[case.name] = case.run()
            samples[case.name].append(time.perf_counter() - start)
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet34", choices=("resnet34", "efficientnet_lite0"))
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument("--warmup", type=int, default=0,
                        help="untimed runs of each case first (default: 0; a few plain forwards always run first)")
    parser.add_argument("--score-batch", type=int, default=32,
                        help="masked inputs per forward pass, every Score-CAM (default: 32, ours' default)")
    parser.add_argument("--ablation-batch", type=int, default=64,
                        help="ablated copies per forward pass, every Ablation-CAM (default: 64, ours' default)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch.manual_seed(0)
    clf = gc.load_model(args.model, pretrained=False)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    target = 243
    runs = cases(clf, x, target, args.score_batch, args.ablation_batch)
    medians, outputs = measure(runs, args.repeats, args.warmup)

    forward = medians["forward (no_grad)"]
    with torch.no_grad():
        logit = float(clf.module(x)[0, target])
    print(f"{args.model}, 224x224, batch 1, CPU, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved rounds after {args.warmup} untimed, torch {torch.__version__}; "
          f"random weights, class {target} (its logit: {logit:.3f})")
    for peer, why in SKIPPED.items():
        print(f"skipped {peer}: {why}")
    print()
    print("| case | batch | ms | x forward | ours faster | r vs ours |")
    print("|---|---:|---:|---:|---:|---:|")
    for case in runs:
        ms = medians[case.name]
        ours = next((c for c in runs if (c.method, c.layer, c.library) == (case.method, case.layer, "ours")), None)
        faster = r = ""
        if ours is not None and case is not ours:
            faster = f"{ms / medians[ours.name]:.1f}"
            r = f"{correlation(case.to_map(outputs[case.name]), ours.to_map(outputs[ours.name])):.4f}"
        batch = "" if case.batch is None else str(case.batch)
        print(f"| {case.name} | {batch} | {ms:.1f} | {ms / forward:.1f} | {faster} | {r} |")


if __name__ == "__main__":
    main()
