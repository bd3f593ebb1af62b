"""The pointpillars_lite problem: pillarisation against a loop, anchor targets and decoding round
trip (perfect predictions score AP 1), the scenes, and the centre-distance AP."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunax import problems
from prunax.problems import detection
from prunax.problems import pointpillars_lite as pp
from prunax.problems.pointpillars_lite import scenes as lidar_scenes

PILLARS = lidar_scenes.PillarGrid(pillar=0.8, max_pillars=64, max_points=4)


@pytest.fixture(scope="module")
def problem():
    return problems.get("pointpillars_lite", "test")


def test_protocol_on_the_test_size(problem):
    params, state = problem.init(jax.random.key(0))
    batch = next(problem.batches("train", jax.random.key(1), 4))
    assert batch["features"].shape == (4, 256, 16, 9) and batch["label"].shape == (4, 16, 16, 2)
    loss, (new_state, _) = jax.jit(problem.loss)(params, state, batch, jax.random.key(2))
    assert np.isfinite(float(loss))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    assert 0 <= problem.evaluate(params, state)["bev_ap"] <= 1
    for path, prunable in [
        ("block1/conv1/kernel", True),
        ("block3/conv2/kernel", True),
        ("pfn/kernel", False),
        ("head_box/kernel", False),
    ]:
        assert bool(re.search(problem.prunable, path)) == prunable, path
    assert {"filter", "channel", "pfn_unit"} <= set(problem.groups)


def _pillarise_loop(points, grid):
    """Per cell, its first N points in input order; the P cells with most points (ties: lower id)."""
    nx, ny = grid.cells
    members = {}
    for p in points:
        ix, iy = (
            int(np.floor((p[0] - grid.x_range[0]) / grid.pillar)),
            int(np.floor((p[1] - grid.y_range[0]) / grid.pillar)),
        )
        if 0 <= ix < nx and 0 <= iy < ny:
            members.setdefault(ix * ny + iy, []).append(p)
    cells = sorted(members, key=lambda c: (-min(len(members[c]), grid.max_points), c))[: grid.max_pillars]
    return {c: np.array(members[c][: grid.max_points]) for c in cells}


def test_vectorised_pillarisation_matches_a_loop():
    rng = np.random.default_rng(0)
    points = np.column_stack(
        [rng.uniform(-1, 27, 600), rng.normal(0, 4, 600), rng.normal(-1, 0.5, 600), rng.uniform(0, 1, 600)]
    ).astype(np.float32)
    features, cells = lidar_scenes.pillarise(points, PILLARS)
    expected = _pillarise_loop(points, PILLARS)
    assert sorted(c for c in cells if c >= 0) == sorted(expected)
    for slot, cell in enumerate(cells):
        if cell < 0:
            continue
        kept = expected[int(cell)]
        got = features[slot][: len(kept)]
        np.testing.assert_allclose(got[:, :4], kept, atol=1e-6)
        np.testing.assert_allclose(got[:, 4:7], kept[:, :3] - kept[:, :3].mean(0), atol=1e-5)
        centre = ((cell // PILLARS.cells[1] + 0.5) * 0.8, (cell % PILLARS.cells[1] + 0.5) * 0.8 - 12.8)
        np.testing.assert_allclose(got[:, 7:9], kept[:, :2] - centre, atol=1e-5)
        assert np.all(features[slot][len(kept) :] == 0)


def _perfect_outputs(label, residual, dirs):
    cls = np.where(label == 1, 20.0, -20.0).astype(np.float32)
    dir_logits = np.where(np.eye(2)[dirs] > 0, 10.0, -10.0).astype(np.float32)
    return jnp.asarray(cls), jnp.asarray(residual), jnp.asarray(dir_logits)


def test_perfect_predictions_decode_to_the_cars_and_score_ap_one():
    grid = lidar_scenes.PillarGrid()
    rng = np.random.default_rng(3)
    scenes = [lidar_scenes.scene(rng, grid)[1] for _ in range(6)]
    boxes = np.zeros((6, 5, 7), np.float32)
    valid = np.zeros((6, 5), bool)
    for i, cars in enumerate(scenes):
        boxes[i, : len(cars)], valid[i, : len(cars)] = cars, True
    anchor = pp.anchors(grid)
    label, residual, dirs = pp.targets(boxes, valid, anchor)
    # every positive anchor of a car decodes to exactly that car: keep only each car's best one
    centres, scores, decoded, kept = jax.vmap(lambda c, b, d: pp.decode(c, b, d, jnp.asarray(anchor)))(
        *_perfect_outputs(label, residual, dirs)
    )
    centres, decoded, kept = np.asarray(centres), np.asarray(decoded), np.asarray(kept)
    for i in range(6):
        got = decoded[i][kept[i]]
        want = boxes[i][valid[i]]
        assert len(got) == len(want)
        order_got, order_want = np.lexsort(got[:, :2].T), np.lexsort(want[:, :2].T)
        np.testing.assert_allclose(got[order_got][:, :6], want[order_want][:, :6], atol=1e-3)
        yaw_error = np.angle(np.exp(1j * (got[order_got][:, 6] - want[order_want][:, 6])))
        np.testing.assert_allclose(yaw_error, 0, atol=1e-3)
    assert detection.centre_distance_ap(centres, np.asarray(scores), kept, boxes[..., :2], valid) == 1.0


def test_scene_cars_are_apart_and_sampled_on_their_surfaces():
    rng = np.random.default_rng(7)
    points, cars = lidar_scenes.scene(rng)
    assert 1 <= len(cars) <= 5 and points.shape[1] == 4
    for a in range(len(cars)):
        for b in range(a):
            assert np.hypot(*(cars[a, :2] - cars[b, :2])) >= 5
    car_points = lidar_scenes._box_points(np.random.default_rng(0), cars[0], 500)
    c, s = np.cos(cars[0, 6]), np.sin(cars[0, 6])
    local = (car_points[:, :2] - cars[0, :2]) @ np.array([[c, -s], [s, c]])
    assert np.all(np.abs(local) <= cars[0, 3:5] / 2 + 0.1)
    on_surface = (
        (np.abs(np.abs(local[:, 0]) - cars[0, 3] / 2) < 0.1)
        | (np.abs(np.abs(local[:, 1]) - cars[0, 4] / 2) < 0.1)
        | (np.abs(car_points[:, 2] - cars[0, 2] - cars[0, 5] / 2) < 0.1)
    )
    assert on_surface.all()
    # self-occlusion: a box at +x seen head-on shows its −x face (towards the sensor), not its +x face
    ahead = np.array([10.0, 0.0, -1.0, 4.0, 2.0, 1.5, 0.0])
    assert sorted(lidar_scenes.visible_faces(ahead)) == [1, 4]
    beside = np.array([10.0, 5.0, -1.0, 4.0, 2.0, 1.5, 0.0])
    assert sorted(lidar_scenes.visible_faces(beside)) == [1, 3, 4]


def test_centre_distance_ap_by_hand():
    gt = np.array([[[0.0, 0.0], [10.0, 0.0]]])
    valid = np.array([[True, True]])
    det = np.array([[[0.3, 0.0], [10.0, 1.5], [20.0, 0.0]]])
    scores = np.array([[0.9, 0.8, 0.7]])
    kept = np.array([[True, True, True]])
    # thresholds 0.5, 1, 2: the second detection (1.5 m off) counts only at 2 m
    expected = np.mean([0.5, 0.5, 1.0])
    assert np.isclose(detection.centre_distance_ap(det, scores, kept, gt, valid), expected)
