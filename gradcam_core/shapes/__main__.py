"""``python -m gradcam_core.shapes {train,evaluate}``: train the shapes networks, or score them."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..classifier import Classifier
from .data import CHANCE_BIAS, render, render_biased
from .evaluation import (
    EVALUATION_SEED,
    bias_table,
    centre_baseline,
    evaluate_bias,
    evaluate_network,
    markdown_table,
)
from .networks import NETWORKS, TRANSFORMERS, load_shapes_model, weights_file
from .training import BIASES, EARLY_EPOCH, VALIDATION_SEED, VIT_EPOCHS, train

# Every network but shapes_gap_early, which is a checkpoint of shapes_gap's run; the ViT too.
TRAINABLE = (*(name for name in NETWORKS if name != "shapes_gap_early"), *TRANSFORMERS)

# The command line trains longer than the dashboard's one-minute default, for the shipped weights.
_CLI_EPOCHS = 12
_CLI_TRAIN_SIZE = 4000


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    return _evaluate(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradcam_core.shapes",
        description="The shapes lab: train the shapes networks from scratch, or measure how "
        "well CAM and Grad-CAM localize the objects of held-out pictures.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    training = commands.add_parser(
        "train",
        help="train the shapes networks from scratch and save their weights",
        description="Train the networks from scratch, deterministically (same seed, same machine, "
        "same weights), printing held-out accuracy and the pointing game after each epoch, and "
        "save each state dict as NAME.pt. Each takes about a minute on two CPU cores.",
    )
    training.add_argument(
        "--networks",
        nargs="+",
        choices=TRAINABLE,
        default=[name for name in TRAINABLE if name not in TRANSFORMERS],
        help="which to train (default: all the CNNs; shapes_vit only when named, it takes about nine minutes); "
        f"training shapes_gap also saves shapes_gap_early, its state after epoch {EARLY_EPOCH}",
    )
    training.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"passes over the training pictures (default: {_CLI_EPOCHS}; {VIT_EPOCHS} for shapes_vit, which "
        "sees new pictures every epoch)",
    )
    training.add_argument(
        "--train-size",
        type=int,
        default=_CLI_TRAIN_SIZE,
        help=f"training pictures with an object (default: {_CLI_TRAIN_SIZE})",
    )
    training.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds pictures, initial weights and batch order; below 10**6 (default: 0)",
    )
    training.add_argument(
        "--out",
        type=Path,
        default=weights_file(NETWORKS[0]).parent,
        help="where to write the weights (default: assets/models)",
    )

    evaluation = commands.add_parser(
        "evaluate",
        help="print accuracy and localization as a Markdown table, then the biased networks' table",
        description="Score every network on held-out pictures: accuracy; the pointing game, the "
        "Grad-CAM paper's box IoU > 0.5 rate (boxes at its 15% threshold, and at 50%), mask IoU, the share "
        "of the object covered and of the map's mass on it, for CAM at the last stage (where it applies) and "
        "for Grad-CAM at every stage, explaining the true class, beside a centre-point / centre-box baseline. "
        "Then the biased-data networks on tagged pictures: accuracy, how often a lying tag wins, and where "
        "Grad-CAM for the predicted class looks (the tag or the object).",
    )
    evaluation.add_argument("--n", type=int, default=1000, help="held-out pictures (default: 1000)")
    evaluation.add_argument(
        "--seed",
        type=int,
        default=EVALUATION_SEED,
        help=f"seed of the held-out pictures (default: {EVALUATION_SEED}, apart from training's)",
    )
    evaluation.add_argument(
        "--weights", type=Path, default=None, help="directory holding NAME.pt (default: assets/models)"
    )
    return parser


def _train(args: argparse.Namespace) -> int:
    if not 0 <= args.seed < VALIDATION_SEED:
        sys.exit(
            f"--seed must be in [0, {VALIDATION_SEED}) to keep training apart from the held-out pictures."
        )
    args.out.mkdir(parents=True, exist_ok=True)
    total_start = time.perf_counter()
    for name in args.networks:

        epochs = args.epochs or (VIT_EPOCHS if name in TRANSFORMERS else _CLI_EPOCHS)

        def report(epoch: int, classifier: Classifier, metrics: dict[str, float], name: str = name) -> None:
            print(
                f"{name} epoch {epoch:2d}/{epochs}: loss {metrics['loss']:.4f}, held-out accuracy "
                f"{100 * metrics['accuracy']:.1f}%, pointing game {100 * metrics['pointing_game']:.1f}% "
                f"({metrics['seconds']:.1f} s)",
                flush=True,
            )
            if name == "shapes_gap" and epoch == EARLY_EPOCH:
                _save("shapes_gap_early", classifier, args.out)

        classifier = train(name, epochs=epochs, n_train=args.train_size, seed=args.seed, on_epoch=report)
        _save(name, classifier, args.out)
        if name == "shapes_gap" and epochs < EARLY_EPOCH:
            print(f"shapes_gap_early not written: it is shapes_gap after epoch {EARLY_EPOCH}, and this run had "
                  f"{epochs}.", flush=True)
    print(f"trained {', '.join(args.networks)} in {time.perf_counter() - total_start:.1f} s")
    return 0


def _save(name: str, classifier: Classifier, directory: Path) -> None:
    path = weights_file(name, directory)
    torch.save(classifier.module.state_dict(), path)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


def _evaluate(args: argparse.Namespace) -> int:
    batch = render(args.n, args.seed)
    evaluations = [
        evaluate_network(load_shapes_model(name, weights_dir=args.weights), batch)
        for name in (*NETWORKS, *TRANSFORMERS)
    ]
    print(markdown_table(evaluations, centre_baseline(batch), args.n))
    test_sets = {f"tagged like its training set ({BIASES['shapes_biased']:.0%})": BIASES["shapes_biased"],
                 "fair (tag by chance)": CHANCE_BIAS}
    tagged = {name: render_biased(args.n, args.seed, bias) for name, bias in test_sets.items()}
    rows = [evaluate_bias(load_shapes_model(network, weights_dir=args.weights), batch, name)
            for network in BIASES for name, batch in tagged.items()]
    print()
    print(bias_table(rows, next(iter(tagged.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
