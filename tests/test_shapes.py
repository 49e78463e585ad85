"""The shapes lab: the generator, the shipped networks, training and evaluation."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

import gradcam_core as gc
from gradcam_core import metrics, shapes
from gradcam_core.metrics import box_from_mask, boxes_from_masks
from gradcam_core.shapes.__main__ import TRAINABLE, main

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


#: Each shipped network's accuracy on fresh plain pictures: (at least, at most), as the README reports it
#: (with a margin). The biased networks are measured on tagged pictures below.
ACCURACY = {
    "shapes_gap": (0.95, 1.0),
    "shapes_fc": (0.95, 1.0),
    "shapes_gmp": (0.95, 1.0),
    "shapes_shuffled": (0.0, 0.35),  # trained on shuffled labels: chance is 20%
    "shapes_gap_early": (0.65, 0.92),  # after epoch 4 of 12: about 80%
}


@pytest.mark.parametrize("name", shapes.NETWORKS)
def test_shipped_weights_load_small_and_reach_their_accuracy(name, fresh):
    assert shapes.weights_file(name).stat().st_size < 2_000_000
    clf = gc.load_model(name)
    assert clf.categories == list(shapes.CLASSES)
    assert clf.stages == ["layer1", "layer2", "layer3", "layer4"] and clf.cam_layer == "layer4"
    assert clf.input_size == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE)
    assert not clf.module.training
    if name in shapes.BIASES:
        return
    low, high = ACCURACY[name]
    accuracy = (clf.predict(fresh.images).argmax(dim=1) == fresh.labels).float().mean().item()
    assert low <= accuracy <= high


@pytest.fixture(scope="module")
def tagged():
    """Fresh pictures tagged like the biased training set, and fairly (tag by chance)."""
    return {bias: shapes.render_biased(300, _FRESH_SEED, bias) for bias in (0.95, shapes.CHANCE_BIAS)}


def test_the_biased_network_scores_well_on_its_own_kind_of_data_only(tagged):
    like, fair = (shapes.evaluate_bias(gc.load_model("shapes_biased"), tagged[b], "") for b in (0.95, shapes.CHANCE_BIAS))
    assert like.accuracy >= 0.9 and fair.accuracy <= 0.4
    assert fair.follows_cue >= 0.85  # a tag that lies wins
    assert fair.pointing_cue >= 0.65 and fair.pointing_object <= 0.15  # and Grad-CAM points at it


def test_the_debiased_network_ignores_the_tag(tagged):
    like, fair = (shapes.evaluate_bias(gc.load_model("shapes_debiased"), tagged[b], "") for b in (0.95, shapes.CHANCE_BIAS))
    assert like.accuracy >= 0.93 and fair.accuracy >= 0.93
    assert fair.follows_cue <= 0.05
    assert fair.pointing_object >= 0.75 and fair.mass_on_object >= 5 * fair.mass_on_cue


def test_the_bias_table_names_each_row_and_the_uniform_levels(tagged):
    rows = [shapes.evaluate_bias(gc.load_model("shapes_debiased"), tagged[0.95], "like training")]
    table = shapes.bias_table(rows, tagged[0.95])
    assert "| shapes_debiased | like training |" in table and "A uniform map would put 1.6%" in table


def test_cam_applies_to_the_max_pooling_head_and_is_sum_of_weighted_maps(fresh):
    clf = gc.load_model("shapes_gmp")
    assert isinstance(clf.module.maxpool, torch.nn.AdaptiveMaxPool2d) and clf.fc == "fc"
    images, labels = fresh.images[:6], fresh.labels[:6]
    result = gc.CAM(clf.module, layer=clf.cam_layer, fc=clf.fc)(images, target=labels)
    a = result.activations[clf.cam_layer]
    expected = torch.einsum("nk,nkhw->nhw", clf.module.fc.weight[labels].detach(), a).clamp(min=0)
    torch.testing.assert_close(result.maps[clf.cam_layer], expected)
    # and the head CAM checked is the max: fc(GMP(A)) is the model's output
    torch.testing.assert_close(clf.module.fc(a.amax(dim=(2, 3))), result.logits)


def test_average_pooling_covers_more_of_the_shape_than_max_pooling(fresh):
    """CAM's paper: GAP's map spans the object, GMP's its most telling part."""
    gap, gmp = (shapes.evaluate_network(gc.load_model(name), fresh).localizations[0] for name in ("shapes_gap", "shapes_gmp"))
    assert gap.coverage >= gmp.coverage + 0.08  # measured: 89% against 75% of the object
    assert gap.box_iou_tight > gmp.box_iou_tight


def test_the_early_checkpoint_localizes_worse_than_the_finished_network(fresh):
    early, done = (shapes.evaluate_network(gc.load_model(name), fresh) for name in ("shapes_gap_early", "shapes_gap"))
    assert early.accuracy < done.accuracy - 0.05
    assert early.localizations[0].pointing_game < done.localizations[0].pointing_game


def test_the_networks_share_the_body():
    gap, *others = (gc.load_model(name, pretrained=False).module for name in shapes.NETWORKS)
    body = {k: v.shape for k, v in gap.state_dict().items() if k.startswith("layer")}
    for other in others:
        assert body == {k: v.shape for k, v in other.state_dict().items() if k.startswith("layer")}


def test_shuffled_labels_are_a_permutation_that_breaks_the_link_to_the_pictures():
    from gradcam_core.shapes.training import _training_set

    _, plain = _training_set("shapes_gap", 200, seed=4)
    _, shuffled = _training_set("shapes_shuffled", 200, seed=4)
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


@pytest.mark.parametrize("name", TRAINABLE)
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
    gap, fc, shuffled = (evaluations[shapes.NETWORKS.index(name)] for name in ("shapes_gap", "shapes_fc", "shapes_shuffled"))
    assert shuffled.accuracy <= 0.4
    assert [(loc.method, loc.layer) for loc in gap.localizations] == [("CAM", "layer4")] + [
        ("Grad-CAM", layer) for layer in shapes.STAGES
    ]
    assert gap.localizations[0].refusal == "" and "flattens the feature maps" in fc.localizations[0].refusal
    table = shapes.markdown_table(evaluations, shapes.centre_baseline(batch), len(batch.labels))
    assert table.startswith("| network | accuracy |") and "refuses (1)" in table and "centre point" in table
    assert "| mask IoU (50% threshold) | object covered (same region) | mass on the object |" in table


def test_the_command_line_explains_itself(capsys):
    for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--epochs" in capsys.readouterr().out


def test_the_early_checkpoint_cannot_be_trained_on_its_own():
    with pytest.raises(ValueError, match="shapes_gap after epoch 4"):
        shapes.train("shapes_gap_early", epochs=1, n_train=10)


def test_training_shapes_gap_also_saves_its_early_checkpoint(tmp_path, capsys):
    assert main(["train", "--networks", "shapes_gap", "--epochs", str(shapes.EARLY_EPOCH), "--train-size", "30",
                 "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"shapes_gap.pt", "shapes_gap_early.pt"}
    early = shapes.load_shapes_model("shapes_gap_early", weights_dir=tmp_path)
    done = shapes.load_shapes_model("shapes_gap", weights_dir=tmp_path)
    # the last epoch is the early one here, so the two files hold the same weights
    for a, b in zip(early.module.state_dict().values(), done.module.state_dict().values()):
        assert torch.equal(a, b)
    assert "wrote" in capsys.readouterr().out


# --- the biased variant --------------------------------------------------------------------------


def test_the_tag_agrees_with_the_class_as_often_as_bias_says():
    for bias in (0.0, 0.5, 0.95, 1.0):
        batch = shapes.render_biased(2000, seed=5, bias=bias)
        assert abs(batch.agrees.float().mean().item() - bias) <= 0.035  # about 3.5 binomial standard errors


def test_the_fair_set_makes_tag_and_class_independent():
    batch = shapes.render_biased(2500, seed=6, bias=shapes.CHANCE_BIAS)
    counts = torch.zeros(len(shapes.CLASSES), len(shapes.CLASSES))
    counts.index_put_((batch.labels, batch.cues), torch.ones(len(batch.labels)), accumulate=True)
    expected = counts.sum(dim=1, keepdim=True) * counts.sum(dim=0, keepdim=True) / counts.sum()
    chi_square = ((counts - expected) ** 2 / expected).sum().item()
    assert chi_square < 40.0  # 16 degrees of freedom: 40 is far in the tail of independence


def test_the_tag_is_an_exact_square_apart_from_the_object_and_shows_its_class_pattern():
    batch = shapes.render_biased(300, seed=7, bias=0.5)
    plain = shapes.render(300, seed=7)
    for picture, mask, cue_mask, cue, plain_picture in zip(batch.pictures, batch.masks, batch.cue_masks, batch.cues,
                                                           plain.pictures):
        rows, columns = cue_mask.nonzero(as_tuple=True)
        assert cue_mask.sum() == shapes.CUE_SIZE**2
        assert rows.max() - rows.min() == columns.max() - columns.min() == shapes.CUE_SIZE - 1
        assert not (cue_mask & mask).any()
        # white where the class's pattern is set, black elsewhere, under the pixel noise
        pattern = torch.from_numpy(list(shapes.CUE_PATTERNS.values())[int(cue)])
        values = torch.from_numpy(picture)[cue_mask].float().mean(dim=1).view(shapes.CUE_SIZE, shapes.CUE_SIZE)
        assert values[pattern].min() > 200 and values[~pattern].max() < 55
        # and the rest of the picture is the plain picture, pixel for pixel
        assert np.array_equal(picture[~cue_mask.numpy()], plain_picture[~cue_mask.numpy()])


def test_the_five_tag_patterns_differ():
    patterns = [torch.from_numpy(p) for p in shapes.CUE_PATTERNS.values()]
    assert len(patterns) == len(shapes.CLASSES)
    for i, a in enumerate(patterns):
        assert 0.2 <= a.float().mean() <= 0.8
        for b in patterns[i + 1:]:
            assert (a != b).float().mean() >= 0.25


def test_generate_biased_returns_model_ready_tensors():
    images, labels, masks, cue_masks = shapes.generate_biased(4, seed=0)
    assert images.shape == (4, 3, 64, 64) and labels.shape == (4,)
    assert masks.shape == cue_masks.shape == (4, 64, 64) and cue_masks.dtype == torch.bool


@pytest.mark.parametrize("bias", [-0.1, 1.5])
def test_a_bias_outside_zero_one_is_refused(bias):
    with pytest.raises(ValueError, match="probability"):
        shapes.render_biased(1, seed=0, bias=bias)


# --- two objects ---------------------------------------------------------------------------------


def test_two_object_pictures_hold_two_classes_with_disjoint_masks():
    images, labels, masks = shapes.generate(60, seed=9, objects=2)
    assert images.shape == (60, 3, 64, 64) and labels.shape == (60, 2) and masks.shape == (60, 2, 64, 64)
    assert (labels[:, 0] != labels[:, 1]).all() and (labels[:, 0] == (9 + torch.arange(60)) % 5).all()
    assert not (masks[:, 0] & masks[:, 1]).any() and masks.flatten(2).any(dim=2).all()
    batch = shapes.render_pairs(60, seed=9)
    assert batch.boxes.shape == (60, 2, 4)
    assert torch.equal(batch.boxes[:, 1], boxes_from_masks(batch.masks[:, 1]))


def test_cam_tells_the_two_objects_apart():
    batch = shapes.render_pairs(100, seed=10)
    clf = gc.load_model("shapes_gap")
    cam = gc.CAM(clf.module, clf.cam_layer, clf.fc)
    for k in (0, 1):
        maps = cam(batch.images, target=batch.labels[:, k]).maps[clf.cam_layer]
        assert metrics.pointing_game_hits(maps, batch.masks[:, k]).float().mean() >= 0.85
        assert metrics.pointing_game_hits(maps, batch.masks[:, 1 - k]).float().mean() <= 0.05


def test_one_or_two_objects_only():
    with pytest.raises(ValueError, match="one or two objects"):
        shapes.generate(1, seed=0, objects=3)
