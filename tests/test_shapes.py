"""The shapes lab: the generator, the shipped networks, training and evaluation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import gradcam_core as gc
from gradcam_core import metrics, shapes
from gradcam_core.metrics import box_from_mask, boxes_from_masks
from gradcam_core.shapes.__main__ import main

# Pictures no training, validation or evaluation run draws.
_FRESH_SEED = 3_000_003


# --- the generator -------------------------------------------------------------------------------


def test_generate_gives_model_ready_tensors():
    images, labels, masks = shapes.generate(10, seed=0)
    size = shapes.IMAGE_SIZE
    assert images.shape == (10, 3, size, size) and images.dtype == torch.float32
    assert labels.shape == (10,) and labels.dtype == torch.long
    assert masks.shape == (10, size, size) and masks.dtype == torch.bool


def test_generate_is_deterministic_for_a_seed():
    first, second = shapes.generate(6, seed=5), shapes.generate(6, seed=5)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], shapes.generate(6, seed=6)[0])


def test_each_picture_depends_only_on_seed_and_index():
    short, long = shapes.render(3, seed=9), shapes.render(8, seed=9)
    assert np.array_equal(short.pictures, long.pictures[:3])
    assert torch.equal(short.masks, long.masks[:3])


def test_every_class_is_present():
    for seed in (0, 1, 123):
        _, labels, _ = shapes.generate(len(shapes.CLASSES), seed)
        assert sorted(labels.tolist()) == list(range(len(shapes.CLASSES)))


def test_masks_are_non_empty_and_whole_inside_the_picture():
    _, _, masks = shapes.generate(50, seed=2)
    assert (masks.flatten(1).sum(dim=1) >= 50).all()  # the smallest object covers well over 50 pixels
    border = masks[:, 0, :] | masks[:, -1, :] | masks[:, :, 0] | masks[:, :, -1]
    assert not border.any()


def test_boxes_match_masks():
    batch = shapes.render(20, seed=3)
    _, _, masks, boxes = shapes.generate_with_boxes(20, seed=3)
    assert torch.equal(boxes, batch.boxes) and torch.equal(boxes, boxes_from_masks(masks))
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist()):
        assert box_from_mask(mask) == (x0, y0, x1, y1)
        inside = mask[y0:y1, x0:x1]
        assert inside.sum() == mask.sum()  # the box holds the whole object
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()  # tightly


def test_backgrounds_are_clutter_of_the_same_kind():
    backgrounds = shapes.render_backgrounds(4, seed=0)
    assert backgrounds.shape == (4, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 3) and backgrounds.dtype == np.uint8
    assert np.array_equal(backgrounds, shapes.render_backgrounds(4, seed=0))


def test_to_rgb_undoes_the_normalization():
    batch = shapes.render(4, seed=1)
    assert np.array_equal(shapes.to_rgb(batch.images), batch.pictures)
    assert np.array_equal(shapes.to_rgb(batch.images[0]), batch.pictures[0])


def test_a_picture_saved_as_png_preprocesses_to_the_generated_tensor():
    batch = shapes.render(2, seed=4)
    clf = gc.load_model("shapes_gap", pretrained=False)
    for picture, image in zip(batch.pictures, batch.images):
        png = io.BytesIO()
        Image.fromarray(picture).save(png, format="PNG")
        assert torch.allclose(clf.preprocess(png.getvalue())[0], image, atol=1e-6)


# --- the networks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh():
    return shapes.render(300, _FRESH_SEED)


@pytest.mark.parametrize("name", shapes.NETWORKS)
def test_shipped_weights_load_small_and_reach_their_accuracy(name, fresh):
    assert shapes.weights_file(name).stat().st_size < 2_000_000
    clf = gc.load_model(name)
    assert clf.categories == list(shapes.CLASSES)
    assert clf.stages == ["layer1", "layer2", "layer3", "layer4"] and clf.cam_layer == "layer4"
    assert clf.input_size == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
    assert not clf.module.training
    accuracy = (clf.predict(fresh.images).argmax(dim=1) == fresh.labels).float().mean().item()
    if name == "shapes_shuffled":  # trained on shuffled labels: chance is 20%
        assert accuracy <= 0.35
    else:
        assert accuracy >= 0.95


def test_the_networks_share_the_body():
    gap, *others = (gc.load_model(name, pretrained=False).module for name in shapes.NETWORKS)
    body = {k: v.shape for k, v in gap.state_dict().items() if k.startswith("layer")}
    for other in others:
        assert body == {k: v.shape for k, v in other.state_dict().items() if k.startswith("layer")}


def test_shuffled_labels_are_a_permutation_that_breaks_the_link_to_the_pictures():
    from gradcam_core.shapes.training import _training_set

    _, plain = _training_set(200, seed=4)
    _, shuffled = _training_set(200, seed=4, shuffle_labels=True)
    assert torch.equal(plain.sum(dim=0), shuffled.sum(dim=0))  # the same labels, as many of each
    agree = (plain[:200].argmax(dim=1) == shuffled[:200].argmax(dim=1)).float().mean().item()
    assert agree < 0.4  # about 1 in 5 by chance
    assert torch.equal(shuffled[200:], plain[200:])  # clutter alone stays all-negative


def test_the_shuffled_network_no_longer_finds_the_shape(fresh):
    located = {}
    for name in ("shapes_gap", "shapes_shuffled"):
        clf = gc.load_model(name)
        cam = gc.CAM(clf.module, clf.cam_layer, clf.fc)(fresh.images, fresh.labels).maps[clf.cam_layer]
        located[name] = metrics.pointing_game_hits(cam, fresh.masks).float().mean().item()
    assert located["shapes_gap"] >= 0.9 and located["shapes_shuffled"] <= 0.5


def test_cam_refuses_shapes_fc_and_says_why():
    clf = gc.load_model("shapes_fc")
    cam = gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)
    with pytest.raises(ValueError, match="flattens the feature maps") as refusal:
        cam(shapes.generate(1, seed=0)[0])
    assert "GradCAM" in str(refusal.value)


def test_cam_equals_grad_cam_at_the_last_layer_of_shapes_gap(fresh):
    clf = gc.load_model("shapes_gap")
    images, labels = fresh.images[:8], fresh.labels[:8]
    cam = gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)(images, target=labels).maps[clf.cam_layer]
    grad_cam = gc.GradCAM(clf.module, layers=[clf.cam_layer])(images, target=labels).maps[clf.cam_layer]
    assert cam.amax(dim=(1, 2)).gt(0).all()  # a real comparison, not zeros against zeros
    torch.testing.assert_close(gc.normalize(cam), gc.normalize(grad_cam), atol=1e-5, rtol=0)


def test_random_weights_touch_no_file(tmp_path):
    clf = shapes.load_shapes_model("shapes_fc", pretrained=False, weights_dir=tmp_path / "nowhere")
    assert clf.fc == "fc1" and "random" in clf.description


def test_missing_weights_say_how_to_make_them(tmp_path):
    with pytest.raises(gc.WeightsUnavailableError, match="gradcam_core.shapes train"):
        shapes.load_shapes_model("shapes_gap", weights_dir=tmp_path)


# --- training and evaluation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", shapes.NETWORKS)
def test_a_short_training_run_calls_back_after_each_epoch(name):
    calls, batches = [], []
    rng_state = torch.get_rng_state()

    def on_epoch(epoch, classifier, metrics):
        assert not classifier.module.training
        calls.append((epoch, classifier, dict(metrics)))

    clf = shapes.train(
        name,
        epochs=1,
        n_train=120,
        seed=1,
        n_validation=40,
        on_epoch=on_epoch,
        on_batch=lambda i, n: batches.append((i, n)),
    )
    assert [epoch for epoch, _, _ in calls] == [1] and calls[0][1] is clf
    assert {"loss", "accuracy", "pointing_game", "seconds"} <= calls[0][2].keys()
    assert 0.0 <= calls[0][2]["accuracy"] <= 1.0 and 0.0 <= calls[0][2]["pointing_game"] <= 1.0
    assert batches[-1][0] == batches[-1][1] == len(batches)
    assert not clf.module.training and clf.name == name
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global random state is left alone


def test_training_is_deterministic():
    first, second = (
        shapes.train("shapes_gap", epochs=1, n_train=60, seed=2, n_validation=10) for _ in range(2)
    )
    for (key, a), b in zip(first.module.state_dict().items(), second.module.state_dict().values()):
        assert torch.equal(a, b), key


def test_evaluation_table_lists_every_method_beside_the_baseline():
    batch = shapes.render(40, seed=_FRESH_SEED)
    evaluations = [shapes.evaluate_network(gc.load_model(name), batch) for name in shapes.NETWORKS]
    gap, fc, shuffled = evaluations
    assert shuffled.accuracy <= 0.4
    assert [(loc.method, loc.layer) for loc in gap.localizations] == [("CAM", "layer4")] + [
        ("Grad-CAM", layer) for layer in shapes.STAGES
    ]
    assert gap.localizations[0].refusal == "" and "flattens the feature maps" in fc.localizations[0].refusal
    table = shapes.markdown_table(evaluations, shapes.centre_baseline(batch), len(batch.labels))
    assert table.startswith("| network | accuracy |") and "refuses (1)" in table and "centre point" in table


def test_the_command_line_explains_itself(capsys):
    for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--epochs" in capsys.readouterr().out
