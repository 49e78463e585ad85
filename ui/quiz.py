"""The class-discrimination quiz of the Grad-CAM paper (Section 5.1), as plain data: questions and scores.

A question shows one picture with two objects of different classes and one method's visualization
of ONE of them; the student says which. The paper asked 43 people on PASCAL VOC pictures: with
Guided Backprop they named the right class 44.44% of the time, with Guided Grad-CAM 61.23%
(16.79 points more), because Guided Backprop's picture is nearly the same for both classes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PAPER", "QUESTIONS", "Question", "draw_question", "quiz_methods", "scores"]

#: The paper's share of right answers per method (Selvaraju et al., Section 5.1), in percent.
PAPER = {"guided_backprop": 44.44, "guided_grad_cam": 61.23}
#: Questions in one round, after which the paper's result is shown.
QUESTIONS = 10
# One question in this many is on the two-animal photo, the others on two-shape pictures.
_PHOTO_EVERY = 4
# Pictures with two shapes are drawn from seeds from here on, apart from every other seed in use.
_PAIR_SEEDS = 5_000_000


@dataclass(frozen=True)
class Question:
    """One question: which picture, which method, and which of the picture's two classes is shown.

    ``source`` is ``"shapes"`` (a :func:`~gradcam_core.shapes.render_pairs` picture of ``seed``,
    explained by the shapes GAP network) or ``"photo"`` (the bulldog-and-cat photo).
    """

    number: int
    source: str
    seed: int
    method: str
    shown: int  # 0 or 1: which of the picture's two classes the visualization explains


def quiz_methods(methods: dict[str, object]) -> list[str]:
    """The methods a quiz draws from: the paper's two and Grad-CAM, then every other class-specific
    method of the registry (``methods``: name -> its ``Method`` entry)."""
    first = ["guided_backprop", "guided_grad_cam", "grad_cam"]
    return first + [name for name, method in methods.items() if name not in first and method.class_specific]


def draw_question(number: int, session: str, methods: Sequence[str], photo_methods: Sequence[str]) -> Question:
    """Question ``number`` (from 0) of a round, fixed by ``session``: every ``_PHOTO_EVERY``-th is on the photo
    with one of ``photo_methods`` (the fast ones), drawn at random; the others on a fresh two-shape picture,
    Guided Backprop and Guided Grad-CAM first (the paper's two), then the other ``methods`` in an order
    shuffled for the session, so that a round of ten meets eight methods on shapes."""
    rng = random.Random(f"{session}:{number}")
    order = list(methods)
    random.Random(session).shuffle(order)
    order = [m for m in ("guided_backprop", "guided_grad_cam") if m in order] + \
        [m for m in order if m not in ("guided_backprop", "guided_grad_cam")]
    if number % _PHOTO_EVERY == _PHOTO_EVERY - 1:
        return Question(number, "photo", 0, rng.choice(list(photo_methods)), rng.randrange(2))
    return Question(number, "shapes", _PAIR_SEEDS + rng.randrange(1_000_000), order[number % len(order)],
                    rng.randrange(2))


def scores(answers: Iterable[tuple[str, bool]]) -> dict[str, tuple[int, int]]:
    """``(method, right)`` pairs -> method -> (right answers, questions), in order of first appearance.

    Example:
        >>> scores([("grad_cam", True), ("guided_backprop", False), ("grad_cam", True)])
        {'grad_cam': (2, 2), 'guided_backprop': (0, 1)}
    """
    out: dict[str, tuple[int, int]] = {}
    for method, right in answers:
        done, total = out.get(method, (0, 0))
        out[method] = (done + int(right), total + 1)
    return out
