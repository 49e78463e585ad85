"""gradcam_core.synthesis: activation maximization climbs its objective, is deterministic, leaves the model alone."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_no_hooks
from PIL import Image

import gradcam_core as gc
from gradcam_core import synthesis
from gradcam_core.evaluation import PRECOMPUTED


@pytest.fixture(scope="module")
def shapes_clf() -> gc.Classifier:
    return gc.load_model("shapes_gap")


def test_the_class_objective_climbs_far_above_the_noise_start(shapes_clf):
    start = synthesis.visualize(shapes_clf, target=2, steps=1)
    done = synthesis.visualize(shapes_clf, target=2, steps=40)
    before, after = (float(synthesis.objective_value(shapes_clf, p[None], target=2).detach()) for p in (start, done))
    assert after > before + 10.0
    assert int(shapes_clf.predict(gc.shapes.to_tensor((done * 255).round().byte().permute(1, 2, 0)[None].numpy()))
               .argmax()) == 2  # the picture is a 'triangle' to the network


def test_the_channel_objective_climbs_too(shapes_clf):
    start = synthesis.visualize(shapes_clf, layer="layer3", channel=10, steps=1)
    done = synthesis.visualize(shapes_clf, layer="layer3", channel=10, steps=40)
    values = [float(synthesis.objective_value(shapes_clf, p[None], layer="layer3", channel=10).detach())
              for p in (start, done)]
    assert values[1] > 5 * values[0] + 1.0  # measured: 0.007 -> 1.9


def test_pictures_are_in_pixel_space_of_the_asked_size_and_fixed_by_the_seed(shapes_clf):
    a = synthesis.visualize(shapes_clf, target=0, steps=3, seed=1)
    assert a.shape == (3, 64, 64) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, synthesis.visualize(shapes_clf, target=0, steps=3, seed=1))
    assert not torch.equal(a, synthesis.visualize(shapes_clf, target=0, steps=3, seed=2))
    assert synthesis.visualize(shapes_clf, target=0, steps=2, size=48).shape == (3, 48, 48)


def test_the_model_is_left_as_it_was():
    clf = gc.load_model("shapes_gap")
    clf.module.train()
    before = {k: v.clone() for k, v in clf.module.state_dict().items()}
    rng = torch.get_rng_state()
    synthesis.visualize(clf, layer="layer2", channel=1, steps=3)
    synthesis.visualize(clf, target=1, steps=3)
    assert clf.module.training and all(m.training for m in clf.module.modules())
    assert all(torch.equal(v, before[k]) for k, v in clf.module.state_dict().items())
    assert all(p.grad is None for p in clf.module.parameters())
    assert torch.equal(torch.get_rng_state(), rng)  # its randomness comes from its own generator
    assert_no_hooks(clf.module)


def test_a_raising_progress_callback_stops_it(shapes_clf):
    steps = []

    def cancel(step, total):
        steps.append(step)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesis.visualize(shapes_clf, target=0, steps=10, progress=cancel)
    assert steps == [1]
    assert_no_hooks(shapes_clf.module)


@pytest.mark.parametrize("kwargs, message", [
    ({}, "not both"), ({"target": 1, "layer": "layer2", "channel": 0}, "not both"),
    ({"target": 5}, "out of range"), ({"layer": "layer2"}, "channel"), ({"layer": "nope", "channel": 0}, "no layer"),
    ({"target": 0, "steps": 0}, "at least 1"),
])
def test_bad_requests_are_refused_with_a_reason(shapes_clf, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthesis.visualize(shapes_clf, **kwargs)


def test_a_channel_past_the_last_is_refused(shapes_clf):
    with pytest.raises(ValueError, match="has 32 channels"):
        synthesis.visualize(shapes_clf, layer="layer2", channel=32, steps=1)


def test_the_shipped_gallery_is_complete_and_its_class_pictures_are_recognized(efficientnet):
    index = json.loads((PRECOMPUTED / "synthesis" / "index.json").read_text())
    classes = [entry for entry in index if "target" in entry]
    assert len(classes) >= 12 and len(index) - len(classes) >= 6
    recognized = 0
    for entry in classes:
        picture = np.asarray(Image.open(PRECOMPUTED / "synthesis" / entry["file"]).convert("RGB"))
        assert picture.shape == (224, 224, 3)
        recognized += int(efficientnet.predict(efficientnet.preprocess(picture)).argmax()) == entry["target"]
    assert recognized == len(classes)  # each picture is its class to the network that made it
