"""The embedded demo dataset: synthetic street scenes in Cityscapes' layout.

Nothing is downloaded: `materialize_demo_dataset` draws the scenes with
NumPy and PIL, writes them as a raw Cityscapes tree (leftImg8bit RGB PNGs,
gtFine 8-bit `*_labelIds.png` and 16-bit `*_instanceIds.png`) and converts
that tree with the real Cityscapes converter, so the demo exercises the same
path a user's Cityscapes copy takes. The result is cached under
`$DEEPLAB2_CACHE` (or `~/.cache/deeplab2`) in a folder whose name carries the
generator version, and is built in a temporary folder renamed on success.

A scene is fully determined by (seed, split, index). Stuff follows a street
layout (sky, buildings and trees above a varying horizon, sidewalks and a
road below); things are cars, persons and bicycles whose size follows their
distance, drawn far to near so that nearer objects occlude farther ones.
Some images hold a crowd (pixels of a thing class without an instance
number, as Cityscapes marks groups) and void pixels (an ego-vehicle strip,
an unlabeled corner). Each class has its own colour and texture, varied a
little per instance, so a small network can learn them.
"""

import dataclasses
import os
import shutil
import tempfile
import time
from typing import Callable, Optional

import numpy as np
from PIL import Image, ImageDraw

# Bump when a change to the generator or the conversion changes the data, so
# that caches built by an older version are not reused.
GENERATOR_VERSION = 1

# Cityscapes labelIds (cityscapesscripts.helpers.labels).
UNLABELED, EGO_VEHICLE = 0, 1
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY = 7, 8, 11, 21, 23
PERSON, CAR, BICYCLE = 24, 26, 33
THING_LABEL_IDS = (PERSON, CAR, BICYCLE)
_INSTANCE_MULTIPLIER = 1000  # Cityscapes instanceIds = labelId * 1000 + k.

_CITIES = {'train': ('aldenburg', 'brightwater'),
           'val': ('cedarfield', 'dunmore')}
_SPLIT_CODES = {'train': 0, 'val': 1}

# The demo keeps crowd regions as crowd (class * 1000), so the input
# pipeline's crowd handling is exercised; void stays void.
_TREAT_CROWD_AS_IGNORE = False

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
        return label_id * _INSTANCE_MULTIPLIER + k

    def mask(self, draw_fn: Callable[[ImageDraw.ImageDraw], None]
             ) -> np.ndarray:
        image = Image.new('L', (self.width, self.height), 0)
        draw_fn(ImageDraw.Draw(image))
        return np.asarray(image) > 0

    def paint(self, mask: np.ndarray, label_id: int, instance_id: int,
              color, texture: Optional[np.ndarray] = None):
        """Paints `mask` with a colour (3,) or colour map (H, W, 3)."""
        self.label_ids[mask] = label_id
        self.instance_ids[mask] = instance_id
        color = np.broadcast_to(np.asarray(color, np.float32),
                                self.rgb.shape)
        self.rgb[mask] = color[mask]
        if texture is not None:
            self.rgb[mask] += texture[mask][:, None]


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
    rng, height, width = canvas.rng, canvas.height, canvas.width
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


def _plan_things(rng, horizon, height, width, ground_bottom):
    """(y_bottom, cx, label_id, is_crowd) of every thing, far to near."""
    span = ground_bottom - horizon

    def row(low, high):  # A row between two fractions of the ground.
        return float(horizon + span * rng.uniform(low, high))

    things = []
    for _ in range(int(rng.integers(3, 9))):
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


def _draw_things(canvas, horizon, ground_bottom):
    rng = canvas.rng
    for y_bottom, cx, label_id, is_crowd in _plan_things(
            rng, horizon, canvas.height, canvas.width, ground_bottom):
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


def generate_scene(seed: int, split: str, index: int, height: int = 256,
                   width: int = 512
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws one scene.

    Returns:
      (rgb uint8 [H, W, 3], labelIds uint8 [H, W], instanceIds uint16
      [H, W]), in Cityscapes' encodings. The same arguments always give the
      same arrays.
    """
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    canvas = _Canvas(rng, height, width)
    horizon = int(rng.uniform(0.36, 0.52) * height)
    vanishing_x = float(rng.uniform(0.3, 0.7) * width)
    _draw_sky(canvas, horizon)
    _draw_skyline(canvas, horizon)
    _draw_ground(canvas, horizon, vanishing_x)
    _draw_things(canvas, horizon, ground_bottom=height - height // 12)
    _draw_void(canvas)
    light = 1 + _smooth_noise(rng, height, width, 64, 0.12)
    noise = rng.normal(0, 5, (height, width, 3))
    rgb = canvas.rgb * light[..., None] + noise
    return (np.clip(np.round(rgb), 0, 255).astype(np.uint8),
            canvas.label_ids, canvas.instance_ids)


def _image_name(split: str, index: int) -> tuple[str, str]:
    city = _CITIES[split][index % len(_CITIES[split])]
    return city, f'{city}_000000_{index:06d}'


def generate_demo_cityscapes(root: str, num_train: int = 64,
                             num_val: int = 16, seed: int = 0,
                             height: int = 256, width: int = 512) -> str:
    """Writes the demo scenes as a raw Cityscapes tree under `root`.

    Files: `leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` (RGB) and
    `gtFine/<split>/<city>/<name>_gtFine_{labelIds,instanceIds}.png` (8-bit
    labelIds; 16-bit labelId * 1000 + k on instances, labelId elsewhere),
    with `<name>` = `<city>_000000_<index:06d>`. Writing twice gives
    byte-identical files.

    Returns:
      root.
    """
    for split, count in (('train', num_train), ('val', num_val)):
        for index in range(count):
            city, name = _image_name(split, index)
            rgb, label_ids, instance_ids = generate_scene(
                seed, split, index, height, width)
            image_dir = os.path.join(root, 'leftImg8bit', split, city)
            label_dir = os.path.join(root, 'gtFine', split, city)
            os.makedirs(image_dir, exist_ok=True)
            os.makedirs(label_dir, exist_ok=True)
            Image.fromarray(rgb).save(
                os.path.join(image_dir, f'{name}_leftImg8bit.png'))
            Image.fromarray(label_ids).save(
                os.path.join(label_dir, f'{name}_gtFine_labelIds.png'))
            Image.fromarray(instance_ids).save(
                os.path.join(label_dir, f'{name}_gtFine_instanceIds.png'))
    return root


def validate_cityscapes_labels(label_ids: np.ndarray,
                               instance_ids: np.ndarray) -> None:
    """Checks that raw instanceIds agree with labelIds, as in Cityscapes.

    Raises:
      ValueError: on the first inconsistency, naming it.
    """
    from cityscapesscripts.helpers import labels as cs_labels
    label_ids = np.asarray(label_ids, np.int64)
    instance_ids = np.asarray(instance_ids, np.int64)
    if label_ids.shape != instance_ids.shape:
        raise ValueError(f'labelIds shape {label_ids.shape} differs from '
                         f'instanceIds shape {instance_ids.shape}.')
    is_instance = instance_ids >= _INSTANCE_MULTIPLIER
    expected = np.where(is_instance, instance_ids // _INSTANCE_MULTIPLIER,
                        instance_ids)
    if np.any(expected != label_ids):
        raise ValueError('instanceIds disagree with labelIds at '
                         f'{int(np.sum(expected != label_ids))} pixels.')
    has_instances = {label.id for label in cs_labels.labels
                     if label.hasInstances}
    bad = set(np.unique(label_ids[is_instance]).tolist()) - has_instances
    if bad:
        raise ValueError(f'instance numbers on labelIds without instances: '
                         f'{sorted(bad)}.')


def validate_panoptic_label(panoptic: np.ndarray, descriptor) -> dict:
    """Checks a converted panoptic label against a dataset descriptor.

    Every id is `semantic * divisor + instance` with instance < divisor;
    semantic is a class of the descriptor or its ignore label (then the
    instance is 0); only thing classes carry instance numbers. A thing
    segment with instance 0 is a crowd.

    Returns:
      {'thing_classes': sorted classes with instances, 'num_instances',
       'crowd_classes': sorted classes with crowd pixels, 'void_pixels'}.

    Raises:
      ValueError: naming the offending ids.
    """
    panoptic = np.asarray(panoptic, np.int64)
    divisor = descriptor.panoptic_label_divisor
    ids = np.unique(panoptic)
    if ids.size and ids.min() < 0:
        raise ValueError(f'negative panoptic ids: {ids[ids < 0].tolist()}.')
    semantic, instance = ids // divisor, ids % divisor
    things = set(descriptor.class_has_instances_list)
    known = (semantic < descriptor.num_classes) | (
        semantic == descriptor.ignore_label)
    if not np.all(known):
        raise ValueError(f'ids with unknown classes: {ids[~known].tolist()}.')
    void = semantic == descriptor.ignore_label
    if np.any(void & (instance != 0)):
        raise ValueError('void ids with an instance number: '
                         f'{ids[void & (instance != 0)].tolist()}.')
    is_thing = np.isin(semantic, list(things))
    stuff_instances = ~is_thing & ~void & (instance != 0)
    if np.any(stuff_instances):
        raise ValueError('instance numbers on classes without instances: '
                         f'{ids[stuff_instances].tolist()}.')
    instances = is_thing & (instance != 0)
    crowd = is_thing & (instance == 0)
    void_id = descriptor.ignore_label * divisor
    return {
        'thing_classes': sorted(set(semantic[instances].tolist())),
        'num_instances': int(np.sum(instances)),
        'crowd_classes': sorted(set(semantic[crowd].tolist())),
        'void_pixels': int(np.sum(panoptic == void_id)),
    }


def default_cache_dir() -> str:
    """`$DEEPLAB2_CACHE`, else `~/.cache/deeplab2`."""
    return os.environ.get('DEEPLAB2_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'deeplab2')


def demo_dataset_dir(cache_dir: Optional[str] = None, num_train: int = 64,
                     num_val: int = 16, seed: int = 0) -> str:
    """The cache folder for one version and size of the demo dataset."""
    cache_dir = cache_dir or default_cache_dir()
    return os.path.join(
        cache_dir, f'demo_v{GENERATOR_VERSION}_seed{seed}_'
        f'{num_train}train_{num_val}val')


_PARTIAL_INFIX = '.partial-'
_STALE_PARTIAL_SECONDS = 3600


def _remove_stale_partial_builds(parent: str, prefix: str) -> None:
    now = time.time()
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(prefix) and os.path.isdir(path):
            try:
                stale = now - os.stat(path).st_mtime > _STALE_PARTIAL_SECONDS
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(path, ignore_errors=True)


def materialize_demo_dataset(cache_dir: Optional[str] = None,
                             num_train: int = 64, num_val: int = 16,
                             seed: int = 0,
                             num_workers: int = 1) -> str:
    """Generates and converts the demo dataset once; reuses it afterwards.

    The raw tree goes to `<dir>/cityscapes` and the shards, written by
    `deeplab2.data.cityscapes.convert_cityscapes` as
    `<split>-%05d-of-%05d.tfrecord` for splits 'train' and 'val', to
    `<dir>/tfrecord`, with `<dir>` = `demo_dataset_dir(...)`. Everything is
    built in a temporary sibling folder and renamed when complete, so an
    interrupted build never leaves a cache that looks finished; partial
    folders of a killed build are removed by a later build once they are an
    hour old (a build takes seconds, so no running build loses its folder).

    `num_workers` is passed to the converter. One is the default: the demo
    is small, and worker processes are spawned, which needs callers'
    scripts to guard their main code.

    Returns:
      the folder holding the TFRecord shards.
    """
    final_dir = demo_dataset_dir(cache_dir, num_train, num_val, seed)
    tfrecord_dir = os.path.join(final_dir, 'tfrecord')
    if os.path.isdir(tfrecord_dir):
        return tfrecord_dir
    # Imported here: the converter pulls in TensorFlow, the generator not.
    from deeplab2.data import cityscapes
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    prefix = os.path.basename(final_dir) + _PARTIAL_INFIX
    _remove_stale_partial_builds(parent, prefix)
    build_dir = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        raw_dir = generate_demo_cityscapes(
            os.path.join(build_dir, 'cityscapes'), num_train, num_val, seed)
        cityscapes.convert_cityscapes(
            raw_dir, os.path.join(build_dir, 'tfrecord'),
            splits=('train', 'val'), create_panoptic_data=True,
            treat_crowd_as_ignore=_TREAT_CROWD_AS_IGNORE,
            num_workers=num_workers, show_progress=False)
        try:
            os.rename(build_dir, final_dir)
        except OSError:
            if not os.path.isdir(tfrecord_dir):  # Not a lost race: a fault.
                raise
    finally:
        if os.path.isdir(build_dir):
            shutil.rmtree(build_dir, ignore_errors=True)
    return tfrecord_dir
