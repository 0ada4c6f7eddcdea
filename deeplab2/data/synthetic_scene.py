"""Synthetic street scenes in Cityscapes' encodings, drawn with NumPy and PIL.

The one scene generator of the package: the demo dataset writes these
scenes as a raw Cityscapes tree (`synthetic_cityscapes`), and the benchmarks
derive their inputs, network outputs and evaluation pairs from them
(`deeplab2.benchmarks.scenes`). Kept free of TensorFlow.

Stuff follows a street layout (sky, buildings and trees above a varying
horizon, sidewalks and a road below); things are cars, persons and bicycles
whose size follows their distance, drawn far to near so that nearer objects
occlude farther ones. Some scenes hold a crowd (pixels of a thing class
without an instance number, as Cityscapes marks groups) and void pixels (an
ego-vehicle strip, an unlabeled corner). Each class has its own colour and
texture, varied a little per instance, so a small network can learn them.
"""

import dataclasses
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw

# Cityscapes labelIds (cityscapesscripts.helpers.labels).
UNLABELED, EGO_VEHICLE = 0, 1
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = 7, 8, 11, 21, 23
PERSON, CAR, BICYCLE = 24, 26, 33
THING_LABEL_IDS = (PERSON, CAR, BICYCLE)
INSTANCE_MULTIPLIER = 1000  # Cityscapes instanceIds = labelId * 1000 + k.

_SPLIT_CODES = {'train': 0, 'val': 1}

_BASE_COLORS = {
    ROAD: (88, 88, 96),
    SIDEWALK: (178, 148, 160),
    BUILDING: (150, 118, 92),
    VEGETATION: (58, 128, 44),
    SKY: (118, 168, 228),
    PERSON: (205, 32, 62),
    CAR: (28, 42, 150),
    BICYCLE: (236, 188, 28),
    EGO_VEHICLE: (36, 30, 26),
    UNLABELED: (12, 12, 12),
}


@dataclasses.dataclass
class _Canvas:
    """The image and its two label maps, painted in place, back to front."""
    rng: np.random.Generator
    height: int
    width: int

    def __post_init__(self):
        self.label_ids = np.zeros((self.height, self.width), np.uint8)
        self.instance_ids = np.zeros((self.height, self.width), np.uint16)
        self.rgb = np.zeros((self.height, self.width, 3), np.float32)
        self.instance_counts = {label: 0 for label in THING_LABEL_IDS}

    def new_instance_id(self, label_id: int) -> int:
        k = self.instance_counts[label_id]
        self.instance_counts[label_id] += 1
        return label_id * INSTANCE_MULTIPLIER + k

    def mask(self, draw_fn: Callable[[ImageDraw.ImageDraw], None]
             ) -> np.ndarray:
        image = Image.new('L', (self.width, self.height), 0)
        draw_fn(ImageDraw.Draw(image))
        return np.asarray(image) > 0

    def paint(self, mask: np.ndarray, label_id: int, instance_id: int,
              color, texture: Optional[np.ndarray] = None):
        """Paints `mask` with a colour (3,) or colour map (H, W, 3)."""
        # Only the mask's bounding box is touched: things are small next to
        # the frame, and full-frame indexing dominated large scenes.
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        if not rows.size:
            return
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        mask = mask[box]
        self.label_ids[box][mask] = label_id
        self.instance_ids[box][mask] = instance_id
        color = np.broadcast_to(np.asarray(color, np.float32),
                                self.rgb.shape)
        rgb = self.rgb[box]
        rgb[mask] = color[box][mask]
        if texture is not None:
            rgb[mask] += texture[box][mask][:, None]


def _smooth_noise(rng, height, width, cell, amplitude):
    """Low-frequency noise in [-amplitude, amplitude], shape (H, W)."""
    grid = rng.uniform(-1, 1, (height // cell + 2, width // cell + 2))
    image = Image.fromarray(grid.astype(np.float32), mode='F')
    image = image.resize((width + 2 * cell, height + 2 * cell),
                         Image.BILINEAR)
    return amplitude * np.asarray(image)[cell:cell + height,
                                         cell:cell + width]


def _jitter(rng, color, amount):
    return np.clip(np.asarray(color, np.float32)
                   + rng.uniform(-amount, amount, 3), 0, 255)


def _draw_sky(canvas, horizon):
    rows = np.arange(canvas.height, dtype=np.float32)[:, None, None]
    fade = np.clip(rows / max(horizon, 1), 0, 1)  # lighter near horizon
    color = np.asarray(_BASE_COLORS[SKY], np.float32) + 40 * fade
    color = np.broadcast_to(color, (canvas.height, canvas.width, 3))
    canvas.paint(np.ones((canvas.height, canvas.width), bool), SKY, SKY,
                 color)


def _draw_skyline(canvas, horizon):
    """Buildings with windows and trees, standing on the horizon."""
    rng, width = canvas.rng, canvas.width
    x = int(rng.integers(-40, 0))
    while x < width:
        block_width = int(rng.integers(width // 10, width // 4))
        top = int(horizon - rng.uniform(0.3, 0.95) * horizon)
        if rng.uniform() < 0.3:
            _draw_tree(canvas, x, block_width, top, horizon)
        else:
            _draw_building(canvas, x, block_width, top, horizon)
        x += block_width - int(rng.integers(0, 12))


def _draw_building(canvas, x, block_width, top, bottom):
    rng = canvas.rng
    mask = canvas.mask(lambda d: d.rectangle(
        [x, top, x + block_width - 1, bottom + 2], fill=1))
    color = _jitter(rng, _BASE_COLORS[BUILDING], 18)
    rows = np.arange(canvas.height)[:, None]
    cols = np.arange(canvas.width)[None, :]
    step_y, step_x = int(rng.integers(12, 20)), int(rng.integers(12, 22))
    windows = (((rows - top) % step_y) > step_y // 2) & (
        ((cols - x) % step_x) > step_x // 2) & (rows < bottom - 6)
    colors = np.broadcast_to(color, canvas.rgb.shape).copy()
    colors[windows] = color * 0.45
    canvas.paint(mask, BUILDING, BUILDING, colors)


def _draw_tree(canvas, x, block_width, top, bottom):
    rng = canvas.rng
    trunk_x = x + block_width // 2

    def draw(d):
        d.rectangle([trunk_x - 3, (top + bottom) // 2, trunk_x + 3,
                     bottom + 2], fill=1)
        for _ in range(4):
            cx = trunk_x + rng.uniform(-0.3, 0.3) * block_width
            cy = top + rng.uniform(0.15, 0.45) * (bottom - top)
            r = rng.uniform(0.25, 0.4) * block_width
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)

    mask = canvas.mask(draw)
    texture = _smooth_noise(rng, canvas.height, canvas.width, 6, 22)
    canvas.paint(mask, VEGETATION, VEGETATION,
                 _jitter(rng, _BASE_COLORS[VEGETATION], 10), texture)


def _draw_ground(canvas, horizon, vanishing_x):
    """Sidewalk everywhere below the horizon, then the road's trapezoid."""
    rng, height, width = canvas.rng, canvas.height, canvas.width
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    below = np.broadcast_to(rows >= horizon, (height, width))
    tiles = ((rows % 14) < 2) | (((cols + rows // 3) % 22) < 2)
    colors = np.broadcast_to(np.asarray(_BASE_COLORS[SIDEWALK], np.float32),
                             (height, width, 3)).copy()
    colors[np.broadcast_to(tiles, (height, width))] *= 0.8
    canvas.paint(below, SIDEWALK, SIDEWALK, colors)

    left = -rng.uniform(0.0, 0.25) * width
    right = width * (1 + rng.uniform(0.0, 0.25))
    top_half = rng.uniform(0.02, 0.06) * width
    polygon = [(vanishing_x - top_half, horizon), (vanishing_x + top_half,
                                                   horizon),
               (right, height), (left, height)]
    road = canvas.mask(lambda d: d.polygon(polygon, fill=1))
    colors = np.broadcast_to(np.asarray(_BASE_COLORS[ROAD], np.float32),
                             (height, width, 3)).copy()
    # A dashed centre line, thicker near the camera.
    depth = np.clip((rows - horizon) / max(height - horizon, 1), 0, 1)
    centre_x = vanishing_x + depth * ((left + right) / 2 - vanishing_x)
    line = (np.abs(cols - centre_x) < 1 + 3 * depth) & (
        (rows // 10) % 2 == 0)
    colors[line] = (200, 200, 190)
    canvas.paint(road, ROAD, ROAD, colors)


def _scale_at(y_bottom, horizon, height):
    """Apparent size of an object standing at row `y_bottom`, relative to
    its size at the bottom of a 256-row image."""
    depth = (y_bottom - horizon) / max(height - horizon, 1)
    return (0.15 + 0.85 * depth) * height / 256


def _draw_car(canvas, cx, y_bottom, scale, instance_id):
    rng = canvas.rng
    w = 190 * scale * rng.uniform(0.8, 1.15)
    h = w * rng.uniform(0.45, 0.55)
    x0, x1, y0 = cx - w / 2, cx + w / 2, y_bottom - h
    wheel_r = h * 0.2
    body_top = y0 + h * 0.4

    def body(d):
        d.rounded_rectangle([x0, body_top, x1, y_bottom - wheel_r * 0.6],
                            radius=max(1, h * 0.12), fill=1)
        d.rounded_rectangle([x0 + w * 0.18, y0, x1 - w * 0.15,
                             body_top + 2], radius=max(1, h * 0.12), fill=1)
        for wx in (x0 + w * 0.2, x1 - w * 0.2):
            d.ellipse([wx - wheel_r, y_bottom - 2 * wheel_r, wx + wheel_r,
                       y_bottom], fill=1)

    def windows(d):
        d.rectangle([x0 + w * 0.23, y0 + h * 0.08, x1 - w * 0.2,
                     body_top - h * 0.02], fill=1)

    def wheels(d):
        for wx in (x0 + w * 0.2, x1 - w * 0.2):
            d.ellipse([wx - wheel_r, y_bottom - 2 * wheel_r, wx + wheel_r,
                       y_bottom], fill=1)

    color = _jitter(rng, _BASE_COLORS[CAR], 25)
    canvas.paint(canvas.mask(body), CAR, instance_id, color)
    canvas.paint(canvas.mask(windows), CAR, instance_id,
                 _jitter(rng, (150, 188, 210), 10))
    canvas.paint(canvas.mask(wheels), CAR, instance_id, (22, 22, 24))


def _draw_person(canvas, cx, y_bottom, scale, instance_id):
    rng = canvas.rng
    h = 120 * scale * rng.uniform(0.85, 1.15)
    w = h * rng.uniform(0.24, 0.32)
    head_r = h * 0.09
    neck = y_bottom - h + 2 * head_r
    hip = y_bottom - h * 0.45

    def torso(d):
        d.rounded_rectangle([cx - w / 2, neck, cx + w / 2, hip],
                            radius=max(1, w * 0.3), fill=1)

    def legs(d):
        leg = max(2.0, w * 0.22)
        d.rectangle([cx - w * 0.4, hip - 1, cx - w * 0.4 + leg, y_bottom],
                    fill=1)
        d.rectangle([cx + w * 0.4 - leg, hip - 1, cx + w * 0.4, y_bottom],
                    fill=1)

    def head(d):
        d.ellipse([cx - head_r, neck - 2 * head_r, cx + head_r, neck + 1],
                  fill=1)

    canvas.paint(canvas.mask(legs), PERSON, instance_id,
                 _jitter(rng, (92, 22, 42), 12))
    canvas.paint(canvas.mask(torso), PERSON, instance_id,
                 _jitter(rng, _BASE_COLORS[PERSON], 20))
    canvas.paint(canvas.mask(head), PERSON, instance_id,
                 _jitter(rng, (228, 182, 150), 10))


def _draw_bicycle(canvas, cx, y_bottom, scale, instance_id):
    rng = canvas.rng
    w = 110 * scale * rng.uniform(0.85, 1.15)
    r = w * 0.24
    line = max(2, int(round(w * 0.05)))
    back, front = (cx - w / 2 + r, y_bottom - r), (cx + w / 2 - r,
                                                   y_bottom - r)
    seat = (cx - w * 0.08, y_bottom - 2.3 * r)
    bar = (cx + w * 0.22, y_bottom - 2.4 * r)

    def draw(d):
        for wx, wy in (back, front):
            d.ellipse([wx - r, wy - r, wx + r, wy + r], outline=1,
                      width=line)
        d.line([back, seat, front, bar, seat], fill=1, width=line)
        d.line([back, (cx, y_bottom - r * 0.9), seat], fill=1, width=line)
        d.line([bar, (bar[0] + w * 0.06, bar[1] - line)], fill=1,
               width=line)

    canvas.paint(canvas.mask(draw), BICYCLE, instance_id,
                 _jitter(rng, _BASE_COLORS[BICYCLE], 18))


_THING_DRAWERS = {CAR: _draw_car, PERSON: _draw_person,
                  BICYCLE: _draw_bicycle}


def _plan_things(rng, horizon, height, width, ground_bottom,
                 num_things: Optional[int]):
    """(y_bottom, cx, label_id, is_crowd) of every thing, far to near."""
    span = ground_bottom - horizon

    def row(low, high):  # A row between two fractions of the ground.
        return float(horizon + span * rng.uniform(low, high))

    things = []
    # The demo's draw comes first either way, so its scenes do not change.
    count = int(rng.integers(3, 9))
    for _ in range(count if num_things is None else num_things):
        label_id = int(rng.choice(THING_LABEL_IDS, p=[0.4, 0.4, 0.2]))
        things.append((row(0.1, 1.0), float(rng.uniform(0, width)), label_id,
                       False))
    # A touching pair: a person or bicycle just in front of a car.
    y_car, x_car = row(0.2, 0.85), float(rng.uniform(0.15, 0.85) * width)
    things.append((y_car, x_car, CAR, False))
    scale = _scale_at(y_car, horizon, height)
    things.append((min(y_car + 8 * scale, ground_bottom),
                   x_car + rng.uniform(-60, 60) * scale,
                   int(rng.choice((PERSON, BICYCLE))), False))
    if rng.uniform() < 0.6:  # A crowd: several shapes sharing one id.
        label_id = int(rng.choice((PERSON, CAR)))
        y_crowd = row(0.08, 0.35)
        x_crowd = float(rng.uniform(0.1, 0.9) * width)
        scale = _scale_at(y_crowd, horizon, height)
        for j in range(int(rng.integers(3, 6))):
            things.append((y_crowd + rng.uniform(0, 8) * scale,
                           x_crowd + j * rng.uniform(20, 40) * scale,
                           label_id, True))
    return sorted(things)


def _draw_things(canvas, horizon, ground_bottom, num_things):
    rng = canvas.rng
    for y_bottom, cx, label_id, is_crowd in _plan_things(
            rng, horizon, canvas.height, canvas.width, ground_bottom,
            num_things):
        instance_id = label_id if is_crowd else canvas.new_instance_id(
            label_id)
        scale = _scale_at(y_bottom, horizon, canvas.height)
        _THING_DRAWERS[label_id](canvas, cx, y_bottom, scale, instance_id)


def _draw_void(canvas):
    """An ego-vehicle hood at the bottom and an unlabeled corner."""
    rng, height, width = canvas.rng, canvas.height, canvas.width
    if rng.uniform() < 0.75:
        top = height - int(rng.integers(height // 20, height // 9))
        hood = canvas.mask(lambda d: d.chord(
            [-width * 0.1, top, width * 1.1, height + (height - top) * 2],
            180, 360, fill=1))
        gloss = _smooth_noise(rng, height, width, 16, 12)
        canvas.paint(hood, EGO_VEHICLE, EGO_VEHICLE,
                     _BASE_COLORS[EGO_VEHICLE], gloss)
    if rng.uniform() < 0.5:
        w = int(rng.integers(width // 20, width // 8))
        h = int(rng.integers(height // 20, height // 8))
        x0 = 0 if rng.uniform() < 0.5 else width - w
        corner = canvas.mask(lambda d: d.rectangle([x0, 0, x0 + w - 1, h],
                                                   fill=1))
        canvas.paint(corner, UNLABELED, UNLABELED, _BASE_COLORS[UNLABELED])




def draw_scene(rng: np.random.Generator, height: int, width: int,
               num_things: Optional[int] = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws one scene from `rng`.

    Args:
      num_things: the free-standing things, besides a touching pair and
        maybe a crowd; None draws 3 to 8, as the demo does.

    Returns:
      (rgb uint8 [H, W, 3], labelIds uint8 [H, W], instanceIds uint16
      [H, W]): instanceIds is `labelId * 1000 + k` on instances, k counting
      from 0 per class, and the labelId elsewhere (crowds included).
    """
    canvas = _Canvas(rng, height, width)
    horizon = int(rng.uniform(0.36, 0.52) * height)
    vanishing_x = float(rng.uniform(0.3, 0.7) * width)
    _draw_sky(canvas, horizon)
    _draw_skyline(canvas, horizon)
    _draw_ground(canvas, horizon, vanishing_x)
    _draw_things(canvas, horizon, height - height // 12, num_things)
    _draw_void(canvas)
    light = 1 + _smooth_noise(rng, height, width, 64, 0.12)
    noise = rng.normal(0, 5, (height, width, 3))
    rgb = canvas.rgb * light[..., None] + noise
    return (np.clip(np.round(rgb), 0, 255).astype(np.uint8),
            canvas.label_ids, canvas.instance_ids)


def generate_scene(seed: int, split: str, index: int, height: int = 256,
                   width: int = 512
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The demo's scene `index` of `split` ('train' or 'val'): draw_scene
    with a generator seeded by all three, so the same arguments always give
    the same arrays."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    return draw_scene(rng, height, width)

