"""Synthetic LiDAR scenes and vectorised pillarisation for ``pointpillars_lite``
(docs/problems.md, "pointpillars_lite").

A scene seen from a sensor at the origin: ground points at z = −1.78 ± 0.03 over the area, 1–5
cars (3.9 × 1.6 × 1.56 m scaled by U[0.92, 1.08], any yaw, centres ≥ 5 m apart) sampled on the
sides the sensor sees and the roof with clip(3000 / r^1.2, 30, 300) points at range r, and 2–6
distractors (poles, bushes, wall segments, and boxes that are not cars — crates and trailers —
sampled like cars). Each point is (x, y, z, reflectance). Boxes are (x, y, z, l, w, h,
yaw) with z the box centre.

Pillarisation: points → (ix, iy) cells of ``pillar`` metres; a stable argsort by cell id gives
each point its rank within the cell (its position minus the cell's first position); points of
rank ≥ N are dropped, and of the occupied cells the P with the most points are kept (ground-only
cells are the sparse ones). Point features (9): x, y, z, reflectance, offsets to the pillar's
mean (x, y, z) and to the pillar centre (x, y).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAR = np.array([3.9, 1.6, 1.56])
GROUND_Z = -1.78


@dataclass(frozen=True)
class PillarGrid:
    x_range: tuple[float, float] = (0.0, 25.6)
    y_range: tuple[float, float] = (-12.8, 12.8)
    pillar: float = 0.4
    max_pillars: int = 1200
    max_points: int = 16

    @property
    def cells(self) -> tuple[int, int]:
        return (
            int(round((self.x_range[1] - self.x_range[0]) / self.pillar)),
            int(round((self.y_range[1] - self.y_range[0]) / self.pillar)),
        )


def visible_faces(box) -> np.ndarray:
    """The faces of a yawed box a sensor at the origin sees: of the sides (0: +x, 1: −x, 2: +y,
    3: −y in the box frame) those whose outward normal points towards the sensor, and the roof (4;
    the sensor is above every roof)."""
    x, y, _, length, width, _, yaw = box
    c, s = np.cos(yaw), np.sin(yaw)
    normals = np.array([[c, s], [-c, -s], [-s, c], [s, -c]])
    half = np.array([length, length, width, width]) / 2
    centres = np.array([x, y]) + normals * half[:, None]
    facing = np.einsum("ij,ij->i", normals, -centres) > 0
    return np.append(np.flatnonzero(facing), 4)


def _box_points(rng, box, count: int) -> np.ndarray:
    """``count`` points on the visible sides and the roof of a yawed box, with 2 cm noise."""
    x, y, z, length, width, height, yaw = box
    faces = rng.choice(visible_faces(box), count)
    local = rng.uniform(-0.5, 0.5, (count, 3)) * np.array([length, width, height])
    local[faces == 0, 0], local[faces == 1, 0] = length / 2, -length / 2
    local[faces == 2, 1], local[faces == 3, 1] = width / 2, -width / 2
    local[faces == 4, 2] = height / 2
    c, s = np.cos(yaw), np.sin(yaw)
    world = np.stack(
        [x + c * local[:, 0] - s * local[:, 1], y + s * local[:, 0] + c * local[:, 1], z + local[:, 2]], 1
    )
    return world + rng.normal(0, 0.02, world.shape)


def points_at_range(x: float, y: float) -> int:
    """How many points a box at (x, y) returns: clip(3000 / r^1.2, 30, 300)."""
    return int(np.clip(3000 / max(np.hypot(x, y), 1.0) ** 1.2, 30, 300))


def _distractor(rng, grid: PillarGrid) -> np.ndarray:
    kind = rng.integers(0, 5)
    cx, cy = rng.uniform(*grid.x_range), rng.uniform(*grid.y_range)
    if kind >= 3:  # a box that is not a car: a small crate or a long trailer, sampled like a car
        size = (
            rng.uniform([0.8, 0.8, 0.8], [2.6, 1.8, 2.0])
            if kind == 3
            else rng.uniform([6, 2.2, 2.5], [9, 2.6, 3.5])
        )
        box = np.array([cx, cy, GROUND_Z + size[2] / 2, *size, rng.uniform(-np.pi, np.pi)])
        count = points_at_range(cx, cy)
        return np.column_stack([_box_points(rng, box, count), rng.uniform(0.3, 1.0, count)])
    if kind == 0:  # pole: a thin vertical cylinder
        n, angle = 60, rng.uniform(0, 2 * np.pi, 60)
        pts = np.stack([cx + 0.1 * np.cos(angle), cy + 0.1 * np.sin(angle), rng.uniform(GROUND_Z, 2.0, n)], 1)
    elif kind == 1:  # bush: a blob near the ground
        n = 120
        pts = np.array([cx, cy, GROUND_Z + 0.4]) + rng.normal(0, [0.5, 0.5, 0.25], (n, 3))
    else:  # wall segment: a vertical plane 3-8 m long
        n, heading, length = 200, rng.uniform(0, np.pi), rng.uniform(3, 8)
        t = rng.uniform(-0.5, 0.5, n) * length
        pts = np.stack([cx + t * np.cos(heading), cy + t * np.sin(heading), rng.uniform(GROUND_Z, 0.5, n)], 1)
    return np.column_stack([pts, rng.uniform(0.0, 0.4, len(pts))])


def scene(rng, grid: PillarGrid = PillarGrid()) -> tuple[np.ndarray, np.ndarray]:
    """One scene: points (M, 4) and car boxes (K, 7)."""
    (x0, x1), (y0, y1) = grid.x_range, grid.y_range
    boxes = []
    for _ in range(rng.integers(1, 6)):
        for _attempt in range(50):
            centre = np.array([rng.uniform(x0 + 3, x1 - 2), rng.uniform(y0 + 2, y1 - 2)])
            if all(np.hypot(*(centre - b[:2])) >= 5 for b in boxes):
                size = CAR * rng.uniform(0.92, 1.08)
                boxes.append(np.array([*centre, GROUND_Z + size[2] / 2, *size, rng.uniform(-np.pi, np.pi)]))
                break
    clouds = [
        np.column_stack(
            [
                rng.uniform(x0, x1, 2500),
                rng.uniform(y0, y1, 2500),
                rng.normal(GROUND_Z, 0.03, 2500),
                rng.uniform(0, 0.3, 2500),
            ]
        )
    ]
    for box in boxes:
        count = points_at_range(box[0], box[1])
        clouds.append(np.column_stack([_box_points(rng, box, count), rng.uniform(0.3, 1.0, count)]))
    clouds += [_distractor(rng, grid) for _ in range(rng.integers(2, 7))]
    return np.concatenate(clouds).astype(np.float32), np.array(boxes, np.float32).reshape(-1, 7)


def pillarise(points: np.ndarray, grid: PillarGrid) -> tuple[np.ndarray, np.ndarray]:
    """(features (P, N, 9) float32, zero-padded; cells (P,) int32 flat cell index x·W + y, −1 for
    an unused slot)."""
    nx, ny = grid.cells
    ix = np.floor((points[:, 0] - grid.x_range[0]) / grid.pillar).astype(np.int64)
    iy = np.floor((points[:, 1] - grid.y_range[0]) / grid.pillar).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    points, cell = points[inside], (ix * ny + iy)[inside]
    order = np.argsort(cell, kind="stable")
    points, cell = points[order], cell[order]
    ids, first, counts = np.unique(cell, return_index=True, return_counts=True)
    rank = np.arange(len(cell)) - np.repeat(first, counts)
    keep = rank < grid.max_points
    points, cell, rank = points[keep], cell[keep], rank[keep]
    counts = np.minimum(counts, grid.max_points)
    chosen = np.sort(np.argsort(-counts, kind="stable")[: grid.max_pillars])  # most points first
    slot = np.full(len(ids), -1)
    slot[chosen] = np.arange(len(chosen))
    pillar = slot[np.searchsorted(ids, cell)]
    used = pillar >= 0
    points, pillar, rank = points[used], pillar[used], rank[used]
    sums = np.zeros((grid.max_pillars, 3))
    np.add.at(sums, pillar, points[:, :3])
    mean = sums[pillar] / counts[chosen][pillar, None]
    cells = np.full(grid.max_pillars, -1, np.int32)
    cells[: len(chosen)] = ids[chosen]
    centre_x = (cells[pillar] // ny + 0.5) * grid.pillar + grid.x_range[0]
    centre_y = (cells[pillar] % ny + 0.5) * grid.pillar + grid.y_range[0]
    feats = np.column_stack([points, points[:, :3] - mean, points[:, 0] - centre_x, points[:, 1] - centre_y])
    features = np.zeros((grid.max_pillars, grid.max_points, 9), np.float32)
    features[pillar, rank] = feats
    return features, cells


def generate(count: int, seed: int, grid: PillarGrid = PillarGrid(), max_cars: int = 5):
    """``count`` pillarised scenes: features (S, P, N, 9), cells (S, P), boxes (S, max_cars, 7)
    and a validity mask (S, max_cars)."""
    rng = np.random.default_rng(seed)
    features = np.zeros((count, grid.max_pillars, grid.max_points, 9), np.float32)
    cells = np.zeros((count, grid.max_pillars), np.int32)
    boxes = np.zeros((count, max_cars, 7), np.float32)
    valid = np.zeros((count, max_cars), bool)
    for i in range(count):
        points, cars = scene(rng, grid)
        features[i], cells[i] = pillarise(points, grid)
        boxes[i, : len(cars)], valid[i, : len(cars)] = cars, True
    return features, cells, boxes, valid
