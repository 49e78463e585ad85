"""Time every method of ``gc.METHODS`` against a plain forward pass, and against its peers, in one run.

    python benchmarks/bench_methods.py [--model resnet34] [--repeats 5] [--only lime,rise,explain]
        [--set rise.masks=100] [--no-peers]

ResNet34 at 224x224, batch 1, on the CPU, random weights (seeded; timing does not depend on them),
``assets/images/cat_dog.png`` (SLIC needs a photo for LIME's and Kernel SHAP's superpixels) and the
model's top-1 class on it (with random weights the logits span hundreds: any other class has
probability 0 in float32, and so would the maps that weigh by it). Each method runs through
``gc.explain`` at the last stage with its defaults, except where they would take many minutes
(:data:`REDUCED`, or ``--set``: the table gives the option used and what the default would cost).
One more row, ``explain``, asks for every method that is not slow in one call, against the sum of
their separate calls: what sharing one forward and one backward pass saves. The peers
(pytorch-grad-cam, TorchCAM, captum, zennit, and the RISE authors' algorithm written out below) run
on the same input with the same batch sizes; a peer that does not import is skipped, with why.

Every case first runs once: that run counts the passes that reach the logits and the images they
carry (a forward pre-hook on the head of every model the case may call, so a pass from a layer's
output counts too), warms it up, and gives the map compared.
A case that took over ``--slow-seconds`` keeps that one run as its time (``runs`` 1); the others
run ``--repeats`` more rounds, interleaved round after round with a plain ``torch.no_grad()``
forward, and report their medians, so that load on a shared machine weighs on all alike. ``x
forward`` is the ratio to that forward's median. A method's peers run right after it.

``ours faster`` is the peer's time over ours; ``r`` is Pearson's correlation of the two maps,
brought to the same form: pixel attributions ``(3, H, W)`` as they are; layer maps as
pytorch-grad-cam returns them (ReLU, min-max scaled, bilinear to 224x224); TorchCAM's and ours
min-max scaled after the same upsampling. Stochastic methods are compared on the same draws where
the peer takes them (LIME, Kernel SHAP, RISE); elsewhere each draws its own (SmoothGrad,
GradientShap, SS-CAM, IS-CAM, Smooth Grad-CAM++) and r includes the sampling noise.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import inspect
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Self

os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported (torch imports it)
warnings.filterwarnings("ignore", category=UserWarning, module="captum")  # its notes on hooks and requires_grad

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, not installed
import gradcam_core as gc  # noqa: E402
from gradcam_core.explainers.paths import baseline  # noqa: E402
from gradcam_core.explainers.rise import _draw  # noqa: E402 - the same cells and shifts for the reference
from gradcam_core.maps import correlation, normalize, upsample  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))  # the same adapters of the references as the tests use
from reference_adapters import captum_ready, signed_like_ours  # noqa: E402

TARGET = 0  # set in main: the model's top-1 class on the picture, the same for every case

#: Options below the defaults, where the defaults would take many minutes on two cores (``--set``
#: adds to them).
REDUCED: dict[str, dict[str, object]] = {
    "ss_cam": {"samples": 1},
    "is_cam": {"samples": 1},
}
#: Method -> (the option its cost grows with, or None; what that costs), besides the shared pass.
UNITS = {
    "score_cam": (None, "a forward pass per channel of the layer"),
    "ss_cam": ("samples", "a forward pass per channel of the layer and sample"),
    "is_cam": ("samples", "a forward pass per channel of the layer and sample"),
    "smooth_grad_cam_pp": ("samples", "a forward and a backward pass per sample"),
    "integrated_gradients": ("steps", "a forward and a backward pass per step"),
    "smooth_grad": ("samples", "a forward and a backward pass per sample"),
    "gradient_shap": ("samples", "a forward and a backward pass per sample"),
    "occlusion": (None, "a forward pass per window position"),
    "rise": ("masks", "a forward pass per mask"),
    "lime": ("samples", "a forward pass per sample"),
    "kernel_shap": ("samples", "a forward pass per sample"),
    "extremal_perturbation": ("steps", "a forward and a backward pass per step"),
}


@dataclass
class Case:
    name: str
    run: Callable[[], object]
    to_map: Callable[[object], torch.Tensor] | None = None  # output -> map to correlate, untimed
    method: str = ""  # the METHODS key; peers name their method's
    peer: str = ""  # "" for ours, else the library and its version
    batch: int | None = None
    note: str = ""
    again: tuple[str, Callable[[], object]] | None = None  # (what differs, a run without it) for r
    error: str = ""
    times: list[float] = field(default_factory=list)
    output: object = None
    calls: int = 0
    images: int = 0

    @property
    def ms(self) -> float:
        return statistics.median(self.times) * 1000 if self.times else float("nan")


def installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"


def cpu_name() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


class Counter:
    """Passes that reach the logits, and the images they carry: calls of the classifier's head
    (``head``, its last layer) in every model given. A pass that starts from a layer's output
    (Ablation-CAM's rest) counts as one too.
    """

    def __init__(self, models: list[nn.Module], head: str):
        self.heads, self.calls, self.images, self.handles = [m.get_submodule(head) for m in models], 0, 0, []

    def hook(self, _module, args, kwargs) -> None:
        self.calls += 1
        first = next((a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor)), None)
        self.images += 0 if first is None else first.shape[0]

    def __enter__(self) -> Self:
        self.handles = [m.register_forward_pre_hook(self.hook, with_kwargs=True) for m in self.heads]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


# ---------------------------------------------------------------------------------------------
# Ours
# ---------------------------------------------------------------------------------------------


def options_of(name: str, clf: gc.Classifier, x: torch.Tensor) -> dict[str, object]:
    options = dict(REDUCED.get(name, {}))
    if name == "cam":
        options["fc"] = clf.fc
    if name == "integrated_gradients":  # the default "black" as a tensor: captum gets the same one
        options["baseline"] = baseline(clf.module, x, "black")
    return options


def shown(name: str, options: dict[str, object]) -> str:
    parts = [f"{k}={v}" for k, v in options.items() if k not in ("fc", "baseline")]
    if name == "integrated_gradients":
        parts.append("baseline=black (as a tensor)")
    return ", ".join(parts)


def as_layer_map(maps: torch.Tensor, size) -> torch.Tensor:
    """Our ``(N, h, w)`` layer map as pytorch-grad-cam returns one: ReLU, scaled, resized, scaled."""
    return normalize(upsample(normalize(maps.clamp(min=0)), tuple(size)))[0]


def our_cases(clf: gc.Classifier, x: torch.Tensor, names: list[str], with_explain: bool) -> list[Case]:
    model, last = clf.module, clf.stages[-1]
    found = []
    for name in names:
        options = options_of(name, clf, x)
        # the lambdas bind name and options as defaults: a closure would see the last ones
        found.append(Case(gc.METHODS[name].label,
                          lambda name=name, options=options: gc.explain(model, x, TARGET, [last], [name],
                                                                        {name: options}),
                          lambda out, name=name: next(iter(out[name].maps.values())),  # one layer, or "input"
                          method=name, note=shown(name, options)))
    if with_explain:
        fast = [name for name in gc.METHODS if not gc.METHODS[name].slow]
        found.append(Case(f"explain: the {len(fast)} methods that are not slow, in one call",
                          lambda: gc.explain(model, x, TARGET, [last], fast, {"cam": {"fc": clf.fc}}),
                          method="explain", note=", ".join(fast)))
    return found


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------


def rise_reference(model: nn.Module, x: torch.Tensor, target: int, n: int, s: int, p1: float, batch: int,
                   grid: np.ndarray, shifts: np.ndarray) -> torch.Tensor:
    """RISE as its authors wrote it: github.com/eclique/RISE, ``explanations.py``, ``RISE.generate_masks``
    and ``RISE.forward`` (the model there ends in a softmax). The random cells and shifts, which
    the authors draw with ``np.random``, are given: ours', so that the maps can be compared."""
    from skimage.transform import resize

    input_size = tuple(x.shape[-2:])
    cell_size = np.ceil(np.array(input_size) / s)
    up_size = (s + 1) * cell_size
    masks = np.empty((n, *input_size))
    for i in range(n):
        dx, dy = shifts[i]
        masks[i, :, :] = resize(grid[i], up_size, order=1, mode="reflect",
                                anti_aliasing=False)[dx:dx + input_size[0], dy:dy + input_size[1]]
    masks = torch.from_numpy(masks.reshape(-1, 1, *input_size)).float()
    stack = torch.mul(masks, x.data)
    with torch.no_grad():
        p = torch.cat([model(stack[i:min(i + batch, n)]).softmax(dim=1) for i in range(0, n, batch)])
    sal = torch.matmul(p.data.transpose(0, 1), masks.view(n, -1)).view(p.shape[1], *input_size)
    return (sal / n / p1)[target]


def peer_cases(clf: gc.Classifier, x: torch.Tensor, name: str, ours: Case, models: dict[str, nn.Module],
               skipped: dict[str, str]) -> list[Case]:
    """The peers of method ``name``; ``models["twin"]`` is a copy for the libraries that write ``.grad``."""
    model, last, size = clf.module, clf.stages[-1], tuple(x.shape[-2:])
    twin = models["twin"]
    defaults = {k: v.default for k, v in inspect.signature(gc.METHODS[name].cls.__init__).parameters.items()}
    settings = {**defaults, **REDUCED.get(name, {})}
    batch = settings.get("batch_size")
    captum, pgc, tcam = (f"captum {installed('captum')}", f"pytorch-grad-cam {installed('grad-cam')}",
                         f"torchcam {installed('torchcam')}")
    sigma = float(x.max() - x.min())
    found: list[Case] = []

    def add(peer: str, run: Callable[[], object], to_map: Callable[[object], torch.Tensor], note: str = "",
            b: int | None = batch, again: tuple[str, Callable[[], object]] | None = None) -> None:
        found.append(Case(f"{ours.name}, {peer}", run, to_map, method=name, peer=peer, batch=b, note=note,
                          again=again))

    def pixels(out) -> torch.Tensor:  # (1, 3, H, W) attributions, compared as they are
        return out[0]

    def layer(out) -> torch.Tensor:  # pytorch-grad-cam's (N, H, W), scaled and resized already
        return torch.as_tensor(np.asarray(out))[0]

    try:
        if name == "integrated_gradients":
            from captum.attr import IntegratedGradients
            start = baseline(model, x, "black")
            def run(delta: bool = False):
                return IntegratedGradients(model).attribute(
                    x.clone().requires_grad_(True), baselines=start, target=TARGET, n_steps=settings["steps"],
                    method="gausslegendre", internal_batch_size=batch, return_convergence_delta=delta)

            add(captum, lambda: run().detach(), pixels,
                "same steps, rule (Gauss-Legendre), baseline tensor, internal_batch_size; no convergence delta")
            # ours always reports the integration error: captum's convergence delta, which costs it a
            # forward pass of the picture and of the baseline, as it costs ours
            add(captum + " with its delta", lambda: run(delta=True), lambda out: out[0][0].detach(),
                "the same, and return_convergence_delta=True: the same outputs as ours")
        elif name == "smooth_grad":
            from captum.attr import NoiseTunnel, Saliency

            def run():
                return NoiseTunnel(Saliency(model)).attribute(
                    x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=settings["samples"],
                    nt_samples_batch_size=batch, stdevs=settings["noise"] * sigma, target=TARGET, abs=False).detach()

            # our draw, as SmoothGrad makes it (tests/test_smooth_grad.py), for captum's torch.normal
            g = torch.Generator().manual_seed(settings["seed"])
            eps = settings["noise"] * sigma * torch.randn((settings["samples"], *x.shape[1:]), generator=g)
            add(captum + " NoiseTunnel(Saliency)", run, pixels, "same samples and sigma, its own noise",
                again=("given our noise", lambda: patched(run, (torch, "normal", lambda *a, **k: eps.clone()))))
        elif name == "gradient_shap":
            from captum.attr import GradientShap
            starts = torch.cat([baseline(model, x, b) for b in settings["baselines"]])

            def run():
                return GradientShap(model).attribute(x.clone().requires_grad_(True), starts,
                                                     n_samples=settings["samples"], stdevs=settings["noise"],
                                                     target=TARGET).detach()

            # our draws, as GradientShap makes them (tests/test_gradient_shap.py), for captum's
            g = torch.Generator().manual_seed(settings["seed"])
            which = torch.randint(len(starts), (settings["samples"],), generator=g)
            alphas = torch.rand(settings["samples"], generator=g)
            eps = settings["noise"] * sigma * torch.randn((settings["samples"], *x.shape[1:]), generator=g)
            ours_drawn = ((np.random, "choice", lambda *a, **k: which.numpy()),
                          (np.random, "uniform", lambda *a, **k: alphas.double().numpy()),
                          (torch, "normal", lambda *a, **k: eps.clone()))
            add(captum, run, pixels, "same baselines and samples (one batch), its own draws",
                again=("given our draws", lambda: patched(run, *ours_drawn)))
        elif name in ("lime", "kernel_shap"):
            from captum._utils.models.linear_model import SkLearnRidge
            from captum.attr import KernelShap, Lime
            segments = gc.superpixels(x)[0]
            m = int(segments.max()) + 1
            explainer = gc.METHODS[name].cls(model, samples=settings["samples"], seed=settings["seed"])
            rows = explainer.coalitions(m)

            def coalitions(_, **kwargs):
                yield torch.ones(1, m, dtype=torch.long)  # captum starts with the unperturbed picture
                for row in rows:
                    yield row[None].long()

            if name == "lime":
                def run():
                    lime = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0), perturb_func=coalitions,
                                similarity_func=lambda o, p, z, **k: explainer.similarity(z.double()).float())
                    return lime.attribute(x, target=TARGET, feature_mask=segments[None, None],
                                          n_samples=len(rows) + 1, perturbations_per_eval=batch)
            else:
                def run():
                    shap = KernelShap(model)
                    shap.perturb_func = coalitions
                    return shap.attribute(x, target=TARGET, feature_mask=segments[None, None],
                                          n_samples=len(rows) + 1, perturbations_per_eval=batch)
            add(captum, run, lambda out: out[0, 0],
                f"same {m} SLIC superpixels and {len(rows)} coalitions (ours fed to its perturb_func)"
                + (", same kernel, Ridge(alpha=1)" if name == "lime" else ""))
        elif name == "rise":
            cells, shifts = _draw(settings["masks"], settings["grid"], settings["p"], size, settings["seed"])
            cells, shifts = cells.float().numpy(), shifts.numpy()
            add("authors' algorithm (eclique/RISE)", lambda: rise_reference(
                model, x, TARGET, settings["masks"], settings["grid"], settings["p"], batch, cells, shifts),
                lambda out: out, "written out in this file; same masks (cells and shifts), N, grid, p, batch; "
                "mask making (scikit-image resize, one by one) timed too")
        elif name == "deep_lift":
            from captum.attr import DeepLift
            from captum.attr._core import deep_lift as module
            start = baseline(model, x, "black")
            if "resnet" in type(model).__name__.lower():
                ready = models.setdefault("deep_lift", captum_ready(model))
                rules = {nn.MaxPool2d: _adding_maxpool2d}
                note = ("captum refuses ResNet's reused ReLU: run on a copy with one ReLU per call, a clone "
                        "before the max pool and an adding max-pool rule (tests/test_deep_lift.py); captum's own "
                        "pre-hook builds the batch of x and its baseline, which the count does not see")
            else:
                ready, rules = model, {nn.ReLU6: module.nonlinear}
                note = "ReLU6 added to captum's rescaled non-linearities"

            def run():
                saved = {k: module.SUPPORTED_NON_LINEAR.get(k) for k in rules}
                module.SUPPORTED_NON_LINEAR.update(rules)
                try:
                    return DeepLift(ready).attribute(x.clone(), baselines=start, target=TARGET).detach()
                finally:
                    for k, v in saved.items():
                        if v is None:
                            module.SUPPORTED_NON_LINEAR.pop(k)
                        else:
                            module.SUPPORTED_NON_LINEAR[k] = v
            add(captum, run, pixels, note, None)
        elif name == "lrp":
            if "resnet" not in type(model).__name__.lower():
                skipped["LRP"] = "the zennit reference is set up with its ResNet canonizer only"
            else:
                from zennit.attribution import Gradient
                from zennit.composites import LayerMapComposite, layer_map_base
                from zennit.rules import Epsilon
                from zennit.torchvision import ResNetCanonizer
                from zennit.types import Linear

                def run():
                    rules = layer_map_base() + [(Linear, Epsilon(settings["epsilon"]))]
                    composite = LayerMapComposite(layer_map=rules, canonizers=[ResNetCanonizer()])
                    with Gradient(twin, composite) as attributor:
                        chosen = F.one_hot(torch.tensor([TARGET]), 1000)
                        return attributor(x.clone(), lambda out: out * chosen)[1]
                add(f"zennit {installed('zennit')}", run, pixels,
                    "its Gradient attributor, epsilon at every layer, its ResNetCanonizer; on a copy", None)
        elif name in ("finer_cam", "kpca_cam", "shapley_cam", "eigen_grad_cam", "full_grad"):
            import pytorch_grad_cam as library
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
            targets = [ClassifierOutputTarget(TARGET)]
            if name == "finer_cam":
                def run():
                    with library.FinerCAM(twin, [twin.get_submodule(last)]) as cam:
                        return cam(x, alpha=settings["alpha"], target_idx=TARGET,
                                   comparison_categories=list(range(1, settings["comparisons"] + 1)))
            elif name == "full_grad":
                def run():
                    with library.FullGrad(twin, []) as cam:
                        return cam(x, targets)
            else:
                kernel = {"kernel": settings.get("kernel"), "gamma": settings.get("gamma")}
                cls, extra = {"kpca_cam": (library.KPCA_CAM, kernel),
                              "shapley_cam": (library.ShapleyCAM, {}),
                              "eigen_grad_cam": (library.EigenGradCAM, {})}[name]

                def run():
                    with cls(twin, [twin.get_submodule(last)], **extra) as cam:
                        return cam(x, targets)
            again = ("given our sign", lambda: with_our_sign(run)) if name == "eigen_grad_cam" else None
            note = "on a copy (it writes .grad)" + (
                "; it keeps the SVD's sign, ours makes the map agree with the channels' sum" if again else "")
            add(pgc, run, layer, note, None, again)
        elif name in ("ss_cam", "is_cam", "smooth_grad_cam_pp"):
            import torchcam.methods as library
            if name == "smooth_grad_cam_pp":
                def run():
                    with library.SmoothGradCAMpp(twin, last, num_samples=settings["samples"],
                                                 std=settings["noise"] * sigma) as cam:
                        return cam(class_idx=TARGET, scores=twin(x))
                note = "same samples and sigma, its own noise; on a copy (it writes .grad)"
            else:
                cls = library.SSCAM if name == "ss_cam" else library.ISCAM
                extra = {"std": settings["noise"]} if name == "ss_cam" else {}

                def run():
                    with cls(model, last, batch_size=batch, num_samples=settings["samples"],
                             input_shape=tuple(x.shape[1:]), **extra) as cam:
                        with torch.no_grad():
                            model(x)
                        return cam(class_idx=TARGET)
                note = ("same samples; weighs channels by a softmax over channels of the logits, ours by the class "
                        "probability (as the authors' code)") + (", its own noise" if name == "ss_cam" else "")
            add(tcam, run, lambda out: normalize(upsample(out[0], size))[0], note)
    except Exception as error:  # noqa: BLE001 - a peer that does not import or build is reported, not fatal
        skipped[ours.name] = f"{type(error).__name__}: {error}"
    return found


def patched(run: Callable[[], object], *replacements: tuple[object, str, object]) -> object:
    """``run()`` with each ``(owner, attribute, value)`` in place, restored after."""
    saved = [(owner, attribute, getattr(owner, attribute)) for owner, attribute, _ in replacements]
    for owner, attribute, value in replacements:
        setattr(owner, attribute, value)
    try:
        return run()
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)


def with_our_sign(run: Callable[[], object]) -> object:
    """``run()`` with pytorch-grad-cam's Eigen-Grad-CAM projections signed as ours
    (tests/test_eigen_grad_cam.py)."""
    import pytorch_grad_cam.eigen_grad_cam as module

    original = module.get_2d_projection
    module.get_2d_projection = signed_like_ours(original)
    try:
        return run()
    finally:
        module.get_2d_projection = original


def _adding_maxpool2d(module, inputs, outputs, grad_input, grad_output, eps=1e-10):
    """captum's max-pool rule, adding where overlapping windows share a winner (tests/test_deep_lift.py)."""
    from captum.attr._core import deep_lift

    def unpool(values, indices, kernel_size, stride, padding, output_size):
        out = values.new_zeros(output_size).flatten(2)
        return out.scatter_add_(2, indices.flatten(2), values.flatten(2)).view(output_size)

    return deep_lift.maxpool(module, F.max_pool2d, unpool, inputs, outputs, grad_input, grad_output, eps=eps)


def comparable(case: Case, own: Case, size) -> tuple[torch.Tensor, torch.Tensor]:
    """Our map and the peer's, brought to the same form (see the module's docstring)."""
    mine, theirs = own.to_map(own.output), case.to_map(case.output)
    if mine.dim() == 4:  # (1, 3, H, W) pixel attributions
        return mine[0], theirs
    mine = mine[0] if mine.dim() == 3 else mine
    if "pytorch-grad-cam" in case.peer:
        return as_layer_map(mine[None], size), theirs
    return normalize(upsample(mine[None], size))[0], normalize(theirs[None])[0]


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def measure(forward: Case, cases: list[Case], models: list[nn.Module], head: str, repeats: int,
            slow_seconds: float) -> None:
    for _ in range(3):
        forward.run()
    for case in cases:
        counter = Counter(models, head)
        try:
            with counter:
                start = time.perf_counter()
                case.output = case.run()
                case.times.append(time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 - reported in the table; the others go on
            case.error = f"{type(error).__name__}: {error}"
            print(f"first run: {case.name}: {case.error}", file=sys.stderr, flush=True)
            continue
        case.calls, case.images = counter.calls, counter.images
        print(f"first run: {case.name}: {case.times[-1]:.2f} s", file=sys.stderr, flush=True)
    fast = [case for case in cases if case.times and case.times[0] <= slow_seconds]
    for case in fast:
        case.times.clear()  # the first run was their warm-up
    for round_ in range(repeats):
        for case in [forward, *fast]:
            start = time.perf_counter()
            case.run()
            case.times.append(time.perf_counter() - start)
        print(f"round {round_ + 1}/{repeats} done", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet34", choices=("resnet34", "efficientnet_lite0"))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of the fast cases (default: 5)")
    parser.add_argument("--slow-seconds", type=float, default=2.0,
                        help="a case whose first run takes longer keeps that run as its time (default: 2)")
    parser.add_argument("--only", default="",
                        help="comma-separated METHODS keys (and 'explain' for the one-call row); default: all")
    parser.add_argument("--target", type=int, default=None, help="class explained (default: the model's top-1)")
    parser.add_argument("--no-peers", action="store_true", help="ours only")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=INT",
                        help="change an integer option for ours and its peers, e.g. --set rise.masks=100 (repeatable)")
    args = parser.parse_args()
    for item in args.set:
        try:
            key, value = item.split("=")
            method, option = key.split(".")
            if option not in gc.METHODS[method].options:
                raise KeyError(option)
            REDUCED.setdefault(method, {})[option] = int(value)
        except (ValueError, KeyError):
            parser.error(f"--set takes METHOD.OPTION=INT with an option of that method, got {item!r}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    only = [n for n in args.only.split(",") if n]
    unknown = sorted(set(only) - set(gc.METHODS) - {"explain"})
    if unknown:
        parser.error(f"unknown method {', '.join(unknown)}; choose from {', '.join(gc.METHODS)}, explain")
    names = [n for n in gc.METHODS if not only or n in only]

    torch.manual_seed(0)
    clf = gc.load_model(args.model, pretrained=False)
    model = clf.module
    x = clf.preprocess(ROOT / "assets" / "images" / "cat_dog.png")  # a photo: SLIC finds no superpixels in noise
    with torch.no_grad():
        logits = model(x)[0]
    # With random weights the logits span hundreds: another class's probability is exactly 0 in
    # float32, and the maps of the methods that weigh by it (Score-CAM's family, RISE) with it.
    global TARGET
    TARGET = int(logits.argmax()) if args.target is None else args.target
    size = tuple(x.shape[-2:])

    def plain_forward() -> None:
        with torch.no_grad():
            model(x)

    forward = Case("forward (no_grad)", plain_forward)
    ours = our_cases(clf, x, names, with_explain=not only or "explain" in only)
    models = {"twin": copy.deepcopy(model).eval()}
    skipped: dict[str, str] = {}
    cases: list[Case] = []
    for case in ours:
        cases.append(case)
        if not args.no_peers and case.method != "explain":
            cases.extend(peer_cases(clf, x, case.method, case, models, skipped))
    measure(forward, cases, [model, *models.values()], clf.fc, args.repeats, args.slow_seconds)

    f = forward.ms
    print(f"{args.model}, 224x224, batch 1, CPU ({cpu_name()}, {os.cpu_count()} cores), "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; cat_dog.png, random weights, class {TARGET} "
          f"(p = {float(logits.softmax(0)[TARGET]):.3f}), "
          f"layer {clf.stages[-1]}; fast cases: median of {args.repeats} interleaved rounds after one warm-up run, "
          f"slow ones (first run over {args.slow_seconds:g} s): that one run; forward {f:.1f} ms")
    for what, why in skipped.items():
        print(f"skipped peer of {what}: {why}")
    print()
    print("| method | options (else defaults) | runs | ms | x forward | passes / images | cost |")
    print("|---|---|---:|---:|---:|---:|---|")
    print(f"| forward (no_grad) |  | {len(forward.times)} | {f:.1f} | 1.00 |  |  |")
    mine = [c for c in cases if not c.peer]
    for case in mine:
        opts, cost = case.note, ""
        if case.method == "explain":
            parts = [c for c in mine if c.method in case.note.split(", ") and c.times]
            total = sum(c.ms for c in parts) or float("nan")
            opts = "cam: fc=fc"
            cost = (f"the {len(parts)} separate calls add up to {total:.0f} ms ({total / f:.1f} x forward): "
                    f"one call costs {case.ms / total:.2f} of that")
        elif case.method in UNITS:
            option, cost = UNITS[case.method]
            used = REDUCED.get(case.method, {}).get(option) if option else None
            if used is not None:
                default = inspect.signature(gc.METHODS[case.method].cls.__init__).parameters[option].default
                cost += (f"; the default {option}={default} would be about {default / used:.0f}x this "
                         f"(~{case.ms * default / used / 1000:.0f} s)")
        if case.error:
            cost = f"failed: {case.error}"
        ms = f"{case.ms:.0f}" if case.ms >= 100 else f"{case.ms:.1f}"
        print(f"| {case.name} | {opts} | {len(case.times)} | {ms} | {case.ms / f:.2f} | "
              f"{case.calls} / {case.images or '?'} | {cost} |")
    explain = next((c for c in mine if c.method == "explain"), None)
    if explain is not None:
        print(f"\nThe one call: {explain.note}.")

    peers = [c for c in cases if c.peer]
    if peers:
        print()
        print("| method | peer | batch | ours ms | peer ms | ours faster | r | peer passes / images | how |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for case in peers:
        own = next(c for c in mine if c.method == case.method)
        r = agreement(case, own, size) if case.output is not None and own.output is not None else ""
        batch = "" if case.batch is None else str(case.batch)
        how = f"failed: {case.error or own.error}" if case.error or own.error else case.note
        print(f"| {own.name} | {case.peer} | {batch} | {own.ms:.0f} | {case.ms:.0f} | {case.ms / own.ms:.2f} | {r} | "
              f"{case.calls} / {case.images or '?'} | {how} |")


def agreement(case: Case, own: Case, size) -> str:
    """Pearson's r of the peer's map and ours, and where given, of the peer's without a known difference."""
    try:
        a, b = comparable(case, own, size)
        if a.std() == 0 or b.std() == 0:
            return "both 0" if a.std() == b.std() == 0 else "ours 0" if a.std() == 0 else "peer's 0"
        r = f"{correlation(a, b):.3f}"
        if case.again is not None:  # untimed
            label, run = case.again
            r += f" ({correlation(*comparable(dataclasses.replace(case, output=run()), own, size)):.3f} {label})"
        return r
    except Exception as error:  # noqa: BLE001 - a map that cannot be compared is reported, not fatal
        return f"({type(error).__name__}: {error})"

if __name__ == "__main__":
    main()
