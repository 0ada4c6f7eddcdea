"""Batch norm: options plumbing and the fused inference and training paths
against Keras' own layer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import normalization


def _ours_and_keras(x, epsilon, seed):
    """Our batch norm and Keras' own (momentum 0.9), built for `x`, with
    the same random gamma, beta and moving statistics."""
    ours = normalization.BatchNormOptions(momentum=0.9,
                                          epsilon=epsilon).make()
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=epsilon)
    ours(x), reference(x)
    rng = np.random.RandomState(seed)
    for a, b in zip(ours.weights, reference.weights):
        value = rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
        a.assign(value)
        b.assign(value)
    return ours, reference


def test_fused_inference_equals_keras_batch_norm():
    x = tf.random.normal([2, 5, 7, 6], seed=4)
    ours, reference = _ours_and_keras(x, epsilon=1e-5, seed=0)
    np.testing.assert_allclose(ours(x, training=False).numpy(),
                               reference(x, training=False).numpy(),
                               atol=1e-5)
    # Training: batch statistics and moving averages.
    np.testing.assert_allclose(ours(x, training=True).numpy(),
                               reference(x, training=True).numpy(), atol=1e-5)
    np.testing.assert_allclose(ours.moving_mean.numpy(),
                               reference.moving_mean.numpy(), atol=1e-6)


@pytest.mark.parametrize('epsilon', [1e-3, 1e-5])
def test_fused_training_equals_keras_batch_norm_with_its_gradients(epsilon):
    # 24 values per channel: the fused kernel's variance carries Bessel's
    # correction, 24 / 23 = 1.043, which Keras' moving variance must not.
    # Epsilon 1e-5 is DeepLab2's MobileNet configs'; the last channel's
    # variance, ~1e-5, makes the outputs depend on it.
    x = (tf.random.normal([2, 3, 4, 5], seed=7) * [3.0, 3.0, 3.0, 3.0, 3e-3] +
         [1.0, 1.0, 1.0, 1.0, 0.0])
    ours, reference = _ours_and_keras(x, epsilon=epsilon, seed=1)
    # Weighs every output differently, so no gradient vanishes by symmetry.
    weights = tf.random.normal(x.shape, seed=8)
    results = []
    for layer in (ours, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x, training=True)
            loss = tf.reduce_sum(outputs * weights)
        gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([outputs, *gradients, layer.moving_mean,
                        layer.moving_variance])
    names = ('outputs', 'd inputs', 'd gamma', 'd beta', 'moving mean',
             'moving variance')
    for name, got, expected in zip(names, *results):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


def test_options_coerce_and_round_trip():
    options = normalization.BatchNormOptions(0.9, 1e-5, True)
    assert normalization.BatchNormOptions.coerce(options.to_config()) == options
    assert normalization.BatchNormOptions.coerce(None) == (
        normalization.BatchNormOptions())
    layer = options.make()
    assert (layer.momentum, layer.epsilon, layer.synchronized) == (0.9, 1e-5,
                                                                  True)


def test_batch_norm_harness(layer_harness):
    layer = normalization.BatchNormOptions().make(name='bn')
    layer_harness(layer, tf.random.normal([2, 4, 4, 3]), (2, 4, 4, 3))
