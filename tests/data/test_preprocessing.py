"""Preprocessing: DeepLab2's resize, scale, pad, crop and flip semantics."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.data import autoaugment
from deeplab2.data import preprocessing

IGNORE = 255000


def _image_and_label(height, width):
    image = np.arange(height * width * 3, dtype=np.int64) % 256
    image = image.reshape(height, width, 3).astype(np.uint8)
    label = np.arange(height * width, dtype=np.int32).reshape(height, width, 1)
    return tf.constant(image), tf.constant(label)


@pytest.mark.parametrize('size,min_size,max_size,factor,expected', [
    ((256, 512), None, (257, 513), None, (256, 512)),  # never upscales
    ((1024, 2048), None, (513, 1025), None, (512, 1025)),  # 512.5 floors
    ((1024, 2048), None, (513, 1025), 4, (513, 1025)),  # 4k + 1 sides
    ((100, 200), 200, None, None, (200, 400)),  # both sides >= min
    ((100, 200), [0], [0], None, (100, 200)),  # 0 means unset
])
def test_resize_to_range_size(size, min_size, max_size, factor, expected):
    got = preprocessing.resize_to_range_size(tf.constant(size), min_size,
                                             max_size, factor)
    np.testing.assert_array_equal(got, expected)


def test_pad_puts_content_at_offset_and_fills_pad_values():
    image, label = _image_and_label(2, 3)
    padded, padded_label = preprocessing.pad_image_and_label(
        tf.cast(image, tf.float32), label, 1, 2, 4, 6, IGNORE)
    assert padded.shape == (4, 6, 3) and padded_label.shape == (4, 6, 1)
    np.testing.assert_array_equal(padded[1:3, 2:5], image.numpy())
    np.testing.assert_array_equal(padded_label[1:3, 2:5], label)
    mask = np.ones([4, 6], bool)
    mask[1:3, 2:5] = False
    assert np.all(padded.numpy()[mask] == 127.5)
    assert np.all(padded_label.numpy()[mask] == IGNORE)


def test_pad_too_small_target_fails():
    image, label = _image_and_label(4, 4)
    with pytest.raises(tf.errors.InvalidArgumentError):
        preprocessing.pad_image_and_label(
            tf.cast(image, tf.float32), label, 1, 0, 4, 4, IGNORE)


def test_window_slice_mirrors():
    image, label = _image_and_label(5, 6)
    window_slice = tf.function(preprocessing.window_slice)
    # Windows from the first column, inside, to the last column, one
    # column wide, and empty.
    for top, left, height, width in [(1, 0, 3, 4), (1, 2, 3, 4),
                                     (0, 1, 5, 5), (2, 3, 2, 1),
                                     (0, 0, 5, 0)]:
        begin = tf.constant([top, left, 0])
        size = tf.constant([height, width, -1])
        window = image[top:top + height, left:left + width]
        for tensor, expected in [(image, window),
                                 (label, label[top:top + height,
                                               left:left + width])]:
            np.testing.assert_array_equal(
                window_slice(tensor, begin, size, tf.constant(True)),
                expected[:, ::-1])
            np.testing.assert_array_equal(
                window_slice(tensor, begin, size, tf.constant(False)),
                expected)


def test_resize_label_mirrored_window():
    _, label = _image_and_label(13, 17)
    size = tf.constant([29, 31])
    whole = _tf_nearest(label, size)
    window = preprocessing.resize_label(label, size, window=((2, 20), (3, 9)),
                                        mirror=tf.constant(True))
    np.testing.assert_array_equal(window, whole[2:20, 3:9][:, ::-1])


def test_eval_shrinks_to_fit_and_pads_bottom_right():
    image, label = _image_and_label(20, 40)
    resized, padded, padded_label = preprocessing.preprocess_image_and_label(
        image, label, crop_height=11, crop_width=21, ignore_label=IGNORE,
        is_training=False)
    # min(11/20, 21/40) = 0.525 -> (10, 21).
    assert resized.shape == (10, 21, 3) and resized.dtype == tf.float32
    assert padded.shape == (11, 21, 3) and padded_label.shape == (11, 21, 1)
    # Not bit-equal: padding subtracts and re-adds 127.5 (as DeepLab2 does),
    # which rounds the non-integer pixels of a resized image.
    np.testing.assert_allclose(padded[:10], resized, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(padded[:10], (resized - 127.5) + 127.5)
    assert np.all(padded.numpy()[10] == 127.5)
    assert np.all(padded_label.numpy()[10] == IGNORE)
    # Aligned corners: the corner pixels are the input's corners.
    assert padded_label[0, 0, 0] == 0
    assert padded_label[9, 20, 0] == label[19, 39, 0]


def test_max_resize_larger_than_crop_is_an_error():
    image, label = _image_and_label(4, 4)
    with pytest.raises(ValueError, match='max_resize_value'):
        preprocessing.preprocess_image_and_label(
            image, label, crop_height=3, crop_width=3, max_resize_value=5,
            ignore_label=IGNORE, is_training=True)


def test_training_layout_replay():
    image, label = _image_and_label(3, 5)
    layout = preprocessing.TrainingLayout((1, 0), (0, 1), True)
    _, out, out_label = preprocessing.preprocess_image_and_label(
        image, label, crop_height=4, crop_width=4, ignore_label=IGNORE,
        is_training=True, layout=layout)
    # Canvas max(size, crop) = 4x5 with one pad row on top; crop cols 1..4.
    expected = np.full([4, 5, 1], IGNORE, np.int32)
    expected[1:] = label
    np.testing.assert_array_equal(out_label, expected[:, 1:5][:, ::-1])
    assert np.all(out.numpy()[0] == 127.5)
    assert out.shape == (4, 4, 3)


def _canvas_then_crop(image, label, layout, crop_height, crop_width):
    """The layout applied the direct way: the whole padded canvas, then the
    crop window of it, then the flip."""
    canvas = tf.maximum(tf.shape(image)[:2], (crop_height, crop_width))
    image, label = preprocessing.pad_image_and_label(
        image, label, *layout.pad_offset, canvas[0], canvas[1], IGNORE)
    top, left = layout.crop_offset
    image = image[top:top + crop_height, left:left + crop_width]
    label = label[top:top + crop_height, left:left + crop_width]
    if layout.flip:
        return image[:, ::-1], label[:, ::-1]
    return image, label


def test_training_layout_equals_padding_the_canvas_then_cropping():
    # Sides below, at and above the crop; non-integer pixels, which the
    # pad's (x - 127.5) + 127.5 rounds, so any reordering would show.
    rng = np.random.default_rng(0)
    for height, width in [(3, 5), (4, 4), (7, 2), (2, 9), (9, 8)]:
        image = tf.constant(rng.uniform(0, 255, [height, width, 3])
                            .astype(np.float32))
        label = tf.constant(rng.integers(0, 1000, [height, width, 1])
                            .astype(np.int32))
        for _ in range(6):
            layout = preprocessing.draw_training_layout(
                tf.constant([height, width]), 4, 4,
                seed=rng.integers(0, 1000, 2))
            layout = preprocessing.TrainingLayout(
                tuple(int(v) for v in layout.pad_offset),
                tuple(int(v) for v in layout.crop_offset), bool(layout.flip))
            got = preprocessing.apply_training_layout(image, label, layout, 4,
                                                      4, IGNORE)
            expected = _canvas_then_crop(image, label, layout, 4, 4)
            assert got[0].shape == (4, 4, 3) and got[1].shape == (4, 4, 1)
            np.testing.assert_array_equal(got[0], expected[0])
            np.testing.assert_array_equal(got[1], expected[1])


def test_training_layout_outside_the_canvas_fails():
    image, label = _image_and_label(3, 5)
    for layout, message in [
            (preprocessing.TrainingLayout((2, 0), (0, 0), False), 'pad:'),
            (preprocessing.TrainingLayout((0, 0), (0, 2), False), 'crop:')]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            preprocessing.apply_training_layout(
                tf.cast(image, tf.float32), label, layout, 4, 4, IGNORE)


def test_training_seed_is_reproducible_and_flip_probability_one_flips():
    image, label = _image_and_label(9, 9)
    kwargs = dict(crop_height=5, crop_width=5, ignore_label=IGNORE,
                  is_training=True, min_scale_factor=0.5,
                  max_scale_factor=2.0, scale_factor_step_size=0.25)
    first = preprocessing.preprocess_image_and_label(
        image, label, seed=[3, 4], **kwargs)
    second = preprocessing.preprocess_image_and_label(
        image, label, seed=[3, 4], **kwargs)
    np.testing.assert_array_equal(first[2], second[2])
    layout = preprocessing.draw_training_layout(
        tf.constant([9, 9]), 5, 5, flip_probability=1.0, seed=[1, 2])
    assert bool(layout.flip)
    layout = preprocessing.draw_training_layout(
        tf.constant([9, 9]), 5, 5, flip_probability=0.0, seed=[1, 2])
    assert not bool(layout.flip)
    assert 0 <= int(layout.crop_offset[0]) <= 4


def test_random_scale_values():
    assert preprocessing.random_scale(1.0, 1.0, 0.25) == 1.0
    allowed = {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
    for i in range(10):
        value = float(preprocessing.random_scale(0.5, 2.0, 0.25, seed=[i, 0]))
        assert value in allowed
    value = float(preprocessing.random_scale(0.5, 2.0, 0.0, seed=[0, 0]))
    assert 0.5 <= value < 2.0
    with pytest.raises(ValueError):
        preprocessing.random_scale(2.0, 1.0, 0.0)


def test_scale_truncates_size():
    image, label = _image_and_label(10, 7)
    scaled, scaled_label = preprocessing.scale_image_and_label(
        tf.cast(image, tf.float32), label, tf.constant(0.5))
    assert scaled.shape == (5, 3, 3) and scaled_label.shape == (5, 3, 1)
    assert scaled_label.dtype == tf.int32


def _tf_nearest(label, size):
    """TF's own aligned-corners nearest resize: the reference."""
    return tf.raw_ops.ResizeNearestNeighbor(images=label[tf.newaxis],
                                            size=size, align_corners=True)[0]


def test_resize_label_equals_tf_nearest_neighbour():
    # Along the rows of a [n, 1, 1] ramp (the columns use the same index
    # rule; the window test below resizes both sides), over every pair of
    # small sizes and the random-scale sizes of Cityscapes and COCO sides,
    # where float32 products land on and near halves.
    pairs = [(n, m) for n in range(1, 25) for m in range(1, 60)]
    pairs += [(n, int(np.float32(n) * np.float32(s)))
              for n in (1024, 2048, 640, 427, 1025, 2049)
              for s in np.linspace(0.5, 2.0, 16)]
    for in_size, out_size in pairs:
        ramp = tf.reshape(tf.range(in_size), [in_size, 1, 1])
        size = tf.constant([out_size, 1])
        np.testing.assert_array_equal(
            preprocessing.resize_label(ramp, size), _tf_nearest(ramp, size),
            err_msg=f'{in_size} -> {out_size}')


def test_resize_label_window_is_a_window_of_the_whole():
    image, label = _image_and_label(13, 17)
    for size in ([29, 31], [7, 9], [13, 17]):
        whole = _tf_nearest(label, size)
        window = preprocessing.resize_label(
            label, tf.constant(size), window=((2, size[0] - 1), (3, 6)))
        np.testing.assert_array_equal(window, whole[2:size[0] - 1, 3:6])


@pytest.mark.parametrize('policy', ['', 'simple_classification_policy'])
def test_training_preprocessing_equals_the_direct_composition(policy):
    # The training path resizes only the label's crop window, pads only the
    # image's and, without an AutoAugment op to apply, truncates only that
    # window to uint8; the direct way (TF's resizes of the whole image, the
    # whole image through autoaugment.distort, the whole canvas, then the
    # crop) with the same draws gives the same.
    rng = np.random.default_rng(1)
    image = tf.constant(rng.integers(0, 256, [9, 13, 3]), tf.uint8)
    label = tf.constant(rng.integers(0, 99, [9, 13, 1]), tf.int32)
    for index in range(24):
        seed = tf.constant([3, index], tf.int64)
        _, out, out_label = preprocessing.preprocess_image_and_label(
            image, label, crop_height=11, crop_width=15,
            min_scale_factor=0.5, max_scale_factor=2.0,
            scale_factor_step_size=0.1, ignore_label=IGNORE,
            is_training=True, seed=seed, autoaugment_policy=policy)
        scale_seed, layout_seed, augment_seed = preprocessing._seeds(seed, 3)
        scale = preprocessing.random_scale(0.5, 2.0, 0.1, scale_seed)
        size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale,
                       tf.int32)
        scaled = tf.raw_ops.ResizeBilinear(
            images=tf.cast(image, tf.float32)[tf.newaxis], size=size,
            align_corners=True)[0]
        if policy:
            scaled = tf.cast(autoaugment.distort(
                tf.cast(scaled, tf.uint8), policy, augment_seed), tf.float32)
        layout = preprocessing.draw_training_layout(size, 11, 15,
                                                    seed=layout_seed)
        expected, expected_label = _canvas_then_crop(
            scaled, _tf_nearest(label, size), layout, 11, 15)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(out_label, expected_label)


def test_training_in_tf_data_with_random_scale():
    image, label = _image_and_label(30, 40)

    def preprocess(image, label):
        return preprocessing.preprocess_image_and_label(
            image, label, crop_height=17, crop_width=33,
            min_scale_factor=0.5, max_scale_factor=2.0,
            scale_factor_step_size=0.25, ignore_label=IGNORE,
            is_training=True)[1:]

    dataset = tf.data.Dataset.from_tensors((image, label)).repeat(4)
    for out, out_label in dataset.map(preprocess):
        assert out.shape == (17, 33, 3) and out_label.shape == (17, 33, 1)
        # Labels are only moved or padded, never interpolated.
        values = set(np.unique(out_label.numpy())) - {IGNORE}
        assert values <= set(range(30 * 40))


def test_autoaugment_applies_after_scale_and_before_pad_labels_untouched(
        autoaugment_outcomes):
    rng = np.random.default_rng(5)
    image = tf.constant(rng.integers(0, 256, [8, 12, 3]), tf.uint8)
    label = tf.constant(rng.integers(0, 50, [8, 12, 1]), tf.int32)
    policy = 'simple_classification_policy'
    # Scale 1.5 makes fractional pixels; the crop (15x20 from 12x18) pads.
    kwargs = dict(crop_height=15, crop_width=20, min_scale_factor=1.5,
                  max_scale_factor=1.5, ignore_label=IGNORE, is_training=True,
                  flip_probability=0.0)
    scaled, _ = preprocessing.scale_image_and_label(
        tf.cast(image, tf.float32), label, 1.5)
    candidates = autoaugment_outcomes(tf.cast(scaled, tf.uint8), policy)
    sub_policies_seen = set()
    for index in range(12):
        seed = [7, index]
        _, plain, plain_label = preprocessing.preprocess_image_and_label(
            image, label, seed=seed, **kwargs)
        _, out, out_label = preprocessing.preprocess_image_and_label(
            image, label, seed=seed, autoaugment_policy=policy, **kwargs)
        # The same seed gives the same layout: labels are untouched.
        np.testing.assert_array_equal(out_label, plain_label)
        pad = out_label.numpy()[..., 0] == IGNORE
        # Padding comes after AutoAugment: pad pixels stay 127.5.
        assert pad.any() and np.all(out.numpy()[pad] == 127.5)
        # The scaled image was truncated to uint8 before the ops ran.
        assert np.any(plain.numpy()[~pad] % 1 != 0)
        assert np.all(out.numpy()[~pad] % 1 == 0)
        # Locate the content in the crop; it is one of the policy's outputs.
        rows, cols = np.nonzero(~pad)
        content = out.numpy()[rows.min():rows.max() + 1,
                              cols.min():cols.max() + 1].astype(np.uint8)
        matches = [i for i, c in enumerate(candidates)
                   if np.array_equal(content, c)]
        assert matches, seed
        sub_policies_seen.add(matches[0] // 4)
    # The draws cover several sub-policies.
    assert len(sub_policies_seen) >= 2
