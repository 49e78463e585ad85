"""Time our Score-CAM and Ablation-CAM against the peer libraries' own, in the same run.

    python benchmarks/bench_perturbation.py [--model resnet34] [--repeats 3] [--methods score_cam ablation_cam]
        [--pretrained]

Peers: pytorch-grad-cam (PyPI ``grad-cam``: ``ScoreCAM``, ``AblationCAM``) and TorchCAM (PyPI
``torchcam``: ``ScoreCAM``; it has no Ablation-CAM). A peer that does not import is skipped with
the reason printed. ResNet34 at 224x224, batch 1, on the CPU, random weights (seeded; timing does
not depend on them), class 243; Score-CAM at ``layer4``, Ablation-CAM at ``layer4`` and ``layer3``.
Every implementation gets the same batch size for its masked or ablated copies (``--score-batch``,
``--ablation-batch``, ours' defaults; pytorch-grad-cam's own are 16 and 32, TorchCAM's 32), and
each is called the way its documentation shows, with its progress bar off (``TQDM_DISABLE``).

Each method needs hundreds of forward passes, so there are few rounds, and none untimed by default
(a few plain forwards warm up first). The cases run interleaved, round after round, and each
reports its median, so that load on a shared machine weighs on all of them alike. ``x forward`` is
the ratio to a plain ``torch.no_grad()`` forward of the same model in the same run; ``ours faster``
is the peer's time over ours for the same method and layer. With the defaults a run takes about
6 minutes on 2 cores (EfficientNet-Lite0's ``layer4`` has 1280 channels: much longer).

``r vs ours`` checks that the comparison is of one method: Pearson's correlation between the
peer's map and ours, both brought to the input's resolution (bilinear) and min-max normalized
(pytorch-grad-cam returns its maps that way already; TorchCAM's and ours are at the layer's
resolution); where two peers implement the same case, their correlation is printed below the
table. The maps come from the last timed round. With random weights the layer's channels are
sparse and many masks alike, so Score-CAM's weights hinge on near-ties; ``--pretrained`` (a real
picture and ImageNet weights) makes r the better check. Known differences that lower r:

- Score-CAM: ours weighs channel k by the softmax probability of the class for the masked input,
  as the authors' code does; both peers take instead a softmax over the channels of the masked
  inputs' logits (TorchCAM subtracts the unmasked input's logit first, which a softmax ignores).
  The masks and the forward passes are the same (up to where the min-max scaling happens and
  ours skipping constant channels), so the timings compare; the peers' maps agree with each
  other, less with ours, above all with random weights.
- Ablation-CAM: pytorch-grad-cam sets an ablated channel to 0 only where the layer's output has
  minimum 0 (after a ReLU, so every ResNet stage); elsewhere (EfficientNet-Lite0's ``layer3``,
  a linear bottleneck) it uses that minimum minus 1e7. Ours always sets it to 0, as in the paper.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported (torch imports it)

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, not installed
import gradcam_core as gc  # noqa: E402
from gradcam_core.maps import correlation, normalize, upsample  # noqa: E402

SKIPPED: dict[str, str] = {}  # peer -> why it is not in the table

try:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except Exception as error:  # noqa: BLE001 - any failure (cv2 without libGL, no sklearn...) skips it
    pytorch_grad_cam = None
    SKIPPED["pytorch-grad-cam"] = f"import failed: {type(error).__name__}: {error}"

try:
    import torchcam.methods
except Exception as error:  # noqa: BLE001
    torchcam = None
    SKIPPED["torchcam"] = f"import failed: {type(error).__name__}: {error}"


@dataclass
class Case:
    method: str  # "forward", "Score-CAM" or "Ablation-CAM"
    library: str  # "ours", or a peer with its version
    layer: str
    batch: int | None
    run: Callable[[], object]  # the timed call, as its library documents it
    to_map: Callable[[object], torch.Tensor] | None = None  # its output -> normalized (H, W), untimed

    @property
    def name(self) -> str:
        return "forward (no_grad)" if self.method == "forward" else f"{self.method} {self.layer}, {self.library}"


def installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def cases(clf: gc.Classifier, x: torch.Tensor, target: int, methods: list[str],
          score_batch: int, ablation_batch: int) -> list[Case]:
    model, size = clf.module, tuple(x.shape[-2:])

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def ours(result: gc.Result, layer: str) -> torch.Tensor:
        return normalize(upsample(result.maps[layer], size))[0]

    found = [Case("forward", "torch", "", None, forward)]
    grad_cam, torch_cam = f"pytorch-grad-cam {installed('grad-cam')}", f"torchcam {installed('torchcam')}"
    # Every lambda binds its layer and batch size as defaults: a closure would see the last ones.
    if "score_cam" in methods:
        for layer, b in [("layer4", score_batch)]:
            found.append(Case("Score-CAM", "ours", layer, b,
                              lambda layer=layer, b=b: gc.ScoreCAM(model, [layer], batch_size=b)(x, target=target),
                              lambda r, layer=layer: ours(r, layer)))
            if pytorch_grad_cam is not None:
                found.append(Case("Score-CAM", grad_cam, layer, b,
                                  lambda layer=layer, b=b: grad_cam_run(pytorch_grad_cam.ScoreCAM, model, layer, x,
                                                                        target, b),
                                  grad_cam_map))
            if torchcam is not None:
                found.append(Case("Score-CAM", torch_cam, layer, b,
                                  lambda layer=layer, b=b: torchcam_run(model, layer, x, target, b),
                                  lambda cams: normalize(upsample(cams[0], size))[0]))
    if "ablation_cam" in methods:
        for layer, b in [("layer4", ablation_batch), ("layer3", ablation_batch)]:
            found.append(Case("Ablation-CAM", "ours", layer, b,
                              lambda layer=layer, b=b: gc.AblationCAM(model, [layer], batch_size=b)(x, target=target),
                              lambda r, layer=layer: ours(r, layer)))
            if pytorch_grad_cam is not None:
                found.append(Case("Ablation-CAM", grad_cam, layer, b,
                                  lambda layer=layer, b=b: grad_cam_run(pytorch_grad_cam.AblationCAM, model, layer,
                                                                        x, target, b),
                                  grad_cam_map))
    return found


def grad_cam_run(method, model: torch.nn.Module, layer: str, x: torch.Tensor, target: int,
                 batch_size: int) -> np.ndarray:
    """pytorch-grad-cam's documented use: a context manager (its hooks go when it ends)."""
    with method(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        # AblationCAM takes batch_size in its constructor, ScoreCAM only reads the attribute if
        # it is set (16 otherwise): setting it after construction serves both.
        cam.batch_size = batch_size
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])


def grad_cam_map(maps: np.ndarray) -> torch.Tensor:
    return normalize(torch.from_numpy(maps)[0])  # (N, H, W) at the input's size, min-max scaled already


def torchcam_run(model: torch.nn.Module, layer: str, x: torch.Tensor, target: int, batch_size: int) -> list:
    """TorchCAM's documented use: hook the layer, run the model, then ask for the class."""
    with torchcam.methods.ScoreCAM(model, layer, batch_size=batch_size, input_shape=tuple(x.shape[1:])) as cam:
        with torch.no_grad():
            model(x)
        return cam(class_idx=target)


def measure(runs: list[Case], repeats: int, warmup: int) -> tuple[dict[str, float], dict[str, object]]:
    """Median ms of each case over interleaved rounds, and each case's last output."""
    last: dict[str, object] = {}
    for _ in range(3):  # threads and allocator; each method warms up over its own hundreds of passes
        runs[0].run()
    for case in runs:
        for _ in range(warmup):
            last[case.name] = case.run()
    samples: dict[str, list[float]] = {case.name: [] for case in runs}
    for round_ in range(repeats):
        for case in runs:
            start = time.perf_counter()
            last[case.name] = case.run()
            samples[case.name].append(time.perf_counter() - start)
            print(f"round {round_ + 1}/{repeats}: {case.name}: {samples[case.name][-1]:.1f} s",
                  file=sys.stderr, flush=True)
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet34", choices=("resnet34", "efficientnet_lite0"))
    parser.add_argument("--methods", nargs="+", default=["score_cam", "ablation_cam"],
                        choices=("score_cam", "ablation_cam"), help="which methods (default: both)")
    parser.add_argument("--pretrained", action="store_true",
                        help="ImageNet weights and assets/images/cat_dog.png instead of random weights and noise, "
                             "for a truer r (efficientnet_lite0's weights come with pip; resnet34's are downloaded)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed runs of each case first (default: 0)")
    parser.add_argument("--score-batch", type=int, default=32,
                        help="masked inputs per forward pass, for every Score-CAM (default: 32, ours' default)")
    parser.add_argument("--ablation-batch", type=int, default=64,
                        help="ablated copies per forward pass, for every Ablation-CAM (default: 64, ours' default)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    torch.manual_seed(0)
    clf = gc.load_model(args.model, pretrained=args.pretrained)
    if args.pretrained:
        x, inputs = clf.preprocess(ROOT / "assets" / "images" / "cat_dog.png"), "cat_dog.png, ImageNet weights"
    else:
        x, inputs = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)), "random weights"
    target = 243  # 'bull mastiff'
    runs = cases(clf, x, target, args.methods, args.score_batch, args.ablation_batch)
    medians, outputs = measure(runs, args.repeats, args.warmup)

    with torch.no_grad():
        logit = float(clf.module(x)[0, target])
    print(f"{args.model}, 224x224, batch 1, CPU, {torch.get_num_threads()} threads, median of {args.repeats} "
          f"interleaved rounds, torch {torch.__version__}; {inputs}, class {target} (logit {logit:.2f})")
    for peer, why in SKIPPED.items():
        print(f"skipped {peer}: {why}")
    print()
    print("| case | batch | ms | x forward | ours faster | r vs ours |")
    print("|---|---:|---:|---:|---:|---:|")
    forward = medians["forward (no_grad)"]
    for case in runs:
        ms, faster, r = medians[case.name], "", ""
        ours = next((c for c in runs if (c.method, c.layer, c.library) == (case.method, case.layer, "ours")), None)
        if ours is not None and case is not ours:
            faster = f"{ms / medians[ours.name]:.1f}"
            r = f"{correlation(case.to_map(outputs[case.name]), ours.to_map(outputs[ours.name])):.3f}"
        batch = "" if case.batch is None else str(case.batch)
        print(f"| {case.name} | {batch} | {ms:.0f} | {ms / forward:.1f} | {faster} | {r} |")
    peers = [c for c in runs if c.library not in ("torch", "ours")]
    for i, a in enumerate(peers):
        for b in peers[i + 1:]:
            if (a.method, a.layer) == (b.method, b.layer):
                r = correlation(a.to_map(outputs[a.name]), b.to_map(outputs[b.name]))
                print(f"\n{a.method} {a.layer}: r between {a.library} and {b.library}: {r:.3f}")


if __name__ == "__main__":
    main()
