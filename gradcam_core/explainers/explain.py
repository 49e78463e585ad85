"""Many methods on one image, from one forward and one backward pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .base import Progress, Result, Target, run
from .registry import METHODS, methods_for

__all__ = ["explain"]


def explain(
    model: nn.Module,
    x: torch.Tensor,
    target: Target = None,
    layers: Sequence[str] | str | None = None,
    methods: Sequence[str] | str = ("grad_cam",),
    options: Mapping[str, Mapping[str, object]] | None = None,
    progress: Progress | None = None,
) -> dict[str, Result]:
    """Explain ``target`` with several :data:`~.registry.METHODS` at once, sharing every pass.

    One forward pass records every layer; one ``torch.autograd.grad`` gives the gradients at all
    the layers and at the input that the layer-gradient methods and ``saliency`` need; guided
    backprop and the deconvnet reuse that forward pass's graph; then the perturbation methods run,
    batched, starting from the recorded activations. Each entry equals what the method's own class
    returns. The pixel-space methods' pictures are under the one key ``"input"`` of their
    ``Result.maps``; CAM explains the last of ``layers``.

    Args:
        model: any CNN or Vision Transformer classifier; it is left exactly as it was.
        x: ``(N, C, H, W)`` or ``(C, H, W)``, normalized as the model expects.
        target: ``None`` (each image's top-1), one class, or one per image.
        layers: the layers the layer methods explain.
        methods: names from :data:`~.registry.METHODS`, or ``"all"`` (every one that explains the
            model's family, :func:`~.registry.methods_for`).
        options: method name -> keyword options of its class, e.g. ``{"occlusion": {"window": 48}}``.
        progress: ``progress(done, total)`` for each slow method in turn (unless its options give
            one); raising in it cancels the call.

    Returns:
        method name -> :class:`~.base.Result`, in the order of ``methods``, each with the time of
        its own step (``seconds``) and of the shared pass (``pass_seconds``).

    Example:
        >>> results = explain(clf.module, x, target=243, layers=clf.stages,
        ...                   methods=["grad_cam", "layer_cam", "saliency", "score_cam"])
        >>> results["layer_cam"].maps["layer1"].shape, results["saliency"].maps["input"].shape
        (torch.Size([1, 56, 56]), torch.Size([1, 3, 224, 224]))
    """
    known = METHODS
    names = list(methods_for(model)) if methods == "all" else [methods] if isinstance(methods, str) else list(methods)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(
            f"Unknown method {', '.join(map(repr, unknown)) or '(none given)'}; choose from {', '.join(known)}."
        )
    options = dict(options or {})
    strangers = sorted(set(options) - set(names))
    if strangers:
        raise ValueError(f"Options given for {', '.join(strangers)}, which are not among the methods asked for.")
    layers = [layers] if isinstance(layers, str) else layers
    explainers = []
    for name in names:
        method, settings = known[name], dict(options.get(name, {}))
        if "progress" in method.options and progress is not None:
            settings.setdefault("progress", progress)
        explainers.append(method.create(model, layers, **settings))
    p, outputs = run(model, x, target, explainers)
    return {
        name: out.value if isinstance(out.value, Result)
        else Result({"input": out.value}, p.logits, p.targets, seconds=out.seconds, pass_seconds=out.pass_seconds)
        for name, out in zip(names, outputs)
    }
