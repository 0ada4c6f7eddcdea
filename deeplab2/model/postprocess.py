"""Panoptic-DeepLab post-processing: batched, pure TF, exportable.

network outputs -> semantic argmax -> center NMS -> top-k centers (raster
order) -> each thing pixel to its nearest center by offset -> majority-vote
merge into `semantic * label_divisor + instance`.

Results equal DeepLab2's, including its float arithmetic in the distance
computation (so ties break identically). Two merge semantics are offered
through the config flag `merge_semantic_and_instance_with_tf_op`:
- false: DeepLab2's pure-TF merge: stuff kept when its area >= the limit;
  thing pixels without an instance (no center at all) are void.
- true: DeepLab2's compiled merge op: stuff void when 0 < limit and its
  area <= limit; thing pixels without an instance form one extra instance.
Instance ids are numbered per class in raster order of each instance's
first pixel (DeepLab2's op numbers them in hash order: a permutation).

Shapes: B batch, H x W pixels, C classes, K center slots.
"""

import dataclasses
from typing import Mapping

import tensorflow as tf

from deeplab2 import common
from deeplab2.data import datasets
from deeplab2.model import nearest_center
from deeplab2.model import portable_ops

# The name scope of every post-processing op.
NAME_SCOPE = 'postprocessing'

# Float elements of one pixels x centers distance block; bounds the memory.
_DISTANCE_BLOCK_ELEMENTS = 1 << 22


@dataclasses.dataclass(frozen=True)
class PostProcessOptions:
    """Everything post-processing needs, as plain values.

    Attributes:
      thing_class_ids: semantic labels whose pixels form instances.
      label_divisor: panoptic = semantic * label_divisor + instance.
      void_label: semantic label of void (panoptic void is
        void_label * label_divisor).
      center_score_threshold: heatmap values at or below are no centers.
      nms_kernel: max-pool window of the center NMS.
      keep_k_centers: at most this many centers (<= 0: all; needs dynamic
        shapes, so not under XLA).
      stuff_area_limit: stuff segments of this size (see the merge rules).
      merge_with_tf_op_semantics: the merge rules of DeepLab2's compiled op.
      static_shapes: use only static shapes (required under
        jit_compile=True): centers padded to keep_k_centers and distances
        computed for every pixel. Same results, more work.
      jit_dense_stages: compile the per-pixel stages and the grouping's
        distance kernel with XLA (off for runtimes without XLA, e.g.
        TFLite/ONNX conversion).
      runtime: where the ops will run (`portable_ops.RUNTIMES`): 'tflite',
        'tflite_int8' and 'onnx' swap in the grouping and segment
        reductions their converters lower (see portable_ops), with static
        shapes and no XLA.
    """
    thing_class_ids: tuple[int, ...]
    label_divisor: int
    void_label: int
    center_score_threshold: float = 0.1
    nms_kernel: int = 3
    keep_k_centers: int = 400
    stuff_area_limit: int = 0
    merge_with_tf_op_semantics: bool = False
    static_shapes: bool = False
    jit_dense_stages: bool = True
    runtime: str = 'tensorflow'

    def __post_init__(self):
        if self.runtime not in portable_ops.RUNTIMES:
            raise ValueError(f'Unknown post-processing runtime '
                             f'{self.runtime!r}; choose one of '
                             f'{", ".join(portable_ops.RUNTIMES)}.')
        if self.runtime != 'tensorflow' and (
                not self.static_shapes or self.jit_dense_stages
                or self.keep_k_centers <= 0):
            raise ValueError(
                f'Post-processing for {self.runtime} needs static shapes, '
                'no XLA and keep_k_centers > 0 (a fixed number of center '
                'slots).')


def semantic_prediction(semantic_probs):
    """[B, H, W, C] scores -> [B, H, W] int32 argmax (ties: first class)."""
    return tf.argmax(semantic_probs, axis=-1, output_type=tf.int32)


def thing_mask(semantic, thing_class_ids, num_classes: int):
    """[B, H, W] int32 labels in [0, num_classes) -> [B, H, W] bool, true on
    thing-class pixels (one table lookup per pixel)."""
    table = [label in thing_class_ids for label in range(num_classes)]
    return tf.gather(tf.constant(table, tf.bool), semantic)


def nms_center_heatmap(center_heatmap, threshold: float, nms_kernel: int):
    """[B, H, W] raw heatmap -> [B, H, W] with only the kept peaks non-zero.

    Values <= threshold become 0; a pixel survives when it equals the max of
    its nms_kernel window. Zero padding (DeepLab2's) and SAME max-pooling
    agree here because thresholded values are >= 0, and a square max-pool
    is a column pool of a row pool (2k instead of k^2 comparisons).
    """
    heatmap = tf.where(center_heatmap > threshold, center_heatmap, 0.0)
    pooled = tf.nn.max_pool2d(heatmap[..., None], [nms_kernel, 1], 1, 'SAME')
    pooled = tf.nn.max_pool2d(pooled, [1, nms_kernel], 1, 'SAME')
    return tf.where(pooled[..., 0] == heatmap, heatmap, 0.0)


@dataclasses.dataclass
class Centers:
    """K center slots per image, valid ones first, in raster order.

    yx: [B, K, 2] float32 coordinates; scores: [B, K] heatmap values (0 for
    invalid slots); valid: [B, K] bool.
    """
    yx: tf.Tensor
    scores: tf.Tensor
    valid: tf.Tensor


def select_centers(center_map, keep_k_centers: int,
                   static_shapes: bool) -> Centers:
    """Centers from an NMS'd [B, H, W] map.

    When more than keep_k_centers peaks exist, DeepLab2 keeps those strictly
    above the k-th largest value (so ties at that value are all dropped);
    the same rule applies here.
    """
    shape = tf.shape(center_map)
    width, pixels = shape[2], shape[1] * shape[2]
    flat = tf.reshape(center_map, [shape[0], -1])
    num_peaks = tf.reduce_sum(tf.cast(flat > 0, tf.int32), axis=1)
    known_pixels = (center_map.shape[1] * center_map.shape[2]
                    if None not in center_map.shape[1:] else None)
    if keep_k_centers > 0 and static_shapes and known_pixels:
        slots = min(keep_k_centers, known_pixels)  # a static slot count
    elif keep_k_centers > 0:
        slots = (keep_k_centers if static_shapes
                 else tf.minimum(keep_k_centers, tf.reduce_max(num_peaks)))
        slots = tf.minimum(slots, pixels)
    elif static_shapes:
        raise ValueError('keep_k_centers <= 0 (keep all centers) needs '
                         'dynamic shapes; set keep_k_centers for XLA.')
    else:
        slots = tf.reduce_max(num_peaks)
    scores, indices = tf.math.top_k(flat, slots)
    valid = scores > 0
    if keep_k_centers > 0:
        over_limit = num_peaks > keep_k_centers
        kth = scores[:, -1:]
        valid &= ~over_limit[:, None] | (scores > kth)
    # Raster order with the valid slots first: sort flat indices, invalid
    # ones pushed past every pixel index.
    order_key = tf.sort(tf.where(valid, indices, pixels), axis=1)
    if isinstance(slots, int):
        order_key.set_shape([None, slots])  # tf.sort forgets it
    valid = order_key < pixels
    index = tf.where(valid, order_key, 0)
    yx = tf.cast(tf.stack([index // width, index % width], axis=-1),
                 tf.float32)
    scores = tf.where(valid, tf.gather(flat, index, batch_dims=1), 0.0)
    return Centers(yx=yx, scores=scores, valid=valid)


def _nearest_in_blocks(points, centers_yx, valid, block):
    """Brute-force nearest center over points in blocks of `block` rows
    (bounded memory)."""
    count = tf.shape(points)[0]
    padded = tf.pad(points, [[0, (-count) % block], [0, 0]])
    blocks = tf.reshape(padded, [-1, block, 2])
    nearest = tf.map_fn(
        lambda p: nearest_center.brute_force(p, centers_yx, valid), blocks,
        fn_output_signature=tf.int32)
    return tf.reshape(nearest, [-1])[:count]


def _group_image_dynamic(offsets, is_thing, centers_yx, valid, fused=True):
    """One image: only thing pixels, against only the valid centers that
    can be nearest (nearest_center: a cost flat in the center count).
    fused: the XLA distance kernel (off for runtimes without XLA)."""
    num_centers = tf.reduce_sum(tf.cast(valid, tf.int32))
    height, width = tf.shape(is_thing)[0], tf.shape(is_thing)[1]

    def nearest_of_thing_pixels():
        coords = tf.cast(tf.where(is_thing), tf.int32)
        points = tf.cast(coords, tf.float32) + tf.gather_nd(offsets, coords)
        # Valid slots come first, so slot indices are center indices.
        nearest = nearest_center.nearest(points, centers_yx[:num_centers],
                                         height, width, fused=fused)
        # A segment max is a scatter here (one value per pixel) and several
        # times faster than scatter_nd; non-thing pixels get INT_MIN, which
        # group_pixels masks out.
        scattered = tf.math.unsorted_segment_max(
            nearest, coords[:, 0] * width + coords[:, 1],
            tf.size(is_thing))
        return tf.reshape(scattered, tf.shape(is_thing))

    return tf.cond(num_centers > 0, nearest_of_thing_pixels,
                   lambda: tf.zeros_like(is_thing, tf.int32))


def _group_image_static(offsets, is_thing, centers_yx, valid):
    """One image, static shapes: every pixel against every center slot."""
    height, width = tf.shape(offsets)[0], tf.shape(offsets)[1]
    grid_y, grid_x = tf.meshgrid(tf.range(height), tf.range(width),
                                 indexing='ij')
    points = (tf.cast(tf.stack([grid_y, grid_x], -1), tf.float32) + offsets)
    block = max(1, _DISTANCE_BLOCK_ELEMENTS // int(valid.shape[0]))
    nearest = _nearest_in_blocks(tf.reshape(points, [-1, 2]), centers_yx,
                                 valid, block)
    return tf.reshape(nearest, [height, width])


def group_pixels(offset_map, is_thing, centers: Centers,
                 static_shapes: bool, fused: bool = True):
    """[B, H, W, 2] (dy, dx) offsets, [B, H, W] thing mask -> [B, H, W]
    int32 instance ids: 1 + index of the nearest center on thing pixels, 0
    elsewhere and in images without centers. fused: compile the dynamic
    path's distance kernel with XLA (TFLite/ONNX converters cannot take an
    XLA-compiled function call)."""
    if static_shapes:
        group = _group_image_static
    else:
        group = lambda *args: _group_image_dynamic(*args, fused=fused)
    nearest = tf.map_fn(
        lambda args: group(*args),
        (offset_map, is_thing, centers.yx, centers.valid),
        fn_output_signature=tf.int32)
    has_center = tf.reduce_any(centers.valid, axis=1)[:, None, None]
    return tf.where(is_thing & has_center, nearest + 1, 0)


def instance_scores(instance, center_scores):
    """[B, H, W] instance ids, [B, K] center scores -> [B, H, W] score of
    each pixel's center (0 where the id is 0)."""
    scores = tf.pad(center_scores, [[0, 0], [1, 0]])  # id 0 -> score 0
    return tf.gather(scores, instance, batch_dims=1)


# ---------------------------------------------------------------- merge


def merge_semantic_and_instance(semantic, instance, is_thing,
                                num_classes: int, num_instances,
                                options: PostProcessOptions):
    """Panoptic map [B, H, W] int32 from semantic and instance maps.

    Args:
      semantic: [B, H, W] int32 labels in [0, num_classes).
      instance: [B, H, W] int32 ids in [0, num_instances].
      is_thing: [B, H, W] bool, thing-class pixels.
    An instance's class is the majority of its thing pixels' labels (ties:
    the smaller label); ids restart at 1 within each class, in raster order
    of each instance's first pixel.
    """
    divisor = options.label_divisor
    void = options.void_label * divisor
    op_rules = options.merge_with_tf_op_semantics
    # The op treats thing pixels of instance 0 as one more instance.
    member = is_thing if op_rules else is_thing & (instance > 0)
    reductions = portable_ops.REDUCTIONS[options.runtime]
    votes, first_pixel = _instance_votes(semantic, instance, member,
                                         num_classes, num_instances,
                                         reductions)
    present = tf.reduce_sum(votes, axis=-1) > 0                  # [B, K+1]
    majority = tf.argmax(votes, axis=-1, output_type=tf.int32)   # [B, K+1]
    same_class = majority[:, :, None] == majority[:, None, :]
    earlier = first_pixel[:, None, :] < first_pixel[:, :, None]
    rank = tf.reduce_sum(tf.cast(present[:, None, :] & same_class & earlier,
                                 tf.int32), axis=-1)
    thing_value = tf.gather(majority * divisor + rank + 1, instance,
                            batch_dims=1)
    stuff = ~is_thing if op_rules else ~is_thing & (instance == 0)
    stuff_value = _stuff_values(semantic, stuff, num_classes, options,
                                reductions)
    return tf.where(member, thing_value, tf.where(stuff, stuff_value, void))


def _instance_votes(semantic, instance, member, num_classes, num_instances,
                    reductions: portable_ops.SegmentReductions):
    """Per image and instance id: label histogram [B, K+1, C] of member
    pixels, and the flat index of the instance's first pixel [B, K+1]."""
    batch = tf.shape(semantic)[0]
    slots = num_instances + 1
    image = tf.range(batch)[:, None, None] * tf.ones_like(semantic)
    segment = image * slots + instance
    outside = batch * slots  # one spare segment for non-member pixels
    segment = tf.where(member, segment, outside)
    segment = tf.reshape(segment, [-1])
    counts = reductions.sum(
        _ones_at_run_time(segment),
        segment * num_classes + tf.reshape(semantic, [-1]),
        (outside + 1) * num_classes)
    votes = tf.reshape(counts[:outside * num_classes],
                       [batch, slots, num_classes])
    # Each pixel's raster index, broadcast from a column of row starts at
    # run time (zeros taken from the labels' first column, which are >= 0):
    # an [H, W] index would be folded into a TFLite file as a constant.
    height, width = tf.shape(semantic)[1], tf.shape(semantic)[2]
    zero = tf.minimum(semantic[:, :, :1], 0)
    row_start = (tf.range(height)[None, :, None] + zero) * width
    flat_index = row_start + tf.range(width)[None, None, :]
    first = reductions.min(
        tf.reshape(tf.broadcast_to(flat_index, tf.shape(semantic)), [-1]),
        segment, outside + 1)
    return votes, tf.reshape(first[:outside], [batch, slots])


def _ones_at_run_time(segment):
    """Ones shaped like `segment` (ids >= 0), computed from it: a TFLite
    converter stores `tf.ones_like` of a static shape as a constant, one
    value per pixel in the file."""
    return tf.cast(segment >= 0, segment.dtype)


def _stuff_values(semantic, stuff, num_classes, options, reductions):
    """[B, H, W] panoptic value of each pixel if it is stuff: its class, or
    void when its segment is too small."""
    batch = tf.shape(semantic)[0]
    image = tf.range(batch)[:, None, None] * tf.ones_like(semantic)
    segment = tf.reshape(tf.where(stuff, image * num_classes + semantic,
                                  batch * num_classes), [-1])
    area = reductions.sum(
        _ones_at_run_time(segment), segment, batch * num_classes + 1)[:-1]
    area = tf.reshape(area, [batch, num_classes])
    limit = options.stuff_area_limit
    if not options.merge_with_tf_op_semantics:
        keep = area >= limit
    elif limit > 0:
        keep = area > limit
    else:
        keep = tf.ones_like(area, tf.bool)
    keep_pixel = tf.gather(keep, semantic, batch_dims=1)
    void = options.void_label * options.label_divisor
    return tf.where(keep_pixel, semantic * options.label_divisor, void)


# ---------------------------------------------------------------- entry


class PanopticPostProcessor:
    """Callable: network outputs -> post-processed predictions.

    Input dict: `semantic_probs` [B, H, W, C], `center_heatmap` [B, H, W],
    `offset_map` [B, H, W, 2]. Output dict: `semantic_pred`,
    `instance_pred`, `panoptic_pred` (int32), `instance_center_pred`,
    `instance_scores` (float32), all [B, H, W].

    The per-pixel stages before and after grouping run as XLA clusters when
    `options.jit_dense_stages` (fused loops: several times faster on CPU;
    compiled once per input size).
    """

    def __init__(self, options: PostProcessOptions):
        self.options = options
        self._dense, self._merge = self._dense_stage, self._merge_stage
        if options.jit_dense_stages and options.keep_k_centers > 0:
            self._dense = tf.function(self._dense_stage, jit_compile=True,
                                      reduce_retracing=True)
            self._merge = tf.function(self._merge_stage, jit_compile=True,
                                      reduce_retracing=True)

    def __call__(self, outputs: Mapping[str, tf.Tensor]) -> dict:
        # The scope names its ops: an int8 TFLite export keeps them float.
        with tf.name_scope(NAME_SCOPE):
            return self._postprocess(outputs)

    def _postprocess(self, outputs: Mapping[str, tf.Tensor]) -> dict:
        probs = outputs[common.PRED_SEMANTIC_PROBS_KEY]
        semantic, is_thing, center_map = self._dense(
            probs, tf.cast(outputs[common.PRED_CENTER_HEATMAP_KEY],
                           tf.float32))
        centers = select_centers(center_map, self.options.keep_k_centers,
                                 self.options.static_shapes)
        offsets = tf.cast(outputs[common.PRED_OFFSET_MAP_KEY], tf.float32)
        if self.options.runtime == 'tensorflow':
            instance = group_pixels(offsets, is_thing, centers,
                                    self.options.static_shapes,
                                    fused=self.options.jit_dense_stages)
        else:
            instance = portable_ops.group_pixels_by_center_loop(
                offsets, is_thing, centers.yx, centers.valid,
                loop_free=self.options.runtime == 'tflite_int8')
        panoptic, scores = self._merge(semantic, instance, is_thing,
                                       self._pad_slots(centers.scores),
                                       probs.shape[-1])
        return {
            common.PRED_SEMANTIC_KEY: semantic,
            common.PRED_INSTANCE_KEY: instance,
            common.PRED_PANOPTIC_KEY: panoptic,
            common.PRED_INSTANCE_CENTER_KEY: center_map,
            common.PRED_INSTANCE_SCORES_KEY: scores,
        }

    def _dense_stage(self, probs, heatmap):
        options = self.options
        semantic = semantic_prediction(probs)
        is_thing = thing_mask(semantic, options.thing_class_ids,
                              probs.shape[-1])
        center_map = nms_center_heatmap(
            heatmap, options.center_score_threshold, options.nms_kernel)
        return semantic, is_thing, center_map

    def _merge_stage(self, semantic, instance, is_thing, center_scores,
                     num_classes: int):
        panoptic = merge_semantic_and_instance(
            semantic, instance, is_thing, num_classes,
            center_scores.shape[1] or tf.shape(center_scores)[1],
            self.options)
        return panoptic, instance_scores(instance, center_scores)

    def _pad_slots(self, scores):
        """Center scores padded to keep_k_centers slots (a static shape for
        the merge); unchanged when all centers are kept."""
        if self.options.keep_k_centers <= 0:
            return scores
        pad = self.options.keep_k_centers - tf.shape(scores)[1]
        scores = tf.pad(scores, [[0, 0], [0, pad]])
        return tf.ensure_shape(scores, [None, self.options.keep_k_centers])


def build_postprocessor(config, static_shapes: bool = False,
                        descriptor: datasets.DatasetDescriptor | None = None
                        ) -> PanopticPostProcessor:
    """The post-processor an ExperimentOptions describes: its evaluator
    options and its eval dataset's descriptor (`descriptor`, when the caller
    has resolved it once for the run; default: looked up from
    `config.eval_dataset_options.dataset`)."""
    if descriptor is None:
        descriptor = datasets.get_dataset_descriptor(
            config.eval_dataset_options.dataset)
    evaluator = config.evaluator_options
    return PanopticPostProcessor(PostProcessOptions(
        thing_class_ids=tuple(descriptor.class_has_instances_list),
        label_divisor=descriptor.panoptic_label_divisor,
        void_label=descriptor.ignore_label,
        center_score_threshold=evaluator.center_score_threshold,
        nms_kernel=evaluator.nms_kernel,
        keep_k_centers=evaluator.keep_k_centers,
        stuff_area_limit=evaluator.stuff_area_limit,
        merge_with_tf_op_semantics=(
            evaluator.merge_semantic_and_instance_with_tf_op),
        static_shapes=static_shapes))
