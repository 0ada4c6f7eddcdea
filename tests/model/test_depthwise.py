"""The depthwise convolution whose 5x5 kernel gradient is a forward
depthwise convolution: Keras' outputs bit for bit, gradients equal to TF's
native ones and to a NumPy sum up to float32 summation order."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from deeplab2.model.layers import depthwise


def _numpy_kernel_gradient(inputs, output_gradient, kernel_size, padding):
    # Direct definition, float64: d kernel[i, j, c] = sum over examples and
    # output positions of input[y + i, x + j, c] * gradient[y, x, c].
    inputs = inputs.astype(np.float64)
    if padding == 'SAME':
        before = (kernel_size - 1) // 2
        after = kernel_size - 1 - before
        inputs = np.pad(inputs, [(0, 0), (before, after), (before, after),
                                 (0, 0)])
    _, height, width, _ = output_gradient.shape
    gradient = np.zeros([kernel_size, kernel_size, inputs.shape[-1]])
    for i in range(kernel_size):
        for j in range(kernel_size):
            gradient[i, j] = np.sum(
                inputs[:, i:i + height, j:j + width] * output_gradient,
                axis=(0, 1, 2))
    return gradient[..., np.newaxis]


@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
@pytest.mark.parametrize('batch_size', [1, 3])
def test_kernel_gradient_equals_the_direct_sum(padding, batch_size):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=[batch_size, 9, 12, 4]).astype(np.float32)
    out_size = [9, 12] if padding == 'SAME' else [5, 8]
    output_gradient = rng.normal(size=[batch_size] + out_size + [4]).astype(
        np.float32)
    got = depthwise.kernel_gradient(tf.constant(inputs),
                                    tf.constant(output_gradient),
                                    [5, 5, 4, 1], padding)
    np.testing.assert_allclose(
        got, _numpy_kernel_gradient(inputs, output_gradient, 5, padding),
        rtol=1e-5, atol=1e-4)


def _layer_pair(kernel_size, strides=1, padding='same', dilation_rate=1):
    kwargs = dict(kernel_size=kernel_size, strides=strides, padding=padding,
                  dilation_rate=dilation_rate, use_bias=True)
    ours = depthwise.DepthwiseConv2D(**kwargs)
    stock = keras.layers.DepthwiseConv2D(**kwargs)
    shape = (None, 17, 23, 8)
    ours.build(shape)
    stock.build(shape)
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype(np.float32)
               for w in stock.get_weights()]
    ours.set_weights(weights)
    stock.set_weights(weights)
    return ours, stock


@pytest.mark.parametrize('dilation_rate', [1, 2])
@pytest.mark.parametrize('padding', ['same', 'valid'])
def test_5x5_outputs_equal_keras_and_gradients_equal_tfs(layer_gradients,
                                                         padding,
                                                         dilation_rate):
    # Dilated, both run space-to-batch around an undilated convolution.
    ours, stock = _layer_pair(5, padding=padding,
                              dilation_rate=dilation_rate)
    assert ours._takes_forward_gradient()
    inputs = np.random.default_rng(2).normal(size=[2, 17, 23, 8]).astype(
        np.float32)
    # The input gradient comes from the same kernel as TF's. The kernel
    # gradient sums in another order; so does the bias gradient, which TF
    # fuses with the stock convolution's.
    layer_gradients.assert_reordered(
        layer_gradients.run(ours, ours, inputs)[:2],
        layer_gradients.run(stock, stock, inputs)[:2])


def test_unknown_batch_size_sums_over_the_examples():
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=[3, 7, 6, 2]).astype(np.float32)
    output_gradient = rng.normal(size=[3, 7, 6, 2]).astype(np.float32)
    spec = tf.TensorSpec([None, 7, 6, 2])
    gradient = tf.function(
        lambda x, dy: depthwise.kernel_gradient(x, dy, [5, 5, 2, 1], 'SAME'),
        input_signature=[spec, spec])
    np.testing.assert_allclose(
        gradient(inputs, output_gradient),
        _numpy_kernel_gradient(inputs, output_gradient, 5, 'SAME'),
        rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize('kernel_size, strides', [(3, 1), (5, 2)])
def test_other_convolutions_are_keras_own(layer_gradients, kernel_size,
                                         strides):
    ours, stock = _layer_pair(kernel_size, strides)
    assert not ours._takes_forward_gradient()
    inputs = np.random.default_rng(4).normal(size=[1, 17, 23, 8]).astype(
        np.float32)
    got_outputs, got_gradients = layer_gradients.run(ours, ours, inputs)[:2]
    outputs, gradients = layer_gradients.run(stock, stock, inputs)[:2]
    np.testing.assert_array_equal(got_outputs, outputs)
    for got, expected in zip(got_gradients, gradients):
        np.testing.assert_array_equal(got, expected)
