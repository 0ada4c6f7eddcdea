"""In-graph image/label preprocessing with DeepLab2's semantics.

One example at a time (no batch dimension), pure TF: every function works
eagerly and inside `tf.data.Dataset.map`. The composition matches DeepLab2's
`preprocess_image_and_label`:

  eval:   resize_to_range (max = crop size, never upscaling unless a minimum
          is set) -> pad bottom/right to the crop size.
  train:  optional resize_to_range -> random scale -> optional AutoAugment
          (on the image cast to uint8) -> pad to at least the crop size at a
          random offset -> random crop -> random left-right flip.

Images come out float32 RGB in [0, 255] (not normalized); padded image
pixels are 127.5, padded label pixels are the given `ignore_label` (for
panoptic labels pass `ignore * label_divisor`).

The random decisions are drawn by `draw_training_layout` and applied by the
deterministic `apply_training_layout`, so a test can replay a known crop and
flip. TF's random stream differs from DeepLab2's anyway; only the
distributions match.
"""

import dataclasses
from typing import Optional, Union

import tensorflow as tf

from deeplab2 import config_values
from deeplab2.data import autoaugment

# The pad value of images: DeepLab2 subtracts it, pads with zeros and adds it
# back, so padded pixels read as mid-grey (zero after `x / 127.5 - 1`).
MEAN_PIXEL = 127.5

# How DeepLab2 reads min/max_resize_value; config_values also checks
# max_resize_value against the crop with it, without importing TF.
ResizeValue = config_values.ResizeValue
resize_spec = config_values.resize_spec


def _scaled_size(size: tf.Tensor, ratio: tf.Tensor) -> tf.Tensor:
    """floor(size * ratio) in float32, as DeepLab2's helper: [2] -> [2] int32."""
    return tf.cast(tf.floor(tf.cast(size, tf.float32) * ratio), tf.int32)


def resize_to_range_size(size: tf.Tensor, min_size: ResizeValue = None,
                         max_size: ResizeValue = None,
                         factor: Optional[int] = None) -> tf.Tensor:
    """Output size of `resize_to_range` for an input `size` [2] int32.

    Scales (keeping aspect ratio) so both sides reach `min_size`, then scales
    down (never up) so both sides fit `max_size`; with `factor`, sides become
    a multiple of `factor` plus one (the max is first lowered to such a value
    so it still fits). The ratios are float64 then float32, the products
    float32 and floored: DeepLab2's arithmetic, so sizes match to the pixel.
    """
    size = tf.cast(size, tf.int32)
    output = size
    min_size = resize_spec(min_size)
    if min_size:
        ratios = tf.constant(min_size, tf.float64) / tf.cast(size, tf.float64)
        output = _scaled_size(size, tf.cast(tf.reduce_max(ratios), tf.float32))
    max_size = resize_spec(max_size)
    if max_size:
        if factor:
            max_size = tuple(m - (m - 1) % factor for m in max_size)
        ratios = (tf.constant(max_size, tf.float64) /
                  tf.cast(output, tf.float64))
        ratio = tf.minimum(tf.cast(tf.reduce_min(ratios), tf.float32), 1.0)
        output = _scaled_size(output, ratio)
    if factor:
        output += (factor - (output - 1) % factor) % factor
    return output


def nearest_source_indices(in_size, out_size, start, stop) -> tf.Tensor:
    """Input index of each output index in [start, stop) of an
    aligned-corners nearest-neighbour resize of a side from `in_size` to
    `out_size`: TF's ResizeNearestNeighbor (align_corners=True) formula,
    min(roundf(float32(i) * scale), in_size - 1) with the float32 scale
    (in - 1) / (out - 1) (in / out for a 1-pixel output) and roundf's
    halves away from zero. A range of it is a window of the resized side
    at the cost of the window alone."""
    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    scale = tf.where(
        out_size > 1,
        tf.cast(in_size - 1, tf.float32) /
        tf.cast(tf.maximum(out_size - 1, 1), tf.float32),
        tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32))
    source = tf.cast(tf.range(start, stop), tf.float32) * scale
    whole = tf.floor(source)
    # floor + (fraction >= 0.5) is roundf for the non-negative `source`;
    # floor(source + 0.5) is not (the sum can round up).
    index = tf.cast(whole, tf.int32) + tf.cast(source - whole >= 0.5,
                                               tf.int32)
    return tf.minimum(index, in_size - 1)


def resize_label(label: tf.Tensor, size: tf.Tensor, window=None,
                 mirror=False) -> tf.Tensor:
    """Aligned-corners nearest-neighbour resize of [H, W, C] `label` to
    `size` [2] (equal to TF's ResizeNearestNeighbor with align_corners, as
    DeepLab2 resizes labels), as two gathers, which are several times
    faster than that op on a one-channel int32 label.

    window: optional ((row_start, row_stop), (col_start, col_stop)) of the
      resized label to compute alone.
    mirror: boolean; the result mirrored left-right (free: the column
      indices are reversed).
    """
    in_size = tf.shape(label)[:2]
    if window is None:
        window = ((0, size[0]), (0, size[1]))
    rows = nearest_source_indices(in_size[0], size[0], *window[0])
    cols = nearest_source_indices(in_size[1], size[1], *window[1])
    cols = reversed_if(mirror, cols, axis=0)
    # The column gather moves single elements, the row gather whole rows:
    # gather columns on whichever of input and output has fewer rows.
    return tf.cond(
        tf.size(rows) <= in_size[0],
        lambda: tf.gather(tf.gather(label, rows, axis=0), cols, axis=1),
        lambda: tf.gather(tf.gather(label, cols, axis=1), rows, axis=0))


def resize_image_and_label(image: tf.Tensor, label: Optional[tf.Tensor],
                           size: tf.Tensor):
    """Resizes with aligned corners: bilinear image, nearest label.

    Args:
      image: [H, W, C] float32.
      label: [H, W, 1] int32, or None.
      size: [2] int32 new (height, width).
    Returns:
      (image [h, w, C] float32, label [h, w, 1] int32 or None).
    """
    # DeepLab2 uses TF1's align_corners resize; the raw op keeps that
    # sampling grid (TF2's tf.image.resize has only half-pixel centers).
    image = tf.raw_ops.ResizeBilinear(
        images=image[tf.newaxis], size=size, align_corners=True)[0]
    if label is not None:
        label = resize_label(label, size)
    return image, label


def random_scale(min_scale_factor: float, max_scale_factor: float,
                 step_size: float, seed=None) -> Union[float, tf.Tensor]:
    """Draws a scale factor; a Python float when min == max.

    step_size 0 draws uniformly from [min, max); otherwise one of the
    float32 values `linspace(min, max, int((max - min) / step + 1))`.
    """
    if min_scale_factor < 0 or min_scale_factor > max_scale_factor:
        raise ValueError(
            f'Scale factors must satisfy 0 <= min_scale_factor <= '
            f'max_scale_factor, got {min_scale_factor}, {max_scale_factor}.')
    if min_scale_factor == max_scale_factor:
        return float(min_scale_factor)
    if step_size == 0:
        return _uniform([], seed, minval=min_scale_factor,
                        maxval=max_scale_factor, dtype=tf.float32)
    num_steps = int((max_scale_factor - min_scale_factor) / step_size + 1)
    factors = tf.linspace(tf.constant(min_scale_factor, tf.float32),
                          tf.constant(max_scale_factor, tf.float32), num_steps)
    index = _uniform([], seed, minval=0, maxval=num_steps, dtype=tf.int32)
    return factors[index]


def scale_image_and_label(image: tf.Tensor, label: Optional[tf.Tensor],
                          scale):
    """Scales [H, W, C] image and [H, W, 1] label by `scale`.

    New sides are int32(float32(side) * scale), truncated as in DeepLab2.
    A Python scale of exactly 1 is a no-op.
    """
    if isinstance(scale, (int, float)) and scale == 1.0:
        return image, label
    size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
    return resize_image_and_label(image, label, size)


def _pad_image(image: tf.Tensor, paddings) -> tf.Tensor:
    """DeepLab2's image padding: subtract 127.5, pad with zeros, add 127.5
    back, rather than pad with 127.5: bit-identical to DeepLab2 also on the
    unpadded, non-integer pixels of a resized image."""
    return tf.pad(image - MEAN_PIXEL, paddings) + MEAN_PIXEL


def pad_image_and_label(image: tf.Tensor, label: Optional[tf.Tensor],
                        offset_height, offset_width, target_height,
                        target_width, ignore_label: Optional[int] = None):
    """Pads to [target_height, target_width] with the content at the offset.

    Args:
      image: [H, W, C] float32; padded with 127.5.
      label: [H, W, 1] int32 or None; padded with `ignore_label`.
    Returns:
      (image [th, tw, C] float32, label [th, tw, 1] or None).
    Raises:
      InvalidArgumentError: the content does not fit at that offset.
    """
    shape = tf.shape(image)
    bottom = target_height - offset_height - shape[0]
    right = target_width - offset_width - shape[1]
    checks = [
        tf.debugging.assert_non_negative(
            bottom, message='pad: image taller than the target height'),
        tf.debugging.assert_non_negative(
            right, message='pad: image wider than the target width'),
    ]
    with tf.control_dependencies(checks):
        paddings = [[offset_height, bottom], [offset_width, right], [0, 0]]
    image = _pad_image(image, paddings)
    if label is not None:
        if ignore_label is None:
            raise ValueError('Padding a label needs its ignore_label.')
        label = tf.pad(label, paddings, constant_values=ignore_label)
    return image, label


def window_slice(image: tf.Tensor, begin: tf.Tensor, size: tf.Tensor,
                 mirror) -> tf.Tensor:
    """tf.slice(image, begin, size), mirrored left-right when the boolean
    `mirror` is true. (A strided slice with stride -1 would copy once, but
    TF runs it several times slower than a slice and a reverse.)"""
    return reversed_if(mirror, tf.slice(image, begin, size), axis=1)


def reversed_if(condition, tensor: tf.Tensor, axis: int) -> tf.Tensor:
    """`tensor` reversed along `axis` when the boolean `condition` holds; a
    Python False (no flip, as at eval) adds no op to the graph."""
    if condition is False:
        return tensor
    return tf.cond(tf.convert_to_tensor(condition),
                   lambda: tf.reverse(tensor, [axis]), lambda: tensor)


@dataclasses.dataclass(frozen=True)
class TrainingLayout:
    """Where a (scaled) image lands in a training crop.

    pad_offset: (y, x) of the image inside the padded canvas, which is
      max(size, crop) per side. crop_offset: (y, x) of the crop inside the
      canvas. flip: whether the crop is mirrored left-right. Fields are
      scalar tensors or Python values.
    """
    pad_offset: tuple
    crop_offset: tuple
    flip: object


def _uniform(shape, seed, **kwargs):
    if seed is None:
        return tf.random.uniform(shape, **kwargs)
    return tf.random.stateless_uniform(shape, seed=seed, **kwargs)


def _seeds(seed, count: int):
    """`count` independent stateless seeds from one [2] seed (or Nones)."""
    if seed is None:
        return [None] * count
    return tf.unstack(tf.random.experimental.stateless_split(
        tf.cast(seed, tf.int64), num=count))


def draw_training_layout(image_size: tf.Tensor, crop_height: int,
                         crop_width: int, flip_probability: float = 0.5,
                         seed=None) -> TrainingLayout:
    """Draws pad offset, crop offset and flip for an image of `image_size`.

    Same distributions as DeepLab2: pad offsets uniform in
    [0, max(crop - side, 1)), crop offsets uniform over valid windows, flip
    with `flip_probability` (`u < p`, so 0 never and 1 always flips).
    """
    seeds = _seeds(seed, 5)
    image_size = tf.cast(image_size, tf.int32)
    crop = tf.constant([crop_height, crop_width])

    def offset(maxval, seed):
        return _uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)

    pad_margin = tf.maximum(crop - image_size, 1)
    pad_offset = (offset(pad_margin[0], seeds[0]),
                  offset(pad_margin[1], seeds[1]))
    canvas = tf.maximum(image_size, crop)
    crop_margin = canvas - crop + 1
    crop_offset = (offset(crop_margin[0], seeds[2]),
                   offset(crop_margin[1], seeds[3]))
    flip = _uniform([], seeds[4], dtype=tf.float32) < flip_probability
    return TrainingLayout(pad_offset, crop_offset, flip)


def apply_training_layout(image: tf.Tensor, label: Optional[tf.Tensor],
                          layout: TrainingLayout, crop_height: int,
                          crop_width: int, ignore_label: Optional[int],
                          label_size: Optional[tf.Tensor] = None,
                          image_window=window_slice):
    """Pads, crops and flips as `layout` says: [H, W, *] -> [ch, cw, *].

    The result is the crop of the padded canvas (max(size, crop) per side,
    the image at the pad offset), but the canvas is never built: only the
    part of the image inside the crop window is sliced out, then padded to
    the crop. The pad arithmetic is elementwise, so slicing first gives the
    same values; at scale 2 the canvas is four times the crop.

    label_size: when given, `label` is still to be resized to it (the
      image's size; nearest, aligned corners, see `resize_label`), and only
      its crop window is computed.
    image_window: (image, begin, size, mirror) -> the image's part of the
      window, mirrored left-right when `mirror`, for a photometric
      augmentation that computes only that part
      (`autoaugment.distort_window`); default `window_slice`.
    """
    channels = image.shape[-1]
    label_channels = None if label is None else label.shape[-1]
    size = tf.shape(image)[:2]
    crop = tf.constant([crop_height, crop_width])
    canvas = tf.maximum(size, crop)
    pad_offset = tf.stack([tf.convert_to_tensor(offset, tf.int32)
                           for offset in layout.pad_offset])
    crop_offset = tf.stack([tf.convert_to_tensor(offset, tf.int32)
                            for offset in layout.crop_offset])
    checks = [
        tf.debugging.assert_non_negative(
            pad_offset, message='pad: negative pad offset'),
        tf.debugging.assert_less_equal(
            pad_offset + size, canvas,
            message='pad: image larger than the canvas at that offset'),
        tf.debugging.assert_non_negative(
            crop_offset, message='crop: negative crop offset'),
        tf.debugging.assert_less_equal(
            crop_offset + crop, canvas,
            message='crop: window exceeds the image'),
    ]
    with tf.control_dependencies(checks):
        # The window in image coordinates, clipped to the image.
        start = tf.clip_by_value(crop_offset - pad_offset, 0, size)
    end = tf.clip_by_value(crop_offset - pad_offset + crop, 0, size)
    before = tf.maximum(pad_offset - crop_offset, 0)
    after = crop - before - (end - start)
    # The flip mirrors the padded crop: the window mirrored, with its left
    # and right padding swapped (the pad arithmetic is elementwise).
    flip = tf.convert_to_tensor(layout.flip)
    left, right = tf.cond(flip, lambda: (after[1], before[1]),
                          lambda: (before[1], after[1]))
    paddings = tf.stack([tf.stack([before[0], after[0]]),
                         tf.stack([left, right]), [0, 0]])
    begin = tf.concat([start, [0]], 0)
    extent = tf.concat([end - start, [-1]], 0)
    image = _pad_image(image_window(image, begin, extent, flip), paddings)
    image = tf.ensure_shape(image, [crop_height, crop_width, channels])
    if label is not None:
        if ignore_label is None:
            raise ValueError('Padding a label needs its ignore_label.')
        if label_size is None:
            label = window_slice(label, begin, extent, flip)
        else:
            label = resize_label(label, label_size,
                                 window=((start[0], end[0]),
                                         (start[1], end[1])), mirror=flip)
        label = tf.pad(label, paddings, constant_values=ignore_label)
        label = tf.ensure_shape(label, [crop_height, crop_width,
                                        label_channels])
    return image, label


def preprocess_image_and_label(
        image: tf.Tensor, label: Optional[tf.Tensor], *, crop_height: int,
        crop_width: int, min_resize_value: ResizeValue = None,
        max_resize_value: ResizeValue = None,
        resize_factor: Optional[int] = None, min_scale_factor: float = 1.0,
        max_scale_factor: float = 1.0, scale_factor_step_size: float = 0.0,
        ignore_label: Optional[int] = None, is_training: bool,
        flip_probability: float = 0.5, autoaugment_policy: str = '',
        seed=None, layout=None):
    """DeepLab2's preprocessing of one example.

    Args:
      image: [H, W, 3] any numeric dtype (uint8 from the decoder).
      label: [H, W, 1] integer, or None (eval without labels).
      crop_height, crop_width: output size.
      min_resize_value, max_resize_value, resize_factor: `resize_to_range`
        settings (None/0 = unset). At eval the max defaults to the crop size;
        a max larger than the crop size is an error.
      min_scale_factor, max_scale_factor, scale_factor_step_size: training
        random scale (see `random_scale`).
      ignore_label: label pad value (panoptic: ignore * label_divisor).
      is_training: random scale/crop/flip; otherwise pad at the bottom/right.
      flip_probability: probability of a left-right flip in training.
      autoaugment_policy: name of an AutoAugment policy applied in training
        after the random scale ('' for none).
      seed: optional [2] integer seed for stateless, reproducible draws.
      layout: optional `TrainingLayout` replacing the random pad/crop/flip
        (to replay a known decision).
    Returns:
      (resized_image [h, w, 3] float32 before scaling/padding (at eval: the
      resized input; in training: the input as float32), image
      [crop_height, crop_width, 3] float32, label [crop_height, crop_width, 1]
      int32 or None).
    """
    if is_training and label is None:
        raise ValueError('Training preprocessing needs a label.')
    image = tf.cast(image, tf.float32)
    if label is not None:
        label = tf.cast(label, tf.int32)
    max_resize_value = _checked_max_resize(
        max_resize_value, (crop_height, crop_width), is_training)
    if resize_spec(min_resize_value) or max_resize_value:
        size = resize_to_range_size(tf.shape(image)[:2], min_resize_value,
                                    max_resize_value, resize_factor)
        image, label = resize_image_and_label(image, label, size)
    resized_image = image
    if not is_training:
        image, label = pad_image_and_label(
            image, label, 0, 0, crop_height, crop_width, ignore_label)
        image = tf.ensure_shape(image, [crop_height, crop_width, 3])
        if label is not None:
            label = tf.ensure_shape(label, [crop_height, crop_width, 1])
        return resized_image, image, label
    # A third seed leaves the first two (and so the streams of runs
    # without AutoAugment) as they were: stateless_split's seeds are a prefix.
    scale_seed, layout_seed, augment_seed = _seeds(seed, 3)
    scale = random_scale(min_scale_factor, max_scale_factor,
                         scale_factor_step_size, scale_seed)
    # The label is resized later, and only inside the crop window (the
    # crop is a quarter of a label scaled by 2).
    scaled = scale_image_and_label(image, None, scale)[0]
    label_size = None if scaled is image else tf.shape(scaled)[:2]
    image = scaled
    image_window = window_slice
    if autoaugment_policy:
        # DeepLab2 truncates the scaled image to uint8 for the photometric
        # ops, whether or not the drawn ops then apply; the crop window is
        # all that is kept of it.
        def image_window(image, begin, size, mirror):
            return autoaugment.distort_window(image, autoaugment_policy,
                                              begin, size, augment_seed,
                                              mirror)
    if layout is None:
        layout = draw_training_layout(tf.shape(image)[:2], crop_height,
                                      crop_width, flip_probability,
                                      layout_seed)
    image, label = apply_training_layout(image, label, layout, crop_height,
                                         crop_width, ignore_label, label_size,
                                         image_window)
    return resized_image, image, label


def _checked_max_resize(max_resize_value, crop_size, is_training):
    """The effective max resize: the crop size at eval when unset."""
    max_resize_value = resize_spec(max_resize_value)
    if max_resize_value is None and not is_training:
        # Eval images larger than the crop are shrunk to fit it.
        max_resize_value = tuple(crop_size)
    if max_resize_value and (max_resize_value[0] > crop_size[0] or
                             max_resize_value[1] > crop_size[1]):
        raise ValueError(
            f'max_resize_value {max_resize_value} exceeds crop_size '
            f'{tuple(crop_size)}.')
    return max_resize_value
