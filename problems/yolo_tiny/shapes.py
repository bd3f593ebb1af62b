"""Synthetic detection images for ``yolo_tiny`` (docs/problems.md, "yolo_tiny"), generated from a seed.

Each RGB image has a background of a random colour plus a random linear gradient plus N(0, 0.04²)
pixel noise, and 1–4 objects: an ellipse, an axis-aligned rectangle or an upward isosceles triangle
(classes 0, 1, 2), each 12–56 px wide and tall (scaled with the image side from 128 px), of a random
colour at least 0.3 away from the background's; objects are placed so that every pair of boxes has
IoU < 0.2 (later objects are drawn on top). Boxes are tight (x1, y1, x2, y2) in pixels.
"""

from __future__ import annotations

import numpy as np

from ..detection import box_iou

CLASSES = ("ellipse", "rectangle", "triangle")
MAX_OBJECTS = 4


def _paint(image, kind: int, box, colour, grid_x, grid_y) -> None:
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if kind == 0:
        inside = ((grid_x - cx) / (w / 2)) ** 2 + ((grid_y - cy) / (h / 2)) ** 2 <= 1
    elif kind == 1:
        inside = (grid_x >= x1) & (grid_x <= x2) & (grid_y >= y1) & (grid_y <= y2)
    else:
        depth = (grid_y - y1) / h
        inside = (depth >= 0) & (depth <= 1) & (np.abs(grid_x - cx) <= depth * w / 2)
    image[inside] = colour


def generate(count: int, seed: int, side: int = 128):
    """``(images (N, side, side, 3) float32 in ~[0, 1], boxes (N, 4, 4) float32, labels (N, 4)
    int32 with −1 for no object)``."""
    if count < 1 or side < 32:
        raise ValueError(f"need count >= 1 and side >= 32, got count={count}, side={side}")
    rng = np.random.default_rng(seed)
    scale = side / 128
    grid_y, grid_x = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    images = np.empty((count, side, side, 3), np.float32)
    boxes = np.zeros((count, MAX_OBJECTS, 4), np.float32)
    labels = np.full((count, MAX_OBJECTS), -1, np.int32)
    for i in range(count):
        background = rng.uniform(0.1, 0.9, 3)
        slope = rng.uniform(-0.3, 0.3, (2, 3)) / side
        image = background + grid_x[..., None] * slope[0] + grid_y[..., None] * slope[1]
        placed = []
        for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
            for _attempt in range(20):
                w, h = rng.uniform(12, 56, 2) * scale
                x1, y1 = rng.uniform(0, side - w), rng.uniform(0, side - h)
                box = np.array([x1, y1, x1 + w, y1 + h], np.float32)
                if not placed or box_iou(box, np.array(placed)).max() < 0.2:
                    break
            else:
                continue
            colour = rng.uniform(0, 1, 3)
            while np.linalg.norm(colour - background) < 0.3:
                colour = rng.uniform(0, 1, 3)
            kind = int(rng.integers(0, len(CLASSES)))
            _paint(image, kind, box, colour, grid_x, grid_y)
            boxes[i, len(placed)], labels[i, len(placed)] = box, kind
            placed.append(box)
        images[i] = image + rng.normal(0, 0.04, image.shape)
    return images, boxes, labels
