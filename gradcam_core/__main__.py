"""Command line: write explanation overlays for an image or a folder of images, e.g. for slides.

    python -m gradcam_core photo.jpg --model efficientnet_lite0 --method gradcam \
        --layers layer1,layer4 --target 243 -o out/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from . import CAM, GradCAM, GuidedBackprop, GuidedGradCAM, load_image, load_model, overlay, to_image
from .models import MODELS, Classifier

METHODS = ("gradcam", "cam", "guided-backprop", "guided-gradcam")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core",
        description="Write PNG overlays that show where a CNN looks when it decides.",
    )
    parser.add_argument("source", type=Path, help="an image file, or a folder whose images are all explained")
    parser.add_argument("--model", default="efficientnet_lite0", choices=MODELS,
                        help="the classifier (default: efficientnet_lite0, which needs no download)")
    parser.add_argument("--method", default="gradcam", choices=METHODS,
                        help="gradcam (any layer), cam (the GAP layer only), guided-backprop, or "
                             "guided-gradcam (default: gradcam)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer names (default: the model's stages, e.g. "
                             "layer1,layer2,layer3,layer4; for cam, the last one)")
    parser.add_argument("--target", default=None,
                        help="class index or exact class name, e.g. 243 or 'bull mastiff' "
                             "(default: each image's top-1 class)")
    parser.add_argument("--counterfactual", action="store_true",
                        help="Grad-CAM with negated gradients: the evidence against the class")
    parser.add_argument("--cmap", default="jet", help="matplotlib colormap of the overlays (default: jet)")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the map, 0 to 1 (default: 0.5)")
    parser.add_argument("-o", "--output", type=Path, default=Path("gradcam_out"),
                        help="folder for the PNG files (default: gradcam_out)")
    return parser.parse_args(argv)


def class_index(classifier: Classifier, target: str | None) -> int | None:
    """``None``, an index, or a class name (case-insensitive) -> a class index."""
    if target is None:
        return None
    if target.isdigit():
        index = int(target)
        if index >= len(classifier.categories):
            raise ValueError(
                f"Class {index} is out of range: {classifier.name} has {len(classifier.categories)} "
                f"classes (0 to {len(classifier.categories) - 1})."
            )
        return index
    names = [name.lower() for name in classifier.categories]
    if target.lower() not in names:
        raise ValueError(f"{classifier.name} has no class named {target!r}.")
    return names.index(target.lower())


def image_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
        return files
    if not source.is_file():
        raise ValueError(f"There is no file or folder at {source}.")
    return [source]


def explain(classifier: Classifier, path: Path, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Picture name (method, layer, class) -> RGB picture, for one image."""
    picture = np.asarray(load_image(path))
    x = classifier.preprocess(picture)
    target = class_index(classifier, args.target)
    if target is None:
        target = int(classifier.predict(x).argmax())
    label = classifier.categories[target].replace(" ", "-").replace("/", "-")
    layers = args.layers.split(",") if args.layers else None
    model = classifier.module
    if args.method == "guided-backprop":
        gradients = GuidedBackprop(model)(x, target)
        return {f"guided-backprop_{label}": to_image(gradients[0])}
    if args.method == "cam":
        result = CAM(model, layer=(layers or [classifier.cam_layer])[-1], fc=classifier.fc)(x, target)
    elif args.method == "gradcam":
        result = GradCAM(model, layers or classifier.stages, counterfactual=args.counterfactual)(x, target)
    else:
        result = GuidedGradCAM(model, layers or classifier.stages, counterfactual=args.counterfactual)(x, target)
        return {f"guided-gradcam_{name}_{label}": to_image(m[0]) for name, m in result.maps.items()}
    method = "counterfactual" if args.counterfactual and args.method == "gradcam" else args.method
    return {
        f"{method}_{name}_{label}": overlay(picture, m[0], cmap=args.cmap, alpha=args.alpha)
        for name, m in result.maps.items()
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        files = image_files(args.source)
        classifier = load_model(args.model)
        class_index(classifier, args.target)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in files:
        try:
            pictures = explain(classifier, path, args)
        except ValueError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failures += 1
            continue
        for name, picture in pictures.items():
            out = args.output / f"{path.stem}_{name}.png"
            Image.fromarray(picture).save(out)
            print(out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
