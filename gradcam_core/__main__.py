"""Command line: write explanation pictures for an image or a folder of images, e.g. for slides.

    python -m gradcam_core photo.jpg --model efficientnet_lite0 --method grad_cam \
        --layers layer1,layer4 --target 243 -o out/

Every method of :data:`gradcam_core.METHODS` is offered by its name. Measure every method:

    python -m gradcam_core evaluate --model shapes_gap --methods all --n 500

explain with a network of one's own, a torchvision or timm architecture and its saved state dict:

    python -m gradcam_core photo.jpg --model torchvision:resnet18 --weights ckpt.pth --categories names.txt -o out/

run the sanity check of Adebayo et al. on one image:

    python -m gradcam_core sanity assets/images/cat_dog.png --methods grad_cam,saliency,guided_backprop

attack a model with PGD, measuring whether Grad-CAM still finds the original class:

    python -m gradcam_core attack --model shapes_gap --n 500 --epsilons 1,2

and synthesize the pictures that excite classes or channels the most (activation maximization):

    python -m gradcam_core synthesize --classes goldfish,flamingo --channels layer4:652 --out gallery/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import (
    METHODS,
    Saliency,
    attacks,
    evaluation,
    explain,
    load_image,
    load_model,
    methods_for,
    metrics,
    overlay,
    sanity,
    synthesis,
    to_image,
)
from .maps import heat_image
from .models import MODELS, Classifier

#: Earlier names of some methods, still accepted.
ALIASES = {"gradcam": "grad_cam", "guided-backprop": "guided_backprop", "guided-gradcam": "guided_grad_cam"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core",
        description="Write PNG overlays that show where a CNN looks when it decides. "
        "`python -m gradcam_core evaluate --help` measures every method instead, "
        "`python -m gradcam_core sanity --help` runs the sanity check, "
        "`python -m gradcam_core attack --help` the adversarial attack.",
    )
    parser.add_argument("source", type=Path, help="an image file, or a folder whose images are all explained")
    add_model_arguments(parser, "efficientnet_lite0", " (default: efficientnet_lite0, which needs no download)")
    parser.add_argument("--method", default="grad_cam", choices=[*METHODS, *ALIASES], metavar="METHOD",
                        help=f"one of: {', '.join(METHODS)} (default: grad_cam)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated layer names (default: the model's stages, e.g. "
                             "layer1,layer2,layer3,layer4; CAM explains the last one)")
    parser.add_argument("--target", default=None,
                        help="class index or exact class name, e.g. 243 or 'bull mastiff' "
                             "(default: each image's top-1 class)")
    parser.add_argument("--counterfactual", action="store_true",
                        help="grad_cam and guided_grad_cam with negated gradients: the evidence against the class")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="forward passes per batch of score_cam, ablation_cam and occlusion (default: 32)")
    parser.add_argument("--window", type=int, default=32, help="occlusion's square, in pixels (default: 32)")
    parser.add_argument("--stride", type=int, default=16, help="occlusion's step, in pixels (default: 16)")
    parser.add_argument("--cmap", default="jet", help="matplotlib colormap of the overlays (default: jet)")
    parser.add_argument("--alpha", type=float, default=0.5, help="opacity of the map, 0 to 1 (default: 0.5)")
    parser.add_argument("-o", "--output", type=Path, default=Path("gradcam_out"),
                        help="folder for the PNG files (default: gradcam_out)")
    return parser.parse_args(argv)


def add_model_arguments(parser: argparse.ArgumentParser, default: str, note: str = "") -> None:
    """``--model`` (a lesson model, or ``torchvision:<name>`` / ``timm:<name>``), ``--weights`` and
    ``--categories``; :func:`gradcam_core.load_model` checks them and says what is wrong."""
    parser.add_argument("--model", default=default, metavar="MODEL",
                        help=f"one of {', '.join(MODELS)}, or an architecture as torchvision:<name> (e.g. "
                             "torchvision:resnet50) or timm:<name> (e.g. timm:convnext_tiny)"
                             + (note or f" (default: {default})"))
    parser.add_argument("--weights", type=Path, default=None,
                        help="a torchvision or timm architecture's weights: a file saved with "
                             "torch.save(model.state_dict(), path) (without it: random weights, unless the "
                             "pretrained ones are already cached; nothing is downloaded)")
    parser.add_argument("--categories", type=Path, default=None,
                        help="a text file of class names, one a line, for a torchvision or timm architecture "
                             "(default: ImageNet's for 1000 classes, else class 0, class 1, ...)")


def model_from_args(args: argparse.Namespace) -> Classifier:
    """The classifier ``--model``, ``--weights`` and ``--categories`` name (``ValueError`` when they do not fit)."""
    keywords = {key: value for key in ("weights", "categories") if (value := getattr(args, key)) is not None}
    return load_model(args.model, **keywords)


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


def method_options(name: str, classifier: Classifier, args: argparse.Namespace) -> dict[str, object]:
    """The command line's settings (and the classifier's head, for CAM) that the method takes."""
    given = {"counterfactual": args.counterfactual, "batch_size": args.batch_size, "window": args.window,
             "stride": args.stride, "fc": classifier.fc}
    return {key: value for key, value in given.items() if key in METHODS[name].options}


def explain_image(classifier: Classifier, path: Path, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Picture name (method, layer, class) -> RGB picture, for one image."""
    picture = np.asarray(load_image(path))
    x = classifier.preprocess(picture)
    target = class_index(classifier, args.target)
    if target is None:
        target = int(classifier.predict(x).argmax())
    label = classifier.categories[target].replace(" ", "-").replace("/", "-")
    name = ALIASES.get(args.method, args.method)
    layers = args.layers.split(",") if args.layers else classifier.stages
    result = explain(classifier.module, x, target, layers, [name], {name: method_options(name, classifier, args)})[name]
    stem = "counterfactual" if args.counterfactual and "counterfactual" in METHODS[name].options else name
    pictures = {}
    for layer, m in result.maps.items():
        where = "" if layer == "input" else f"_{layer}"
        if m.dim() == 4:  # a pixel-space picture (N, 3, H, W)
            shown = heat_image(Saliency.strength(m[0])) if name == "saliency" else to_image(m[0])
        else:  # a map; occlusion's negative drops (evidence against) are cut, as every CAM's ReLU does
            shown = overlay(picture, m[0].clamp(min=0), cmap=args.cmap, alpha=args.alpha)
        pictures[f"{stem}{where}_{label}"] = shown
    return pictures


def parse_evaluate_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core evaluate",
        description="Measure every method on one model and print one Markdown table: localization where "
        "the truth is known (the shapes networks), faithfulness everywhere (deletion, insertion, Average Drop, "
        "Increase in Confidence, rank correlation with occlusion), and the time per image.",
    )
    add_model_arguments(parser, "shapes_gap")
    parser.add_argument("--methods", default="all",
                        help=f"'all' (every method that explains the model), or a comma-separated list of: "
                             f"{', '.join(METHODS)} (default: all)")
    parser.add_argument("--n", type=int, default=500,
                        help="held-out pictures for a shapes network (default: 500); other models use the "
                             "sample photos in assets/images")
    parser.add_argument("--steps", type=int, default=100, help="deletion and insertion steps (default: 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores to this JSON file")
    return parser.parse_args(argv)


def evaluate_main(argv: list[str]) -> int:
    args = parse_evaluate_args(argv)
    methods = [] if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not (methods or args.methods == "all"):
        print(f"error: unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}.",
              file=sys.stderr)
        return 2
    try:
        classifier = model_from_args(args)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    methods = methods or list(methods_for(classifier.module))
    data = evaluation.evaluation_set(classifier, n=args.n)
    rows = evaluation.evaluate(classifier, data, methods, batch_size=args.batch_size, steps=args.steps,
                               progress=evaluation.stderr_progress)
    print(f"{classifier.description}; {data.description}; layer methods at {classifier.cam_layer}.\n")
    print(evaluation.markdown_table(rows, located=data.masks is not None))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": args.model, "description": data.description, "layer": classifier.cam_layer,
                  "located": data.masks is not None, "rows": evaluation.as_records(rows)}
        args.json.write_text(json.dumps(record, indent=1))
    return 0


def sanity_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core sanity",
        description="The cascading model randomization test (Adebayo et al. 2018) on one image: re-initialize the "
        "classifier, then each stage from the top down, and print how similar each method's map stays to the "
        "original (Spearman of |map|, SSIM, HOG correlation).",
    )
    parser.add_argument("image", type=Path, help="the image to explain")
    add_model_arguments(parser, "efficientnet_lite0")
    parser.add_argument("--methods", default="grad_cam,saliency,guided_backprop",
                        help="comma-separated method names, or all (default: grad_cam,saliency,guided_backprop)")
    parser.add_argument("--target", default=None, help="class index or name (default: the top-1 class)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the new weights (default: 0)")
    parser.add_argument("--figure", type=Path, default=None,
                        help="also write the figure of the paper's Figure 2 to this PNG: each method's map (absolute "
                             "values) at every step, and the Spearman curves")
    args = parser.parse_args(argv)
    methods = [] if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        if any(m not in METHODS for m in methods) or not (methods or args.methods == "all"):
            raise ValueError(f"choose methods from {', '.join(METHODS)}.")
        classifier = model_from_args(args)
        methods = methods or list(methods_for(classifier.module))
        x = classifier.preprocess(args.image)
        target = class_index(classifier, args.target)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    layers = [classifier.fc, *reversed(classifier.stages)]
    print(f"{classifier.description}; {args.image.name}; layer methods at {classifier.cam_layer}; "
          f"randomized from the top: {', '.join(layers)}.\n")
    print("| method | measure | " + " | ".join(["original", *(f"to {layer}" for layer in layers)]) + " |")
    print("|---|---|" + "---:|" * (len(layers) + 1))
    checks = []
    for method in methods:
        options = {"fc": classifier.fc} if method == "cam" else None
        check = sanity.cascading_randomization(classifier.module, x, target, method, layers, classifier.cam_layer,
                                               seed=args.seed, options=options)
        checks.append(check)
        for measure in ("spearman_abs", "ssim", "hog"):
            values = " | ".join(f"{v:.2f}" for v in check.similarity[measure])
            print(f"| {METHODS[method].label} | {sanity.MEASURES[measure]} | {values} |", flush=True)
    if args.figure is not None:
        sanity_figure(checks, np.asarray(load_image(args.image).resize(x.shape[-1:-3:-1]))).savefig(args.figure, dpi=110)
        print(f"\nwrote {args.figure}")
    return 0


def sanity_figure(checks: list[sanity.Randomization], rgb: np.ndarray):
    """Adebayo et al.'s Figure 2 for these checks: a row of maps a method (absolute values, each scaled to
    its own 99th percentile and clipped, as the paper shows them), one column a step, and the Spearman
    curves below."""
    from matplotlib.figure import (
        Figure,  # only the figure option draws; the rest of the CLI never needs it
    )

    steps = checks[0].steps
    columns = len(steps) + 1
    figure = Figure(figsize=(1.6 * columns, 1.6 * len(checks) + 3.2), layout="constrained")
    rows = figure.subfigures(2, 1, height_ratios=[1.6 * len(checks), 3.2])
    grid = rows[0].subplots(len(checks), columns, squeeze=False)
    for row, check in zip(grid, checks):
        row[0].imshow(rgb)
        row[0].set_ylabel(METHODS[check.method].label, rotation=0, ha="right", va="center", fontsize=8)
        for axis, m in zip(row[1:], check.maps):
            magnitude = m[0].abs()
            scaled = magnitude / torch.quantile(magnitude, 0.99).clamp(min=1e-12)
            axis.imshow(scaled.numpy(), cmap="gray", vmin=0, vmax=1)
    for axis in grid.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    for axis, step in zip(grid[0, 1:], steps):
        axis.set_title(step.split(" + ")[-1] if step != "original" else step, fontsize=8)
    grid[0, 0].set_title("picture", fontsize=8)
    curves = rows[1].subplots()
    for check in checks:
        curves.plot(range(len(steps)), check.similarity["spearman_abs"], marker="o", label=METHODS[check.method].label)
    curves.set_xticks(range(len(steps)), ["original", *(f"to {s.split(' + ')[-1]}" for s in steps[1:])], fontsize=8)
    curves.set_ylabel("Spearman of |map|\nwith the original")
    curves.axhline(0, color="grey", linewidth=0.5)
    curves.legend(fontsize=7, ncols=2)
    return figure


def attack_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core attack",
        description="Attack a model with PGD (L-infinity, in pixel space) away from each picture's class (the true "
        "class of held-out shapes pictures, the top-1 of the sample photos), and print one Markdown table: how often "
        "the prediction flips (of the pictures classified right before), and, over the pictures that flipped, how "
        "well the original class's Grad-CAM map survives (its correlation with the map before the attack) and on "
        "shapes the pointing game of the original and of the new class.",
    )
    parser.add_argument("--model", default="efficientnet_lite0", choices=MODELS)
    parser.add_argument("--n", type=int, default=500, help="held-out pictures for a shapes network (default: 500)")
    parser.add_argument("--epsilons", default="1,2", help="budgets in levels of 255, comma-separated (default: 1,2)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default: 10)")
    args = parser.parse_args(argv)
    try:
        epsilons = [int(e) for e in args.epsilons.split(",")]
        classifier = load_model(args.model)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = evaluation.evaluation_set(classifier, n=args.n)
    located = data.masks is not None
    print(f"{classifier.description}; {data.description}; PGD, {args.steps} steps; "
          f"Grad-CAM at {classifier.cam_layer}.\n")
    header = ["budget", "PGD runs", "right before", "flipped", "of those flipped: the original class's map, "
              "correlation before/after (median)", "its map erased"]
    if located:
        header += ["pointing game, original class: before", "after", "new class, after"]
    print("| " + " | ".join(header) + " |")
    print("|---|---|" + "---:|" * (len(header) - 2))
    for levels in epsilons:
        for stop in (True, False):
            outcome = _attack_in_chunks(classifier, data, levels, args.steps, stop)
            right = outcome.clean_probabilities.argmax(dim=1) == outcome.labels
            flipped = right & outcome.flipped
            correlations = np.array(outcome.label_correlations())[flipped.numpy()]
            row = [f"{levels}/255", "until it flips" if stop else "all steps", str(int(right.sum())),
                   f"{flipped.sum().item() / max(1, right.sum().item()):.1%}",
                   f"{np.nanmedian(correlations):.2f}" if not np.isnan(correlations).all() else "-",
                   f"{np.isnan(correlations).mean():.1%}" if len(correlations) else "-"]
            if located:
                row += [f"{metrics.pointing_game_hits(m[flipped], data.masks[flipped]).float().mean().item():.1%}"
                        if flipped.any() else "-"
                        for m in (outcome.label_clean, outcome.label_attacked, outcome.new_attacked)]
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


def _attack_in_chunks(classifier: Classifier, data: evaluation.EvaluationSet, levels: int, steps: int,
                      stop: bool, chunk: int = 100) -> attacks.AttackOutcome:
    """attacks.attack_and_explain over ``data`` a chunk at a time, the outcomes joined."""
    outcomes = [attacks.attack_and_explain(classifier, data.images[i:i + chunk], data.targets[i:i + chunk],
                                           epsilon=levels / 255, steps=steps, stop_when_flipped=stop)
                for i in range(0, len(data.images), chunk)]
    return attacks.AttackOutcome(*(torch.cat([getattr(o, field) for o in outcomes])
                                   for field in attacks.AttackOutcome.__dataclass_fields__))


#: The gallery the "What a unit wants to see" page opens with: recognizable classes, and the layer4
#: channel most active on each of six sample photos.
GALLERY_CLASSES = ("goldfish,flamingo,ladybug,monarch,peacock,zebra,jellyfish,strawberry,lemon,pizza,volcano,"
                   "bull mastiff")
GALLERY_CHANNELS = "layer4:652,layer4:287,layer4:1213,layer4:684,layer4:1004,layer4:363"


def synthesize_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core synthesize",
        description="Activation maximization: for each class and each layer:channel, the picture that excites it "
        "the most (Fourier parameterization, decorrelated colours, transformation robustness). Writes one PNG "
        "each, and adds them to index.json (which the dashboard reads) as each is done.",
    )
    parser.add_argument("--model", default="efficientnet_lite0", choices=MODELS)
    parser.add_argument("--classes", default=GALLERY_CLASSES, help="comma-separated class names or indices")
    parser.add_argument("--channels", default=GALLERY_CHANNELS, help="comma-separated layer:channel pairs")
    parser.add_argument("--steps", type=int, default=synthesis.DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=evaluation.PRECOMPUTED / "synthesis")
    args = parser.parse_args(argv)
    try:
        classifier = load_model(args.model)
        targets = [class_index(classifier, name.strip()) for name in args.classes.split(",") if name.strip()]
        units = []
        for pair in (p.strip() for p in args.channels.split(",") if p.strip()):
            layer, _, channel = pair.rpartition(":")
            if not layer or not channel.isdigit():
                raise ValueError(f"{pair!r} is not layer:channel, e.g. layer4:652.")
            units.append((layer, int(channel)))
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    index_file = args.out / "index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else []
    jobs = [({"target": t}, f"class {t} ({classifier.categories[t]})", f"{args.model}_class{t}.png") for t in targets]
    jobs += [({"layer": layer, "channel": c}, f"{layer} channel {c}", f"{args.model}_{layer}_channel{c}.png")
             for layer, c in units]
    for objective, label, filename in jobs:
        start = time.perf_counter()
        try:
            picture = synthesis.visualize(classifier, steps=args.steps, seed=args.seed, **objective)
        except ValueError as error:
            print(f"error: {label}: {error}", file=sys.stderr)
            return 2
        seconds = time.perf_counter() - start
        Image.fromarray((picture * 255).round().byte().permute(1, 2, 0).numpy()).save(args.out / filename)
        index = [entry for entry in index if entry.get("file") != filename]  # a picture made again replaces its entry
        index.append({"model": args.model, **objective, "steps": args.steps, "seed": args.seed, "file": filename,
                      "seconds": round(seconds, 1)})
        index_file.write_text(json.dumps(index, indent=1) + "\n")
        print(f"{label}: {args.out / filename} ({seconds:.1f} s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["synthesize"]:
        return synthesize_main(argv[1:])
    if argv[:1] == ["evaluate"]:
        return evaluate_main(argv[1:])
    if argv[:1] == ["sanity"]:
        return sanity_main(argv[1:])
    if argv[:1] == ["attack"]:
        return attack_main(argv[1:])
    args = parse_args(argv)
    try:
        files = image_files(args.source)
        classifier = model_from_args(args)
        class_index(classifier, args.target)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in files:
        try:
            pictures = explain_image(classifier, path, args)
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
