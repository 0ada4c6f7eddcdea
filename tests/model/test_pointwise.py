"""Stride-1 1x1 convolutions whose kernel gradient is a matrix product:
TF's outputs and input gradients bit for bit, kernel gradients equal to a
float64 NumPy sum up to float32 summation order."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import convolutions
from deeplab2.model.layers import pointwise


@pytest.mark.parametrize('batch_size', [1, 3])
def test_kernel_gradient_equals_the_direct_sum(batch_size):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=[batch_size, 7, 9, 5]).astype(np.float32)
    output_gradient = rng.normal(size=[batch_size, 7, 9, 4]).astype(
        np.float32)
    # d kernel[0, 0, i, o] = sum over examples and pixels of
    # input[..., i] * gradient[..., o].
    expected = np.einsum('bhwi,bhwo->io', inputs.astype(np.float64),
                         output_gradient.astype(np.float64))[None, None]
    # Batch size unknown at trace time, as in a training step's graph.
    gradient = tf.function(pointwise.kernel_gradient, input_signature=[
        tf.TensorSpec([None, 7, 9, 5]), tf.TensorSpec([None, 7, 9, 4])])
    got = gradient(inputs, output_gradient)
    assert got.shape == (1, 1, 5, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _layer_pair(kernel_size, strides=1, dilation_rate=1):
    kwargs = dict(filters=6, kernel_size=kernel_size, strides=strides,
                  dilation_rate=dilation_rate, padding='same', use_bias=True)
    ours = convolutions.Conv2D(**kwargs)
    stock = keras.layers.Conv2D(**kwargs)
    for layer in (ours, stock):
        layer.build((None, 11, 13, 8))
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=w.shape).astype(np.float32)
               for w in stock.get_weights()]
    ours.set_weights(weights)
    stock.set_weights(weights)
    return ours, stock


def _run(layer, inputs):
    inputs = tf.constant(inputs)
    weights = tf.random.stateless_normal(
        layer.compute_output_shape(inputs.shape), [5, 6])

    @tf.function
    def run(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = layer(inputs)
            loss = tf.reduce_sum(outputs * weights)
        return outputs, tape.gradient(loss, [inputs] +
                                      layer.trainable_variables)

    graph = run.get_concrete_function(inputs).graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph._functions.values():
        op_types |= {node.op for node in function.definition.node_def}
    outputs, gradients = run(inputs)
    return outputs, gradients, op_types


def test_1x1_outputs_equal_keras_and_gradients_equal_tfs():
    ours, stock = _layer_pair(1)
    assert ours._is_pointwise()
    inputs = np.random.default_rng(2).normal(size=[2, 11, 13, 8]).astype(
        np.float32)
    got_outputs, got_gradients, ops = _run(ours, inputs)
    outputs, gradients, stock_ops = _run(stock, inputs)
    assert 'Conv2DBackpropFilter' in stock_ops
    assert 'Conv2DBackpropFilter' not in ops and 'MatMul' in ops
    np.testing.assert_array_equal(got_outputs, outputs)
    np.testing.assert_array_equal(got_gradients[0], gradients[0])
    # Kernel and bias gradients sum in another order.
    for got, expected in zip(got_gradients[1:], gradients[1:]):
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=1e-5 * np.abs(expected).max())


def test_eager_call_and_gradient():
    # Eager, Keras hands convolution_op the kernel as a variable.
    ours, stock = _layer_pair(1)
    inputs = tf.constant(np.random.default_rng(3).normal(
        size=[1, 11, 13, 8]).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ours(inputs) ** 2)
    got = tape.gradient(loss, ours.kernel)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(stock(inputs) ** 2)
    expected = tape.gradient(loss, stock.kernel)
    np.testing.assert_allclose(got, expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize('kernel_size, strides, dilation_rate',
                         [(3, 1, 1), (1, 2, 1), (3, 1, 2)])
def test_other_convolutions_keep_tfs_gradient(kernel_size, strides,
                                              dilation_rate):
    ours, stock = _layer_pair(kernel_size, strides, dilation_rate)
    assert not ours._is_pointwise()
    inputs = np.random.default_rng(4).normal(size=[1, 11, 13, 8]).astype(
        np.float32)
    got_outputs, got_gradients, ops = _run(ours, inputs)
    outputs, gradients, _ = _run(stock, inputs)
    assert 'Conv2DBackpropFilter' in ops
    np.testing.assert_allclose(got_outputs, outputs, rtol=1e-5, atol=1e-5)
    for got, expected in zip(got_gradients, gradients):
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=1e-5 * np.abs(expected).max())
