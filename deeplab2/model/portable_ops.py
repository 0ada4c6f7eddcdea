"""Post-processing pieces that lower to TFLite builtins and ONNX ops.

What `PanopticPostProcessor` swaps in when it runs outside TensorFlow
(`PostProcessOptions.runtime` 'tflite' or 'onnx'): the same results as the
TensorFlow path, built from ops both converters turn into native kernels.

- Grouping: the center slots visited in order, each pixel keeping its
  nearest center so far, with groups of slots past the last valid center
  skipped by `tf.cond`. A pixel moves to a later center only when it is
  strictly closer, which is argmin's first-on-ties rule, and the distance
  is computed with the same float operations as the TensorFlow path, so
  the same pixels tie. Its cost is one pass over the pixels per valid
  center (none without centers); the TensorFlow path's per-image `map_fn`
  over a data-dependent pixel count does not lower at all.
- Segment sums and minima for the merge: `tf.math.unsorted_segment_*`
  become TFLite's UNSORTED_SEGMENT_SUM/MIN builtins, but tf2onnx turns them
  into a dense grid (sum) or an op onnxruntime does not know (int min/max).
  For ONNX they are scatters: `tf.tensor_scatter_nd_add/min` become
  ScatterND with reduction add/min (opset 18). Both are exact and linear in
  the pixels; a one-hot matmul would be pixels x slots.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

# Where post-processing can run: TensorFlow itself, or a converted file.
RUNTIMES = ('tensorflow', 'tflite', 'onnx')


@dataclasses.dataclass(frozen=True)
class SegmentReductions:
    """sum(data, segment_ids, num_segments) and min(...) over flat int
    tensors, with `tf.math.unsorted_segment_sum/min`'s results (an empty
    segment: 0 for sum, the dtype's max for min)."""
    sum: Callable
    min: Callable


def _scatter_sum(data, segment_ids, num_segments):
    return tf.tensor_scatter_nd_add(tf.zeros([num_segments], data.dtype),
                                    segment_ids[:, None], data)


def _scatter_min(data, segment_ids, num_segments):
    return tf.tensor_scatter_nd_min(
        tf.fill([num_segments], tf.constant(data.dtype.max, data.dtype)),
        segment_ids[:, None], data)


_SEGMENT_OPS = SegmentReductions(tf.math.unsorted_segment_sum,
                                 tf.math.unsorted_segment_min)
REDUCTIONS = {
    'tensorflow': _SEGMENT_OPS,
    'tflite': _SEGMENT_OPS,
    'onnx': SegmentReductions(_scatter_sum, _scatter_min),
}


# Center slots visited per branch of the grouping (see below).
SLOTS_PER_BRANCH = 8


def group_pixels_by_center_loop(offset_map, is_thing, centers_yx,
                                centers_valid):
    """[B, H, W, 2] offsets, [B, H, W] thing mask, [B, K, 2] centers with
    [B, K] validity (valid slots first) -> [B, H, W] int32: 1 + index of the
    nearest valid center on thing pixels, 0 elsewhere and in images without
    centers. Equal to `postprocess.group_pixels`.

    The slots are visited in order, SLOTS_PER_BRANCH at a time, each group
    under a `tf.cond` that skips it when no image has a valid center in it
    (TFLite IF, ONNX If): the cost follows the number of centers. Not a
    `tf.while_loop`: TFLite's int8 calibration crashes on WHILE (TF 2.21),
    while it runs IF.
    """
    shape = tf.shape(offset_map)
    grid_y, grid_x = tf.meshgrid(tf.range(shape[1]), tf.range(shape[2]),
                                 indexing='ij')
    point_y = tf.cast(grid_y, tf.float32)[None] + offset_map[..., 0]
    point_x = tf.cast(grid_x, tf.float32)[None] + offset_map[..., 1]
    # Valid slots come first: slots from here on are invalid everywhere.
    num_slots = tf.reduce_max(tf.reduce_sum(
        tf.cast(centers_valid, tf.int32), axis=1))

    def visit(first, last, best_distance, nearest):
        for slot in range(first, last):
            center_y = centers_yx[:, slot, 0, None, None]
            center_x = centers_yx[:, slot, 1, None, None]
            delta_y = center_y - point_y
            delta_x = center_x - point_x
            distance = tf.sqrt(delta_y * delta_y + delta_x * delta_x)
            closer = ((distance < best_distance)
                      & centers_valid[:, slot, None, None])
            best_distance = tf.where(closer, distance, best_distance)
            nearest = tf.where(closer, slot, nearest)
        return best_distance, nearest

    # The largest float, not inf: inside an ONNX If, tf2onnx can lower the
    # select to arithmetic, where inf * 0 is NaN.
    best_distance = tf.fill(tf.shape(point_y), tf.float32.max)
    nearest = tf.zeros_like(point_y, tf.int32)
    total = int(centers_valid.shape[1])
    for first in range(0, total, SLOTS_PER_BRANCH):
        last = min(first + SLOTS_PER_BRANCH, total)
        best_distance, nearest = tf.cond(
            first < num_slots,
            lambda f=first, l=last, d=best_distance, n=nearest: visit(
                f, l, d, n),
            lambda d=best_distance, n=nearest: (d, n))
    has_center = tf.reduce_any(centers_valid, axis=1)[:, None, None]
    return tf.where(is_thing & has_center, nearest + 1, 0)
