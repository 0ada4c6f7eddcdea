"""Hand-worked cases for top-k averaging, ignore labels and weight maps."""

import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.loss import base_loss


def test_top_k_keeps_the_hardest_pixels_per_image():
    # 10 pixels, top 20% -> the 2 largest: (9 + 8) / 2.
    losses = tf.constant([[1., 9., 2., 3., 8., 0., 4., 5., 6., 7.]])
    got = base_loss.average_top_k_loss(losses, 0.2)
    np.testing.assert_allclose(got.numpy(), [8.5])


def test_top_k_is_per_image_not_pooled():
    losses = tf.constant([[10., 10., 0., 0.], [1., 2., 0., 0.]])
    got = base_loss.average_top_k_loss(losses, 0.5)
    np.testing.assert_allclose(got.numpy(), [10., 1.5])


def test_denominator_counts_non_zero_kept_values():
    # Top 60% of 5 = 3 values {4, 0, 0}: only one is non-zero.
    losses = tf.constant([[4., 0., 0., 0., 0.]])
    np.testing.assert_allclose(
        base_loss.average_top_k_loss(losses, 0.6).numpy(), [4.])
    # All zero -> 0, not NaN.
    np.testing.assert_allclose(
        base_loss.average_top_k_loss(tf.zeros([2, 3, 3]), 1.0).numpy(), [0, 0])


def test_k_rounds_half_to_even():
    # 0.25 * 10 = 2.5 -> 2 pixels: (9 + 8) / 2.
    losses = tf.constant([[1., 9., 2., 3., 8., 0., 4., 5., 6., 7.]])
    np.testing.assert_allclose(
        base_loss.average_top_k_loss(losses, 0.25).numpy(), [8.5])


def test_cross_entropy_ignore_and_weights():
    # 2 classes, logits (0, 0) -> CE = log 2 for every pixel.
    labels = tf.constant([[[0, 1, 255, 1]]])
    logits = tf.zeros([1, 1, 4, 2])
    weights = tf.constant([[[1., 3., 5., 0.]]])
    weighted = base_loss.softmax_cross_entropy(labels, logits, weights, 2, 255)
    log2 = math.log(2.0)
    np.testing.assert_allclose(weighted.numpy(), [[[log2, 3 * log2, 0, 0]]],
                               rtol=1e-6)
    # Weights multiply the numerator only: (1 + 3) log 2 / 2 non-zero pixels.
    np.testing.assert_allclose(
        base_loss.average_top_k_loss(weighted, 1.0).numpy(), [2 * log2],
        rtol=1e-6)
    # Top 25% of 4 = 1 pixel: the weight-3 one.
    np.testing.assert_allclose(
        base_loss.average_top_k_loss(weighted, 0.25).numpy(), [3 * log2],
        rtol=1e-6)


def test_cross_entropy_matches_tf_softmax_cross_entropy_and_its_gradient():
    # TF's own op on one-hot labels is the reference: an ignore label and a
    # label past num_classes both have an all-zero one-hot row there, so
    # loss 0.
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, (2, 3, 4)).astype(np.int32)
    labels[0, 0, :2] = 255
    labels[1, 2, 3] = 7
    logits = tf.constant(rng.normal(0, 4, (2, 3, 4, 5)), tf.float32)
    weights = tf.constant(rng.uniform(0.5, 2, (2, 3, 4)), tf.float32)
    upstream = tf.constant(rng.normal(size=(2, 3, 4)), tf.float32)

    def loss_and_gradient(loss_fn):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_sum(loss_fn() * upstream)
        return loss, tape.gradient(loss, logits)

    def reference():
        keep = tf.cast(labels != 255, tf.float32)
        return tf.nn.softmax_cross_entropy_with_logits(
            tf.one_hot(labels, 5), logits) * weights * keep

    ours = loss_and_gradient(lambda: base_loss.softmax_cross_entropy(
        labels, logits, weights, 5, 255))
    expected = loss_and_gradient(reference)
    np.testing.assert_allclose(ours[0], expected[0], rtol=1e-6)
    # Except at the out-of-range label: TF's op returns softmax as its
    # gradient there, not the derivative of the 0 it returns as loss.
    valid = (labels < 5)[..., np.newaxis]
    np.testing.assert_allclose(np.where(valid, ours[1], 0),
                               np.where(valid, expected[1], 0),
                               rtol=1e-5, atol=1e-6)
    # The out-of-range label's pixel, like the ignored ones, adds nothing.
    pixel = base_loss.softmax_cross_entropy(labels, logits, weights, 5, 255)
    assert pixel[1, 2, 3] == 0 and pixel[0, 0, 0] == 0
    assert np.all(ours[1][1, 2, 3] == 0)


def test_regression_errors_average_channels():
    target = tf.constant([[[[1., 3.]]]])
    prediction = tf.zeros([1, 1, 1, 2])
    np.testing.assert_allclose(
        base_loss.absolute_error(target, prediction).numpy(), [[[2.]]])
    np.testing.assert_allclose(
        base_loss.squared_error(target, prediction).numpy(), [[[5.]]])
    np.testing.assert_allclose(
        base_loss.squared_error(tf.ones([1, 2, 2]), tf.zeros([1, 2, 2])),
        np.ones([1, 2, 2]))


@pytest.mark.parametrize('value', [-0.1, 1.5])
def test_top_k_percent_out_of_range(value):
    with pytest.raises(ValueError, match='semantic_top_k_percent'):
        base_loss.check_top_k_percent(value, 'semantic_top_k_percent')
