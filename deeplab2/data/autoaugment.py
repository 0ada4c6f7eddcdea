"""AutoAugment as DeepLab2 trains with it: photometric ops on uint8 images.

DeepLab2's Cityscapes MobileNetV3 / Wide-ResNet / SWideRNet and COCO
ResNet-50-beta configs set `augmentations.autoaugment_policy_name`. The
policies draw from a reduced operation space of nine photometric ops
(Cubuk et al., "AutoAugment", CVPR 2019; "RandAugment", CVPR 2020); labels
never change. Every op here reproduces DeepLab2's output bit for bit,
including three behaviours that differ from PIL and that DeepLab2's
published models were trained with:

  * Contrast blends towards a constant grey of (pixel count) / 256, clipped
    to [0, 255], not towards the mean intensity;
  * Solarize compares against its threshold cast to uint8, so 256 wraps to
    0 and, like 0, inverts every pixel;
  * Posterize to 0 bits shifts by 8, which TF's uint8 shifts clamp to 7: it
    equals Posterize to 1 bit.

Random draws: one sub-policy uniformly, then each of its two ops applies
when floor(u + probability) == 1 for u uniform in [0, 1). With a [2] seed
the draws are stateless (reproducible, resumable).

`apply_op`, `apply_sub_policy` and `distort` map uint8 [H, W, 3] -> uint8
[H, W, 3]; inside, and in `distort_window` (the training input's path), the
ops work on float32 pixel values. All run eagerly, in `tf.function` and in
`tf.data`.
"""

from typing import Optional

import tensorflow as tf

# Levels run from 0 to this value in the policies' encoding.
MAX_LEVEL = 10.0

# Probabilities by index, as the policies encode them.
_PROBABILITIES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# DeepLab2's `simple_classification_policy`: five sub-policies of two ops,
# each op as (index into REDUCED_OPERATIONS, probability index, level).
_SIMPLE_CLASSIFICATION = (
    ((8, 2, 7), (7, 1, 10)),
    ((1, 0, 9), (6, 1, 10)),
    ((8, 1, 9), (5, 1, 9)),
    ((4, 1, 7), (1, 3, 9)),
    ((8, 1, 1), (1, 1, 7)),
)
# Policy name -> (encoded sub-policies, magnitude scale).
_POLICIES = {
    'simple_classification_policy': (_SIMPLE_CLASSIFICATION, 1),
    'simple_classification_policy_magnitude_scale_0.2': (
        _SIMPLE_CLASSIFICATION, 0.2),
}


def policy_names() -> tuple[str, ...]:
    """The names `get_policy` knows."""
    return tuple(_POLICIES)


def get_policy(name: str) -> list[list[tuple[str, float, float]]]:
    """The sub-policies of a named policy: [[(op, probability, level), x2]].

    Levels are already multiplied by the policy's magnitude scale (in
    Python floats, as DeepLab2 does: 7 * 0.2 is 1.4000000000000001).

    Raises:
      ValueError: unknown name (the message lists the known ones).
    """
    if name not in _POLICIES:
        raise ValueError(
            f'Unknown AutoAugment policy {name!r}; known policies: '
            f'{", ".join(policy_names())}.')
    encoded, magnitude_scale = _POLICIES[name]
    return [[(REDUCED_OPERATIONS[op], _PROBABILITIES[probability],
              level * magnitude_scale)
             for op, probability, level in sub_policy]
            for sub_policy in encoded]


def level_to_argument(name: str, level: float):
    """The argument op `name` receives at `level` (None for argument-less
    ops): Posterize bits int(level / 10 * 4), Solarize threshold
    int(level / 10 * 256), enhance factors level / 10 * 1.8 + 0.1."""
    _, argument_rule = _operation(name)
    if argument_rule is None:
        return None
    return argument_rule(level / MAX_LEVEL)


# The ops work on pixel values: float32 holding the integers 0-255 of a uint8
# image. Each op's result is what DeepLab2's uint8 op gives, in float32, so
# a chain of ops never leaves float32 and the training input (float32)
# needs no casts. TensorFlow's element-wise kernels on large tensors are
# several times faster in float32 than on uint8 or bool-selected data.


def _truncate(values: tf.Tensor, in_range: bool = False) -> tf.Tensor:
    """What DeepLab2 keeps of float32 values, clipping to [0, 255] and
    casting to uint8 (which truncates), as float32.

    in_range: the values are known to lie in [0, 256), so the clip is left
      out.
    """
    if not in_range:
        values = tf.clip_by_value(values, 0.0, 255.0)
    return tf.floor(values)


def _select(condition: tf.Tensor, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """tf.where for operands of one shape. tf.where (SelectV2) goes
    through its broadcasting kernel even then: 18 against 2 ms for
    1025x2049x3 float32 (1 core, AMD EPYC)."""
    return tf.raw_ops.Select(condition=condition, x=x, y=y)


def _is_fraction(factor) -> bool:
    return isinstance(factor, (int, float)) and 0.0 <= factor <= 1.0


def blend(start, end: tf.Tensor, factor: float) -> tf.Tensor:
    """start + factor * (end - start) in float32, clipped, truncated.

    factor 0 gives `start`, 1 gives `end` (exactly, for pixel values);
    factors above 1 extrapolate past `end`. For a factor in [0, 1] the
    clip is left out, as DeepLab2 leaves it out: the rounded product is no
    larger than |end - start| (rounding is monotone), so the result lies
    between the two pixel values already.
    """
    return _truncate(start + factor * (end - start),
                     in_range=_is_fraction(factor))


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
    """Stretches each channel linearly so its min is 0 and its max 255
    (a channel of one value stays as it is)."""
    low = tf.reduce_min(image, axis=[0, 1])
    high = tf.reduce_max(image, axis=[0, 1])
    stretched = high > low
    # Scale 1 and offset 0 leave a flat channel's values exactly as they
    # are.
    scale = tf.where(stretched, 255.0 / tf.maximum(high - low, 1.0), 1.0)
    offset = tf.where(stretched, low * scale, 0.0)
    return _truncate(image * scale - offset)


def _channel_indices(image: tf.Tensor) -> tf.Tensor:
    """int32 [H, W * 3]: each value of channel c offset by 256 c, indexing
    the three channels' 256-entry tables laid end to end."""
    # The offsets are added to whole rows, [H, W * 3] + a [W * 3] pattern:
    # broadcasting a [3] vector over the last axis took 5x as long (14
    # against 3 ms for 1025x2049, 1 core).
    shape = tf.shape(image)
    rows = tf.cast(tf.reshape(image, [shape[0], -1]), tf.int32)
    return rows + tf.tile(tf.constant([0, 256, 512]), [shape[1]])


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalization per channel, PIL's lookup-table rule."""
    indices = _channel_indices(image)
    return _look_up(indices, _equalize_tables(indices), tf.shape(image))


def _equalize_tables(indices: tf.Tensor) -> tf.Tensor:
    """Equalize's lookup table of each channel of the image whose
    `_channel_indices` are `indices`: [3, 256] int32 (the identity for a
    channel PIL leaves as it is)."""
    counts = tf.reshape(tf.math.bincount(indices, minlength=768,
                                         maxlength=768), [3, 256])
    levels = tf.range(256)
    # PIL leaves out the count of the brightest occupied level.
    brightest = tf.reduce_max(tf.where(counts > 0, levels, -1), axis=1)
    step = ((tf.reduce_sum(counts, axis=1) -
             tf.gather(counts, brightest, batch_dims=1)) // 255)[:, None]
    divisor = tf.maximum(step, 1)
    tables = (tf.cumsum(counts, axis=1) + divisor // 2) // divisor
    tables = tf.clip_by_value(
        tf.concat([tf.zeros([3, 1], tf.int32), tables[:, :-1]], 1), 0, 255)
    return tf.where(step > 0, tables, levels)


def _look_up(indices: tf.Tensor, tables: tf.Tensor, shape) -> tf.Tensor:
    """Pixel values [H, W, 3] (`shape`): each value of channel c, as
    `_channel_indices` gives them, mapped through tables[c] ([3, 256] of
    values 0-255)."""
    # gather_nd copies single elements faster than gather: 12 against
    # 19 ms for 1025x2049x3 (1 core, AMD EPYC).
    flat = tf.reshape(tf.cast(tables, tf.float32), [-1])
    return tf.reshape(tf.gather_nd(flat, indices[..., tf.newaxis]), shape)


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255.0 - image


def posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
    """Keeps the top `bits` bits of every value (0 behaves as 1, see top)."""
    # Division by a power of two and flooring are exact on pixel values.
    step = 2.0 ** min(max(8 - bits, 0), 7)
    return tf.floor(image / step) * step


def solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
    """Inverts values at or above the threshold (taken modulo 256)."""
    return _select(image < float(threshold % 256), image, 255.0 - image)


def _grey(image: tf.Tensor) -> tf.Tensor:
    """tf.image.rgb_to_grayscale of the uint8 image (float32 scaled by
    1/255, ITU weights, back to uint8 by * 255.5 and truncation), in all
    three channels."""
    grey = tf.tensordot(image * (1.0 / 255), [0.2989, 0.5870, 0.1140],
                        [[-1], [-1]])
    grey = tf.floor(grey * 255.5)[..., tf.newaxis]
    # Same-shape operands for the blend: broadcasting [H, W, 1] in each of
    # its ops is slower than one tile.
    return tf.tile(grey, [1, 1, 3])


def color(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Saturation: blends from the image's grey version towards it."""
    return blend(_grey(image), image, factor)


def contrast(image: tf.Tensor, factor: float,
             pixels: tf.Tensor | None = None) -> tf.Tensor:
    """Blends from a constant grey towards the image.

    The grey is DeepLab2's: the pixel count / 256 (its histogram sum over
    256 bins, meant as a mean), clipped to 255 and truncated to uint8.

    pixels: the pixel count of the whole image when `image` is a part of it.
    """
    if pixels is None:
        shape = tf.shape(image)
        pixels = shape[0] * shape[1]
    grey = _truncate(tf.cast(pixels, tf.float32) / 256.0)
    return blend(grey, image, factor)


def brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blends from black towards the image: 0 + factor * (image - 0) is
    factor * image exactly."""
    return _truncate(factor * image, in_range=_is_fraction(factor))


def sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
    """Blends from a smoothed image (PIL's SMOOTH kernel on the interior,
    the original one-pixel border) towards the image."""
    size = tf.shape(image)[:2]
    origin = tf.zeros([2], tf.int32)
    return _sharpness_window(image, factor, origin, origin, size)


def _sharpness_window(part: tf.Tensor, factor: float, part_start: tf.Tensor,
                      start: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Sharpness of the `size` pixels from `start` of an image, computed
    from `part`, its rows and columns from `part_start`, which holds the
    window and the 3x3 neighbourhood of every window pixel off the image's
    border. All positions are in the image's coordinates, [2] int32 (row,
    column)."""
    kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
    # Aligned with the part's interior. A mean of pixel values lies in
    # [0, 256), so truncating needs no clip.
    smoothed = _truncate(tf.nn.depthwise_conv2d(
        part[tf.newaxis], kernel, strides=[1, 1, 1, 1],
        padding='VALID')[0], in_range=True)
    interior = part[1:-1, 1:-1]
    # A part under 3 pixels a side has no interior, but the convolution
    # then returns the part's size, not an empty result.
    smoothed = tf.slice(smoothed, [0, 0, 0], tf.shape(interior))
    interior = blend(smoothed, interior, factor)
    # The part's outer ring keeps its values: there the part is either the
    # image's border, which keeps them (blending a value with itself gives
    # it back), or outside the window. `[1:][-1:]` is empty for one row.
    middle = tf.concat([part[1:-1, :1], interior, part[1:-1, 1:][:, -1:]], 1)
    result = tf.concat([part[:1], middle, part[1:][-1:]], 0)
    begin = tf.concat([start - part_start, [0]], 0)
    return tf.slice(result, begin, tf.concat([size, [-1]], 0))


def _enhance_factor(fraction: float) -> float:
    return fraction * 1.8 + 0.1


# The reduced operation space, in the order a policy's operation indices
# refer to: name -> (op on pixel values, rule from level / MAX_LEVEL to the
# op's argument, None for the argument-less ops).
_OPERATIONS = {
    'AutoContrast': (auto_contrast, None),
    'Equalize': (equalize, None),
    'Invert': (invert, None),
    'Posterize': (posterize, lambda fraction: int(fraction * 4)),
    'Solarize': (solarize, lambda fraction: int(fraction * 256)),
    'Color': (color, _enhance_factor),
    'Contrast': (contrast, _enhance_factor),
    'Brightness': (brightness, _enhance_factor),
    'Sharpness': (sharpness, _enhance_factor),
}
REDUCED_OPERATIONS = tuple(_OPERATIONS)


def _operation(name: str):
    if name not in _OPERATIONS:
        raise ValueError(f'Unknown AutoAugment op {name!r}; known ops: '
                         f'{", ".join(REDUCED_OPERATIONS)}.')
    return _OPERATIONS[name]


def _apply_to_values(values: tf.Tensor, name: str, argument=None):
    op, _ = _operation(name)
    if argument is None:
        return op(values)
    return op(values, argument)


def _pixel_values(image, what: str) -> tf.Tensor:
    """The uint8 `image` as float32 pixel values; TypeError naming `what`
    otherwise."""
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f'{what} needs a uint8 image, got '
                        f'{image.dtype.name}.')
    return tf.cast(image, tf.float32)


def apply_op(image, name: str, argument=None) -> tf.Tensor:
    """Applies op `name` with its `argument` (None for the argument-less).

    Args:
      image: uint8 [H, W, 3].
      name: one of REDUCED_OPERATIONS.
      argument: bits (Posterize), threshold (Solarize) or blend factor
        (Color, Contrast, Brightness, Sharpness), as `level_to_argument`
        gives them.
    Returns:
      uint8 [H, W, 3].
    """
    _operation(name)
    values = _pixel_values(image, f'AutoAugment op {name}')
    return tf.cast(_apply_to_values(values, name, argument), tf.uint8)


def _should_apply(probability: float, uniform: tf.Tensor) -> tf.Tensor:
    return tf.equal(tf.floor(uniform + probability), 1.0)


def apply_sub_policy(image: tf.Tensor, sub_policy, uniforms=None):
    """Applies each (op, probability, level) of `sub_policy` in turn to a
    uint8 image; returns uint8.

    uniforms: one float32 in [0, 1) per op deciding whether it applies
      (floor(u + probability) == 1); None applies every op.
    """
    values = _pixel_values(image, 'AutoAugment')
    for index, (name, probability, level) in enumerate(sub_policy):
        argument = level_to_argument(name, level)

        def augmented(values=values, name=name, argument=argument):
            return _apply_to_values(values, name, argument)

        if uniforms is None:
            values = augmented()
        else:
            values = tf.cond(_should_apply(probability, uniforms[index]),
                             augmented, lambda values=values: values)
    return tf.cast(values, tf.uint8)


def _ops_per_sub_policy(policy) -> int:
    """How many uniforms a draw takes: the longest sub-policy's op count."""
    return max(len(sub_policy) for sub_policy in policy)


def _draw(policy, seed):
    """(sub-policy index, one uniform per op) as `distort` draws them."""
    ops_per_sub_policy = _ops_per_sub_policy(policy)
    if seed is None:
        choice = tf.random.uniform([], maxval=len(policy), dtype=tf.int32)
        uniforms = tf.random.uniform([ops_per_sub_policy])
    else:
        choice_seed, uniforms_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.cast(seed, tf.int64),
                                                   num=2))
        choice = tf.random.stateless_uniform(
            [], choice_seed, maxval=len(policy), dtype=tf.int32)
        uniforms = tf.random.stateless_uniform([ops_per_sub_policy],
                                               uniforms_seed)
    return choice, uniforms


def _apply_drawn(image, policy, choice, uniforms):
    branches = [
        lambda sub_policy=sub_policy: apply_sub_policy(image, sub_policy,
                                                       uniforms)
        for sub_policy in policy]
    augmented = tf.switch_case(choice, branches)
    return tf.ensure_shape(augmented, image.shape)


def distort(image: tf.Tensor, policy_name: str,
            seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """One random sub-policy of `policy_name` applied to a uint8 image.

    seed: optional [2] int seed for stateless, reproducible draws.
    """
    policy = get_policy(policy_name)
    return _apply_drawn(image, policy, *_draw(policy, seed))


# How each op reads its input, for computing a window of the result alone.
# These map every pixel on its own (Contrast given the image's pixel count):
_POINTWISE = ('Invert', 'Posterize', 'Solarize', 'Color', 'Contrast',
              'Brightness')
# These map every pixel through statistics of the whole image:
_WHOLE_IMAGE_STATISTICS = ('AutoContrast', 'Equalize')
# Sharpness reads each pixel's 3x3 neighbourhood.


def _grown(region, image_size):
    """A (start, end) region one pixel larger on each side, in the image."""
    start, end = region
    return tf.maximum(start - 1, 0), tf.minimum(end + 1, image_size)


def _slice(image, region, within):
    """The part of `image` (which covers region `within`) in `region`."""
    begin = tf.concat([region[0] - within[0], [0]], 0)
    return tf.slice(image, begin, tf.concat([region[1] - region[0], [-1]], 0))


def _apply_to_window(image: tf.Tensor, ops, window) -> tf.Tensor:
    """`ops` [(name, argument)] applied in turn to the uint8 truncation of
    the float32 `image`, computing only what the (start, end) `window` of
    the result needs; returns that window as pixel values (float32).

    Working backwards from the window: a pointwise op needs its input on
    the same region, Sharpness one pixel more on each side; an op with
    whole-image statistics, and so every op before it, needs the whole
    image.
    """
    image_size = tf.shape(image)[:2]
    whole = (tf.zeros([2], tf.int32), image_size)
    last_statistics = max((index for index, (name, _) in enumerate(ops)
                           if name in _WHOLE_IMAGE_STATISTICS), default=-1)
    # regions[k]: the region of the input of op k; regions[-1] the output's.
    regions = [window]
    for index in reversed(range(len(ops))):
        if index <= last_statistics:
            regions.insert(0, whole)
        elif ops[index][0] == 'Sharpness':
            regions.insert(0, _grown(regions[0], image_size))
        else:
            regions.insert(0, regions[0])
    # What DeepLab2's cast to uint8 keeps of the image (in [0, 255]).
    part = _truncate(_slice(image, regions[0], whole), in_range=True)
    for index, (name, argument) in enumerate(ops):
        given, wanted = regions[index], regions[index + 1]
        if name == 'Sharpness':
            part = _sharpness_window(part, argument, given[0],
                                     wanted[0], wanted[1] - wanted[0])
        elif name == 'Contrast':
            part = contrast(part, argument, image_size[0] * image_size[1])
        elif name == 'Equalize':
            # The histogram is the part's, the lookup the wanted region's,
            # its columns of [H, W * 3] indices 3 per pixel.
            indices = _channel_indices(part)
            offset, extent = wanted[0] - given[0], wanted[1] - wanted[0]
            part = _look_up(
                tf.slice(indices, offset * [1, 3], extent * [1, 3]),
                _equalize_tables(indices), tf.concat([extent, [3]], 0))
        elif name in _POINTWISE:
            part = _apply_to_values(part, name, argument)
        else:  # Whole image in and out.
            part = _slice(_apply_to_values(part, name, argument), wanted,
                          given)
    return part


def distort_window(image: tf.Tensor, policy_name: str, begin: tf.Tensor,
                   size: tf.Tensor, seed: Optional[tf.Tensor] = None,
                   mirror=False) -> tf.Tensor:
    """The [begin, begin + size) window of the float32 image DeepLab2
    trains on: `distort` of `image` truncated to uint8, back in float32.

    Equal to slicing that whole result (same draws for the same seed), but
    only what the window needs is computed: the window itself for the
    pointwise ops (and when no drawn op applies, more than half the time
    with DeepLab2's policies), one pixel more per Sharpness, and the whole
    image only up to an op with whole-image statistics (Equalize's
    histogram), whose lookup is again applied to the window alone.

    Args:
      image: float32 [H, W, 3] with values in [0, 255].
      begin, size: [3] int32, as `tf.slice` takes them.
      mirror: boolean; the window comes out mirrored left-right.
    """
    policy = get_policy(policy_name)
    choice, uniforms = _draw(policy, seed)
    ops_per_sub_policy = _ops_per_sub_policy(policy)
    window = (begin[:2], begin[:2] + size[:2])
    # One branch per sub-policy and subset of its ops that applies.
    branches = []
    for sub_policy in policy:
        for mask in range(2 ** ops_per_sub_policy):
            ops = [(name, level_to_argument(name, level))
                   for bit, (name, _, level) in enumerate(sub_policy)
                   if mask >> bit & 1]
            branches.append(lambda ops=ops: _apply_to_window(image, ops,
                                                             window))
    probabilities = tf.constant(
        [[probability for _, probability, _ in sub_policy]
         + [0.0] * (ops_per_sub_policy - len(sub_policy))
         for sub_policy in policy], tf.float32)
    applies = _should_apply(tf.gather(probabilities, choice), uniforms)
    mask = tf.reduce_sum(tf.cast(applies, tf.int32) *
                         2 ** tf.range(ops_per_sub_policy))
    part = tf.switch_case(choice * 2 ** ops_per_sub_policy + mask, branches)
    return tf.cond(tf.convert_to_tensor(mirror),
                   lambda: tf.reverse(part, [1]), lambda: part)
