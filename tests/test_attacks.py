"""FGSM and PGD in pixel space: closed forms on a linear model, the budget, the flip, and a clean model."""

import math

import pytest
import torch
from torch import nn

import gradcam_core as gc
from gradcam_core import attacks, shapes

SIDE = 2
PIXELS = 3 * SIDE * SIDE


def linear_classifier(weight: torch.Tensor, bias: torch.Tensor, mean=(0.0,) * 3, std=(1.0,) * 3) -> gc.Classifier:
    """logits = weight @ flatten(x) + bias on 3x2x2 inputs: every gradient is known by hand."""
    module = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, len(bias)))
    with torch.no_grad():
        module[1].weight.copy_(weight)
        module[1].bias.copy_(bias)
    return gc.Classifier(name="linear", module=module.eval(), categories=[str(c) for c in range(len(bias))],
                         stages=["0"], cam_layer="0", fc="1", input_size=(SIDE, SIDE), mean=mean, std=std,
                         description="a linear classifier")


def two_class(margin: float) -> tuple[gc.Classifier, torch.Tensor, torch.Tensor]:
    """Class 0 wins on a grey picture by ``margin``; ``w0 - w1`` has L1 norm ``PIXELS``."""
    signs = torch.tensor([1.0, -1.0] * (PIXELS // 2))
    weight = torch.stack([signs / 2, -signs / 2])
    clf = linear_classifier(weight, torch.tensor([margin, 0.0]))
    return clf, torch.full((1, 3, SIDE, SIDE), 0.5), signs.view(1, 3, SIDE, SIDE)


def test_fgsm_steps_by_epsilon_against_the_sign_of_w0_minus_w1():
    clf, x, signs = two_class(margin=0.1)
    adversarial = attacks.fgsm(clf, x, label=0, epsilon=0.03)
    # d CE / dx = p1 (w1 - w0): every pixel moves by epsilon towards class 1
    torch.testing.assert_close(adversarial, x - 0.03 * signs)


@pytest.mark.parametrize("margin, flips", [(0.2, True), (0.4, False)])
def test_pgd_flips_exactly_when_the_budget_can_close_the_margin(margin, flips):
    """Within |delta| <= epsilon the logit gap falls by at most epsilon * ||w0 - w1||_1 = 0.03 * 12 = 0.36."""
    clf, x, _ = two_class(margin)
    adversarial = attacks.pgd(clf, x, label=0, epsilon=0.03, steps=10)
    assert bool(clf.predict(adversarial).argmax() != 0) == flips
    with torch.no_grad():
        gap = clf.module(adversarial)[0]
    torch.testing.assert_close(float(gap[0] - gap[1]), margin - 0.36, atol=1e-5, rtol=0)


def test_a_targeted_attack_reaches_the_target_not_just_another_class():
    weight = torch.zeros(3, PIXELS)
    weight[1, :] = 1.0   # class 1 rises with every pixel
    weight[2, :] = -1.0  # class 2 rises as pixels darken
    clf = linear_classifier(weight, torch.tensor([0.5, -6.0, 6.0]))  # on grey: 0.5, 0, 0
    x = torch.full((1, 3, SIDE, SIDE), 0.5)
    adversarial = attacks.pgd(clf, x, label=0, epsilon=0.2, steps=10, target_class=2)
    assert int(clf.predict(adversarial).argmax()) == 2
    assert (adversarial <= x).all()  # it darkened, the way towards class 2


def test_the_budget_holds_in_pixel_space_whatever_the_normalization():
    clf = gc.load_model("shapes_gap")
    batch = shapes.render(4, seed=11)
    for attack in (lambda: attacks.fgsm(clf, batch.images, batch.labels, epsilon=3 / 255),
                   lambda: attacks.pgd(clf, batch.images, batch.labels, epsilon=3 / 255, steps=5)):
        pixels = attacks.to_pixels(clf, attack())
        clean = attacks.to_pixels(clf, batch.images)
        assert (pixels - clean).abs().max() <= 3 / 255 + 1e-6
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_pixels_round_trip_through_the_normalization():
    clf = gc.load_model("shapes_gap", pretrained=False)
    x = shapes.render(1, seed=0).images
    torch.testing.assert_close(attacks.from_pixels(clf, attacks.to_pixels(clf, x)), x)


def test_stopping_at_the_flip_changes_less_and_still_flips():
    clf = gc.load_model("shapes_gap")
    batch = shapes.render(20, seed=12)
    full = attacks.pgd(clf, batch.images, batch.labels, epsilon=8 / 255, steps=10)
    early = attacks.pgd(clf, batch.images, batch.labels, epsilon=8 / 255, steps=10, stop_when_flipped=True)
    flipped = clf.predict(early).argmax(dim=1) != batch.labels
    assert flipped.float().mean() >= 0.9
    assert (flipped == (clf.predict(full).argmax(dim=1) != batch.labels)).all()
    clean = attacks.to_pixels(clf, batch.images)
    change = [(attacks.to_pixels(clf, a) - clean).abs().flatten(1).sum(dim=1) for a in (early, full)]
    assert (change[0] <= change[1] + 1e-4).all() and (change[0] < change[1]).any()


def test_each_sample_is_attacked_on_its_own():
    clf = gc.load_model("shapes_gap")
    batch = shapes.render(3, seed=13)
    together = attacks.pgd(clf, batch.images, batch.labels, epsilon=2 / 255, steps=3)
    alone = attacks.pgd(clf, batch.images[1:2], batch.labels[1:2], epsilon=2 / 255, steps=3)
    torch.testing.assert_close(together[1:2], alone)


def test_the_model_is_left_exactly_as_it_was():
    clf = gc.load_model("shapes_gap")
    clf.module.train()
    before = {k: v.clone() for k, v in clf.module.state_dict().items()}
    attacks.pgd(clf, shapes.render(2, seed=14).images, 0, epsilon=2 / 255, steps=2)
    assert clf.module.training and all(m.training for m in clf.module.modules())
    for key, value in clf.module.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm's running statistics included
    assert all(p.grad is None for p in clf.module.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in clf.module.modules())


def test_a_raising_progress_callback_stops_the_attack_and_leaves_no_hook():
    clf = gc.load_model("shapes_gap")
    calls = []

    def cancel(step, total):
        calls.append(step)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attacks.pgd(clf, shapes.render(1, seed=15).images, 0, steps=5, progress=cancel)
    assert calls == [1]
    assert not any(m._forward_hooks for m in clf.module.modules())


def test_bad_arguments_are_refused_with_a_reason():
    clf = gc.load_model("shapes_gap", pretrained=False)
    x = shapes.render(2, seed=0).images
    with pytest.raises(ValueError, match="epsilon >= 0 and steps >= 1"):
        attacks.pgd(clf, x, 0, steps=0)
    with pytest.raises(ValueError, match="one per sample"):
        attacks.pgd(clf, x, [0, 1, 2])


def test_attack_and_explain_gives_maps_before_and_after():
    clf = gc.load_model("shapes_gap")
    batch = shapes.render(6, seed=16)
    outcome = attacks.attack_and_explain(clf, batch.images, batch.labels, epsilon=6 / 255, steps=10,
                                         stop_when_flipped=True)
    assert outcome.adversarial.shape == batch.images.shape
    assert outcome.label_clean.shape == outcome.label_attacked.shape == outcome.new_attacked.shape == (6, 8, 8)
    assert torch.equal(outcome.new_classes, outcome.attacked_probabilities.argmax(dim=1))
    assert torch.equal(outcome.flipped, outcome.new_classes != batch.labels)
    # the clean map is Grad-CAM of the true class, as GradCAM itself gives it
    expected = gc.GradCAM(clf.module, ["layer4"])(batch.images, batch.labels).maps["layer4"]
    torch.testing.assert_close(outcome.label_clean, expected)
    correlations = outcome.label_correlations()
    assert len(correlations) == 6 and all(-1.0 <= r <= 1.0 for r in correlations if not math.isnan(r))
