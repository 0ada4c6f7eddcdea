"""Post-processing pieces that lower to TFLite builtins and ONNX ops.

What `PanopticPostProcessor` swaps in when it runs outside TensorFlow
(`PostProcessOptions.runtime` 'tflite' or 'onnx'): the same results as the
TensorFlow path, built from ops both converters turn into native kernels.

- Grouping: the valid center slots visited in order (a loop, or for an
  int8 TFLite export branches), each pixel keeping its nearest center so
  far. A pixel moves to a later center only when it is
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

# Where post-processing can run: TensorFlow itself, or a converted file
# (an int8 TFLite file is calibrated, which needs the loop-free grouping).
RUNTIMES = ('tensorflow', 'tflite', 'tflite_int8', 'onnx')


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
    'tflite_int8': _SEGMENT_OPS,
    'onnx': SegmentReductions(_scatter_sum, _scatter_min),
}


# Center slots visited per branch of the loop-free grouping.
SLOTS_PER_BRANCH = 8


def group_pixels_by_center_loop(offset_map, is_thing, centers_yx,
                                centers_valid, loop_free: bool = False):
    """[B, H, W, 2] offsets, [B, H, W] thing mask, [B, K, 2] centers with
    [B, K] validity (valid slots first) -> [B, H, W] int32: 1 + index of the
    nearest valid center on thing pixels, 0 elsewhere and in images without
    centers. Equal to `postprocess.group_pixels`.

    The valid slots are visited in order by a `tf.while_loop` (TFLite
    WHILE, ONNX Loop), or with loop_free by SLOTS_PER_BRANCH-slot groups
    each under a `tf.cond` that skips it past the last valid slot (TFLite
    IF): TFLite's int8 calibration crashes on WHILE (TF 2.21) but runs IF.
    The loop converts several times faster (tf2onnx takes minutes over the
    unrolled branches), so it is the default. Either way the cost follows
    the number of centers.
    """
    shape = tf.shape(offset_map)
    # Rows and columns broadcast against the offsets at run time: a full
    # [H, W] grid would be folded into the file as a constant.
    rows = tf.cast(tf.range(shape[1]), tf.float32)[None, :, None]
    columns = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :]
    point_y = rows + offset_map[..., 0]
    point_x = columns + offset_map[..., 1]
    # Valid slots come first: slots from here on are invalid everywhere.
    num_slots = tf.reduce_max(tf.reduce_sum(
        tf.cast(centers_valid, tf.int32), axis=1))

    def visit(slot, best_distance, nearest):
        center = tf.gather(centers_yx, slot, axis=1)         # [B, 2]
        valid = tf.gather(centers_valid, slot, axis=1)       # [B]
        delta_y = center[:, 0, None, None] - point_y
        delta_x = center[:, 1, None, None] - point_x
        distance = tf.sqrt(delta_y * delta_y + delta_x * delta_x)
        closer = (distance < best_distance) & valid[:, None, None]
        return (tf.where(closer, distance, best_distance),
                tf.where(closer, slot, nearest))

    # The largest float, not inf: inside an ONNX Loop or If, tf2onnx can
    # lower the select to arithmetic, where inf * 0 is NaN. Both start
    # values are computed from the points (max(p, FLT_MAX) is FLT_MAX, and
    # p < -FLT_MAX is never true), so that neither is stored in the file
    # as an [H, W] constant.
    best_distance = tf.maximum(point_y, tf.float32.max)
    nearest = tf.cast(point_y < -tf.float32.max, tf.int32)
    if not loop_free:
        _, _, nearest = tf.while_loop(
            lambda slot, *_: slot < num_slots,
            lambda slot, *state: (slot + 1, *visit(slot, *state)),
            (tf.constant(0), best_distance, nearest))
    else:
        def visit_group(first, last, best_distance, nearest):
            for slot in range(first, last):
                best_distance, nearest = visit(tf.constant(slot),
                                               best_distance, nearest)
            return best_distance, nearest

        total = int(centers_valid.shape[1])
        for first in range(0, total, SLOTS_PER_BRANCH):
            last = min(first + SLOTS_PER_BRANCH, total)
            best_distance, nearest = tf.cond(
                first < num_slots,
                lambda f=first, l=last, d=best_distance, n=nearest: (
                    visit_group(f, l, d, n)),
                lambda d=best_distance, n=nearest: (d, n))
    has_center = tf.reduce_any(centers_valid, axis=1)[:, None, None]
    return tf.where(is_thing & has_center, nearest + 1, 0)
