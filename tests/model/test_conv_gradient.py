"""Stride-1 convolutions whose kernel gradient is a matrix product per tap
(1x1 and dilated kernels): TF's outputs and input gradients bit for bit,
kernel gradients equal to a float64 NumPy sum up to float32 summation
order."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import conv_gradient
from deeplab2.model.layers import convolutions


def _numpy_kernel_gradient(inputs, output_gradient, kernel_size, padding,
                           dilation):
    # The definition, in float64: d kernel[i, j, c, o] = sum over examples
    # and output positions (y, x) of
    # padded_input[y + i * dh, x + j * dw, c] * gradient[y, x, o].
    inputs = inputs.astype(np.float64)
    (kh, kw), (dh, dw) = kernel_size, dilation
    if padding == 'SAME':
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                for k, d in ((kh, dh), (kw, dw))]
        inputs = np.pad(inputs, [(0, 0), *pads, (0, 0)])
    _, height, width, _ = output_gradient.shape
    gradient = np.zeros([kh, kw, inputs.shape[-1], output_gradient.shape[-1]])
    for i in range(kh):
        for j in range(kw):
            window = inputs[:, i * dh:i * dh + height, j * dw:j * dw + width]
            gradient[i, j] = np.einsum('bhwc,bhwo->co', window,
                                       output_gradient)
    return gradient


# (kernel, dilation, padding); at rate 7 on a 7x9 map, the top and bottom
# taps read only padding.
_CASES = [((1, 1), (1, 1), 'SAME'), ((3, 3), (2, 2), 'SAME'),
          ((3, 3), (7, 7), 'SAME'), ((3, 2), (2, 3), 'VALID'),
          ((3, 3), (1, 1), 'SAME')]


@pytest.mark.parametrize('batch_size', [1, 3])
@pytest.mark.parametrize('kernel_size, dilation, padding', _CASES)
def test_kernel_gradient_equals_the_direct_sum(batch_size, kernel_size,
                                               dilation, padding):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=[batch_size, 7, 9, 5]).astype(np.float32)
    outputs = tf.nn.conv2d(inputs, np.zeros(kernel_size + (5, 4), np.float32),
                           1, padding, dilations=list(dilation))
    output_gradient = rng.normal(size=outputs.shape).astype(np.float32)
    # Batch size unknown at trace time, as in a training step's graph.
    gradient = tf.function(
        lambda x, dy: conv_gradient.kernel_gradient(
            x, dy, kernel_size + (5, 4), padding, dilation),
        input_signature=[tf.TensorSpec([None, *inputs.shape[1:]]),
                         tf.TensorSpec([None, *output_gradient.shape[1:]])])
    got = gradient(inputs, output_gradient)
    assert got.shape == kernel_size + (5, 4)
    np.testing.assert_allclose(
        got, _numpy_kernel_gradient(inputs, output_gradient, kernel_size,
                                    padding, dilation),
        rtol=1e-5, atol=1e-5)


def _layer(kernel_size, strides=1, dilation_rate=1):
    layer = convolutions.Conv2D(filters=6, kernel_size=kernel_size,
                                strides=strides, dilation_rate=dilation_rate,
                                padding='same', use_bias=True)
    layer.build((None, 11, 13, 8))
    rng = np.random.default_rng(1)
    layer.set_weights([rng.normal(size=w.shape).astype(np.float32)
                       for w in layer.get_weights()])
    return layer


def _tf_reference(layer):
    """The layer's forward pass as plain TF ops, with TF's own gradients."""
    def call(inputs):
        outputs = tf.nn.conv2d(inputs, layer.kernel,
                               strides=list(layer.strides), padding='SAME',
                               dilations=list(layer.dilation_rate))
        return outputs + layer.bias
    return call


@pytest.mark.parametrize('kernel_size, dilation_rate', [(1, 1), (3, 2),
                                                        (3, 12)])
def test_outputs_and_input_gradients_are_tfs(layer_gradients, traced_op_types,
                                            kernel_size, dilation_rate):
    layer = _layer(kernel_size, dilation_rate=dilation_rate)
    assert layer._takes_tap_gradient()
    inputs = np.random.default_rng(2).normal(size=[2, 11, 13, 8]).astype(
        np.float32)
    got_outputs, got_gradients, graph = layer_gradients.run(layer, layer,
                                                            inputs)
    outputs, gradients, tf_graph = layer_gradients.run(_tf_reference(layer),
                                                       layer, inputs)
    ops, tf_ops = traced_op_types(graph), traced_op_types(tf_graph)
    assert 'Conv2DBackpropFilter' in tf_ops
    assert 'Conv2DBackpropFilter' not in ops and 'MatMul' in ops
    # Kernel and bias gradients sum in another order.
    layer_gradients.assert_reordered((got_outputs, got_gradients),
                                     (outputs, gradients))


def test_eager_call_and_gradient():
    # Eager, Keras hands convolution_op the kernel as a variable.
    layer = _layer(1)
    inputs = tf.constant(np.random.default_rng(3).normal(
        size=[1, 11, 13, 8]).astype(np.float32))
    gradients = []
    for call in (layer, _tf_reference(layer)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(call(inputs) ** 2)
        gradients.append(tape.gradient(loss, layer.kernel))
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=0,
                               atol=1e-5 * np.abs(gradients[1]).max())


def test_unknown_map_size_takes_tfs_kernel_gradient():
    layer = _layer(3, dilation_rate=2)

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 8])])
    def kernel_gradient(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(inputs) ** 2)
        return tape.gradient(loss, layer.kernel)

    inputs = tf.constant(np.random.default_rng(4).normal(
        size=[1, 11, 13, 8]).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(_tf_reference(layer)(inputs) ** 2)
    expected = tape.gradient(loss, layer.kernel)
    np.testing.assert_allclose(kernel_gradient(inputs), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize('kernel_size, strides', [(3, 1), (1, 2)])
def test_other_convolutions_keep_tfs_gradient(layer_gradients, traced_op_types,
                                              kernel_size, strides):
    layer = _layer(kernel_size, strides)
    assert not layer._takes_tap_gradient()
    inputs = np.random.default_rng(4).normal(size=[1, 11, 13, 8]).astype(
        np.float32)
    _, _, graph = layer_gradients.run(layer, layer, inputs)
    assert 'Conv2DBackpropFilter' in traced_op_types(graph)
