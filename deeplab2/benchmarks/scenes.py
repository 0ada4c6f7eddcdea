"""Benchmark inputs made from the package's synthetic street scenes
(`deeplab2.data.synthetic_scene`, the demo's generator): panoptic labels,
the network outputs a perfect model would give for them, a flawed
prediction to evaluate against them, and TFRecords of them. NumPy only;
TensorFlow is imported by the TFRecord writer alone.
"""

import io
import os
from typing import Optional

import numpy as np
from PIL import Image

from deeplab2.data import cityscapes_labels
from deeplab2.data import synthetic_scene

DIVISOR = cityscapes_labels.LABEL_DIVISOR
IGNORE_LABEL = cityscapes_labels.IGNORE_LABEL
THING_CLASSES = tuple(sorted(cityscapes_labels.THING_CLASSES))
_ROAD, _SIDEWALK, _PERSON, _CAR = 0, 1, 11, 13  # train ids
_CENTER_SIGMA = 8.0


def _train_ids() -> np.ndarray:
    """labelId -> train id (void for labels without one)."""
    table = np.full(256, IGNORE_LABEL, np.int32)
    table[list(cityscapes_labels.LABEL_IDS)] = np.arange(
        len(cityscapes_labels.LABEL_IDS))
    return table


def panoptic_label(label_ids: np.ndarray,
                   instance_ids: np.ndarray) -> np.ndarray:
    """A scene's labels as a train-id panoptic map (int32), as DeepLab2's
    Cityscapes records hold them: `train_id * 1000 + k + 1` on instances,
    `train_id * 1000` on stuff and crowds, `255 * 1000` on void."""
    panoptic = _train_ids()[label_ids] * DIVISOR
    multiplier = synthetic_scene.INSTANCE_MULTIPLIER
    is_instance = instance_ids >= multiplier
    panoptic[is_instance] += instance_ids[is_instance] % multiplier + 1
    return panoptic


def scene(seed: int, height: int, width: int,
          num_things: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [H, W, 3], train-id panoptic int32 [H, W]) of a street
    scene drawn from `seed` (see synthetic_scene.draw_scene)."""
    rgb, label_ids, instance_ids = synthetic_scene.draw_scene(
        np.random.default_rng(seed), height, width, num_things)
    return rgb, panoptic_label(label_ids, instance_ids)


def crowded_scene(height: int, width: int, num_instances: int,
                  seed: int = 0) -> np.ndarray:
    """A train-id panoptic map [H, W] with exactly `num_instances` thing
    instances: cars and persons on a jittered grid over the road in the
    lower 60% of the image, none touching another.

    Each instance fills about half of its grid cell, so thing pixels cover
    about 30% of the image whatever the count: timings across counts
    differ by the number of instances only.
    """
    rng = np.random.default_rng(seed)
    panoptic = np.full([height, width], _SIDEWALK * DIVISOR, np.int32)
    top = height * 2 // 5
    panoptic[top:] = _ROAD * DIVISOR
    area_height, area_width = height - top, width
    rows = max(1, int(round(np.sqrt(num_instances * area_height
                                    / area_width))))
    cols = -(-num_instances // rows)
    cell_h, cell_w = area_height / rows, area_width / cols
    if cell_h < 4 or cell_w < 4:
        raise ValueError(f'{num_instances} instances do not fit in a '
                         f'{height}x{width} image.')
    for index in range(num_instances):
        row, col = divmod(index, cols)
        box_h = max(2, int(cell_h * rng.uniform(0.6, 0.8)))
        box_w = max(2, int(cell_w * rng.uniform(0.6, 0.8)))
        y = top + int(row * cell_h + rng.uniform(0, cell_h - box_h))
        x = int(col * cell_w + rng.uniform(0, cell_w - box_w))
        train_id = _CAR if index % 2 else _PERSON
        panoptic[y:y + box_h, x:x + box_w] = (train_id * DIVISOR + index // 2
                                              + 1)
    return panoptic


def thing_segments(panoptic: np.ndarray) -> np.ndarray:
    """Ids of the thing segments, instances and crowds: what a model that
    sees each crowd as one object finds."""
    ids = np.unique(panoptic)
    return ids[np.isin(ids // DIVISOR, THING_CLASSES)]


def network_outputs(panoptic: np.ndarray, num_classes: int = 19,
                    seed: int = 0) -> dict:
    """The outputs of a model that is right about `panoptic`.

    Returns:
      {'semantic_probs' [H, W, C] (the true class well ahead of noisy
      others; void pixels taken for road), 'center_heatmap' [H, W]
      (a Gaussian of sigma 8 peaking at 1 on each thing segment's rounded
      centroid), 'offsets' [H, W, 2] (each thing pixel to its centroid)},
      float32 arrays.
    """
    height, width = panoptic.shape
    semantic = panoptic // DIVISOR
    semantic = np.where(semantic == IGNORE_LABEL, _ROAD, semantic)
    logits = np.random.default_rng(seed).normal(
        0, 0.5, [height, width, num_classes]).astype(np.float32)
    np.put_along_axis(logits, semantic[..., None], 5.0, axis=-1)
    logits = np.exp(logits - logits.max(-1, keepdims=True))
    heatmap = np.zeros([height, width], np.float32)
    offsets = np.zeros([height, width, 2], np.float32)
    radius = int(3 * _CENTER_SIGMA)
    for segment in thing_segments(panoptic):
        ys, xs = np.nonzero(panoptic == segment)
        cy, cx = int(round(ys.mean())), int(round(xs.mean()))
        offsets[ys, xs] = np.stack([cy - ys, cx - xs], -1)
        top, left = max(cy - radius, 0), max(cx - radius, 0)
        rows, cols = np.ogrid[top:min(cy + radius + 1, height),
                              left:min(cx + radius + 1, width)]
        window = heatmap[top:top + rows.shape[0], left:left + cols.shape[1]]
        np.maximum(window, np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2)
                                  / (2 * _CENTER_SIGMA ** 2)), out=window)
    return {'semantic_probs': logits / logits.sum(-1, keepdims=True),
            'center_heatmap': heatmap, 'offsets': offsets}


def flawed_prediction(gt: np.ndarray, seed: int = 0) -> np.ndarray:
    """A prediction of panoptic map `gt` with the usual mistakes.

    Boundaries are shifted by a few pixels; void is taken for road (a
    network labels every pixel); of each ten instances, one is missed (seen
    as sidewalk), one merged into the previous instance of its class, and
    one gets an extra small detection beside it.
    """
    rng = np.random.default_rng(seed)
    height, width = gt.shape
    prediction = np.roll(gt, (4, -6), axis=(0, 1))
    prediction[prediction // DIVISOR == IGNORE_LABEL] = _ROAD * DIVISOR
    instances = [i for i in thing_segments(gt) if i % DIVISOR]
    radius = max(height // 80, 2)
    rows, cols = np.ogrid[0:height, 0:width]
    for index, instance in enumerate(instances):
        pixels = prediction == instance
        kind = index % 10
        if kind == 0:
            prediction[pixels] = _SIDEWALK * DIVISOR
        elif kind == 1 and (instance - 1) % DIVISOR:
            prediction[pixels] = instance - 1
        elif kind == 2 and pixels.any():
            ys, xs = np.nonzero(pixels)
            cy = ys.mean() + rng.uniform(-radius, radius)
            cx = min(xs.max() + radius, width - 1)
            extra = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius ** 2
            prediction[extra] = instance // DIVISOR * DIVISOR + 500 + index
    return prediction


def write_tfrecords(folder: str, num_examples: int = 8, height: int = 1024,
                    width: int = 2048, num_shards: int = 4,
                    seed: int = 0) -> str:
    """Street scenes with their panoptic labels as DeepLab2 TFRecord shards
    `bench-%05d-of-%05d.tfrecord` (PNG images); returns their glob."""
    import tensorflow as tf
    from deeplab2.data import tfrecord
    os.makedirs(folder, exist_ok=True)
    writers = [tf.io.TFRecordWriter(os.path.join(
        folder, f'bench-{i:05d}-of-{num_shards:05d}.tfrecord'))
        for i in range(num_shards)]
    for index in range(num_examples):
        rgb, panoptic = scene(seed + index, height, width)
        encoded = io.BytesIO()
        Image.fromarray(rgb).save(encoded, format='PNG')
        example = tfrecord.encode_example(encoded.getvalue(),
                                          f'synthetic_{index:06d}', 'png',
                                          height, width, panoptic)
        writers[index % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return os.path.join(folder, 'bench-*.tfrecord')
