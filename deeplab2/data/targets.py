"""Panoptic-DeepLab training targets from a panoptic label, vectorized;
a semantic-only label (no instances) gets the semantic target alone
(`semantic_targets`).

Reproduces DeepLab2's PanopticSampleGenerator exactly, but with segment ops
over dense id tables instead of a Python loop per instance. Labels are
`semantic * label_divisor + instance`; a thing pixel with instance 0 is
crowd.

Definitions (all measured on the processed crop):
  * instances: unique ids of the crowd-removed label whose semantic is not
    `ignore_label` and whose instance part is not 0;
  * center: (round(mean y), round(mean x)) of the instance's pixels, with
    float32 mean and round-half-to-even (`tf.round`); it may fall outside
    the instance;
  * center heatmap: per instance a Gaussian (float64 table cast to float32)
    on a square window of int(6 sigma + 3) pixels, max over instances;
  * offsets: [..., 0] = center_y - y, [..., 1] = center_x - x on instance
    pixels, 0 elsewhere;
  * semantic weight: 1 everywhere (void and padding too; the loss masks
    void), `small_instance_weight` on instances with fewer than
    `small_instance_threshold` pixels;
  * center weight: 1 off crowd and off void; regression weight: 1 on
    non-crowd thing pixels.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf

from deeplab2 import common


def semantic_and_crowd(panoptic: tf.Tensor, label_divisor: int,
                       thing_ids: Sequence[int]):
    """Splits a panoptic label.

    Args:
      panoptic: [...] int32 panoptic label.
    Returns:
      (semantic [...] int32, thing_mask [...] bool, crowd [...] bool).
    """
    semantic = panoptic // label_divisor
    things = tf.constant(list(thing_ids), tf.int32)
    thing_mask = tf.reduce_any(semantic[..., tf.newaxis] == things, axis=-1)
    crowd = tf.logical_and(thing_mask, panoptic % label_divisor == 0)
    return semantic, thing_mask, crowd


def gaussian_window(sigma: float) -> np.ndarray:
    """The [size, size] float32 Gaussian stamp, size = int(6 sigma + 3).

    Its peak sits at (3 sigma + 1, 3 sigma + 1); evaluated in float64 and
    cast, which makes the heatmap bit-identical to DeepLab2's.
    """
    size = int(6 * sigma + 3)
    coords = np.arange(size, dtype=np.float64)
    peak = 3 * sigma + 1
    squared = (coords[np.newaxis, :] - peak) ** 2 + (coords[:, np.newaxis] -
                                                      peak) ** 2
    return np.exp(-squared / (2 * sigma ** 2)).astype(np.float32)


# Semantic labels (void included) must be below this: the per-id tables
# below span _MAX_SEMANTIC * label_divisor ids (256 000 for Cityscapes).
_MAX_SEMANTIC = 256


def instance_statistics(panoptic: tf.Tensor, label_divisor: int,
                        ignore_label: int):
    """Per panoptic id: is-instance, area and rounded center.

    Ids index dense tables directly (no hashing: tf.unique dominated the
    cost), so the computation is a few segment sums XLA can fuse.

    Args:
      panoptic: [H, W] int32, crowd already replaced by void; ids below
        _MAX_SEMANTIC * label_divisor.
    Returns:
      is_instance [N] bool, area [N] int32, center [N, 2] int32 (y, x), for
      all N = _MAX_SEMANTIC * label_divisor ids (absent ids: area 0, not
      instances).
    """
    num_ids = _MAX_SEMANTIC * label_divisor
    height, width = tf.shape(panoptic)[0], tf.shape(panoptic)[1]
    flat = tf.reshape(panoptic, [-1])
    area = tf.math.unsorted_segment_sum(tf.ones_like(flat), flat, num_ids)
    rows = tf.repeat(tf.range(height, dtype=tf.int64), width)
    cols = tf.tile(tf.range(width, dtype=tf.int64), [height])
    # Exact integer sums, then DeepLab2's float32 mean and round-half-even.
    sums = tf.stack([tf.math.unsorted_segment_sum(rows, flat, num_ids),
                     tf.math.unsorted_segment_sum(cols, flat, num_ids)], 1)
    mean = (tf.cast(sums, tf.float32) /
            tf.cast(tf.maximum(area, 1), tf.float32)[:, tf.newaxis])
    ids = tf.range(num_ids)
    is_instance = ((area > 0) & (ids // label_divisor != ignore_label) &
                   (ids % label_divisor != 0))
    return is_instance, area, tf.cast(tf.round(mean), tf.int32)


def center_heatmap(shape: tf.Tensor, centers: tf.Tensor,
                   sigma: float) -> tf.Tensor:
    """Max over Gaussians stamped at `centers`.

    Args:
      shape: [2] int32 (H, W).
      centers: [K, 2] int32 (y, x).
    Returns:
      [H, W] float32.
    """
    window = gaussian_window(sigma)
    size = window.shape[0]
    # Window index i covers map row cy + i - begin; DeepLab2's padded canvas
    # uses begin = round(3 sigma + 1) (Python rounding).
    begin = int(round(3 * sigma + 1))
    grid_y, grid_x = np.meshgrid(np.arange(size), np.arange(size),
                                 indexing='ij')
    stamp = tf.constant(np.stack([grid_y, grid_x], -1).reshape(-1, 2),
                        tf.int32)
    indices = centers[:, tf.newaxis, :] + stamp[tf.newaxis]  # [K, S*S, 2]
    updates = tf.tile(tf.reshape(window, [1, -1]), [tf.shape(centers)[0], 1])
    canvas = tf.zeros(shape + size, tf.float32)
    canvas = tf.tensor_scatter_nd_max(canvas, indices, updates)
    return canvas[begin:begin + shape[0], begin:begin + shape[1]]


def panoptic_targets(panoptic: tf.Tensor, *, label_divisor: int,
                     ignore_label: int, thing_ids: Sequence[int],
                     sigma: float = 8.0, small_instance_threshold: int = 0,
                     small_instance_weight: float = 1.0) -> dict:
    """All Panoptic-DeepLab targets of one processed label.

    Args:
      panoptic: [H, W] int32 (crop, padding = ignore * divisor).
      small_instance_threshold: instances with fewer pixels get
        `small_instance_weight` as semantic weight; 0 disables.
    Returns:
      dict with common.GT_SEMANTIC_KEY, GT_PANOPTIC_KEY (crowd kept),
      GT_IS_CROWD, GT_INSTANCE_CENTER_KEY [H, W] float32,
      GT_INSTANCE_REGRESSION_KEY [H, W, 2] float32 (dy, dx) and the three
      loss weights [H, W] float32.
    """
    maps, centers = _dense_targets(
        tf.cast(panoptic, tf.int32), label_divisor=label_divisor,
        ignore_label=ignore_label, thing_ids=tuple(thing_ids),
        small_instance_threshold=small_instance_threshold,
        small_instance_weight=small_instance_weight)
    # The heatmap scatters a window per instance: a dynamic count, so it
    # stays outside the compiled part.
    maps[common.GT_INSTANCE_CENTER_KEY] = center_heatmap(
        tf.shape(panoptic), centers, sigma)
    return maps


def _dense_targets_impl(panoptic, label_divisor, ignore_label, thing_ids,
                        small_instance_threshold, small_instance_weight):
    """Every per-pixel target but the heatmap, and the instance centers
    [K, 2]; see panoptic_targets."""
    shape = tf.shape(panoptic)
    semantic, thing_mask, crowd = semantic_and_crowd(
        panoptic, label_divisor, thing_ids)
    no_crowd = tf.where(crowd, ignore_label * label_divisor, panoptic)
    is_instance, area, center = instance_statistics(
        no_crowd, label_divisor, ignore_label)
    pixel_is_instance = tf.gather(is_instance, no_crowd)
    coords = tf.stack(tf.meshgrid(tf.range(shape[0]), tf.range(shape[1]),
                                  indexing='ij'), axis=-1)
    offsets = tf.where(pixel_is_instance[..., tf.newaxis],
                       tf.gather(center, no_crowd) - coords, 0)
    is_small = tf.logical_and(is_instance, area < small_instance_threshold)
    semantic_weight = tf.where(
        tf.gather(is_small, no_crowd),
        tf.cast(small_instance_weight, tf.float32), 1.0)
    center_weight = tf.logical_and(tf.logical_not(crowd),
                                   semantic != ignore_label)
    regression_weight = tf.logical_and(tf.logical_not(crowd), thing_mask)
    maps = {
        common.GT_SEMANTIC_KEY: semantic,
        common.GT_PANOPTIC_KEY: panoptic,
        common.GT_IS_CROWD: crowd,
        common.GT_INSTANCE_REGRESSION_KEY: tf.cast(offsets, tf.float32),
        common.SEMANTIC_LOSS_WEIGHT_KEY: semantic_weight,
        common.CENTER_LOSS_WEIGHT_KEY: tf.cast(center_weight, tf.float32),
        common.REGRESSION_LOSS_WEIGHT_KEY: tf.cast(regression_weight,
                                                   tf.float32),
    }
    return maps, is_instance, center


def _dense_targets(panoptic, **kwargs):
    maps, is_instance, center = _dense_targets_compiled(panoptic, **kwargs)
    return maps, tf.boolean_mask(center, is_instance)


# One fused XLA computation per crop size (the training crop is fixed).
_dense_targets_compiled = tf.function(
    _dense_targets_impl, jit_compile=True, reduce_retracing=True)


def raw_eval_labels(panoptic: tf.Tensor, *, label_divisor: int,
                    thing_ids: Sequence[int]) -> dict:
    """The unprocessed label kept for evaluation: [H, W] int32 -> dict."""
    panoptic = tf.cast(panoptic, tf.int32)
    semantic, _, crowd = semantic_and_crowd(panoptic, label_divisor, thing_ids)
    return {
        common.GT_PANOPTIC_RAW: panoptic,
        common.GT_SEMANTIC_RAW: semantic,
        common.GT_IS_CROWD_RAW: crowd,
        common.GT_SIZE_RAW: tf.shape(panoptic)[:2],
    }


def semantic_targets(semantic: tf.Tensor) -> dict:
    """The targets of a semantic-only label (a dataset without instances):
    what the semantic loss reads, and nothing about instances.

    Args:
      semantic: [H, W] int class ids of the processed crop (padding and
        void = the ignore label).
    Returns:
      common.GT_SEMANTIC_KEY [H, W] int32 and SEMANTIC_LOSS_WEIGHT_KEY
      [H, W] float32, 1 everywhere as in `panoptic_targets` (the loss
      masks void; there are no instances to weight as small).
    """
    semantic = tf.cast(semantic, tf.int32)
    return {
        common.GT_SEMANTIC_KEY: semantic,
        common.SEMANTIC_LOSS_WEIGHT_KEY: tf.ones(tf.shape(semantic),
                                                 tf.float32),
    }


def raw_semantic_eval_labels(semantic: tf.Tensor) -> dict:
    """The unprocessed semantic-only label kept for evaluation: [H, W] ->
    GT_SEMANTIC_RAW and GT_SIZE_RAW (no panoptic map: metrics that read
    one are not built for such a dataset)."""
    semantic = tf.cast(semantic, tf.int32)
    return {common.GT_SEMANTIC_RAW: semantic,
            common.GT_SIZE_RAW: tf.shape(semantic)[:2]}


def thing_id_mask_and_class(panoptic: tf.Tensor, *, label_divisor: int,
                            ignore_label: int, thing_ids: Sequence[int],
                            max_thing_id: int = 128):
    """MaX-DeepLab's thing-id annotations (DeepLab2's thing_id_mask_gt/class).

    Instances (crowd excluded) are numbered 0, 1, ... in order of first
    appearance in a row-major scan.

    Args:
      panoptic: [H, W] int32 processed label (crowd kept; removed here).
    Returns:
      (thing_id_mask [H, W] int32, -1 off instances; thing_id_class
      [max_thing_id] float32 semantic ids, -1 padded; float32 as DeepLab2).
    Raises:
      InvalidArgumentError: more than `max_thing_id` instances.
    """
    panoptic = tf.cast(panoptic, tf.int32)
    _, _, crowd = semantic_and_crowd(panoptic, label_divisor, thing_ids)
    no_crowd = tf.where(crowd, ignore_label * label_divisor, panoptic)
    ids, pixel_index = tf.unique(tf.reshape(no_crowd, [-1]))
    is_instance = tf.logical_and(ids // label_divisor != ignore_label,
                                 ids % label_divisor != 0)
    thing_index = tf.cumsum(tf.cast(is_instance, tf.int32)) - 1
    thing_index = tf.where(is_instance, thing_index, -1)
    count = tf.reduce_sum(tf.cast(is_instance, tf.int32))
    check = tf.debugging.assert_less_equal(
        count, max_thing_id, message='more instances than max_thing_id')
    with tf.control_dependencies([check]):
        mask = tf.reshape(tf.gather(thing_index, pixel_index),
                          tf.shape(panoptic))
    classes = tf.cast(tf.boolean_mask(ids // label_divisor, is_instance),
                      tf.float32)
    classes = tf.pad(classes, [[0, max_thing_id - count]],
                     constant_values=-1.0)
    return mask, classes
