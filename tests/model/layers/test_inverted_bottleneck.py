"""The inverted bottleneck: structure, harness, and numerics against a
hand-composed sequence of TF ops."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers.inverted_bottleneck import InvertedBottleneck
from deeplab2.model.layers.normalization import BatchNormOptions

_EPSILON = 1e-5


def _randomize(layer, seed=0):
    """Random weights, and BN moving stats away from (0, 1), so that a
    wrong op order or a skipped BN shows in the outputs."""
    rng = np.random.RandomState(seed)
    for variable in layer.weights:
        shape = variable.shape
        if 'moving_variance' in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif 'gamma' in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        variable.assign(value.astype(np.float32))


def _bn(x, conv_bn_layer):
    bn = conv_bn_layer._batch_norm
    return ((x - bn.moving_mean) / tf.sqrt(bn.moving_variance + _EPSILON) *
            bn.gamma + bn.beta)


def _hard_swish(x):
    return x * tf.minimum(tf.maximum(x + 3.0, 0.0), 6.0) / 6.0


def _reference(block, x, activation, pad):
    """The block written out with raw TF ops: expand 1x1 -> BN -> act ->
    symmetric zero pad -> depthwise VALID -> BN -> act -> SE (mean, 1x1,
    relu, 1x1, sigmoid, multiply) -> project 1x1 -> BN (-> + input)."""
    expand = block._conv1_bn_act
    y = activation(_bn(tf.nn.conv2d(x, expand._conv.kernel, 1, 'VALID'),
                       expand))
    depthwise = block._conv2_bn_act
    y = tf.pad(y, [[0, 0], pad, pad, [0, 0]])
    y = tf.nn.depthwise_conv2d(y, depthwise._depthwise_conv.kernel,
                               [1, block.strides, block.strides, 1], 'VALID')
    depthwise_output = activation(_bn(y, depthwise))
    se = block._squeeze_excitation
    pooled = tf.reduce_mean(depthwise_output, axis=[1, 2], keepdims=True)
    squeezed = tf.nn.relu(tf.nn.conv2d(pooled, se._se_reduce.kernel, 1,
                                       'VALID') + se._se_reduce.bias)
    gate = tf.sigmoid(tf.nn.conv2d(squeezed, se._se_expand.kernel, 1,
                                   'VALID') + se._se_expand.bias)
    project = block._conv3_bn
    y = _bn(tf.nn.conv2d(depthwise_output * gate, project._conv.kernel, 1,
                         'VALID'), project)
    if block.in_filters == block.out_filters and block.use_residual:
        y = y + x
    return y, depthwise_output


@pytest.mark.parametrize('strides,out_filters,input_size,pad', [
    # 5x5 stride 2 on an even size: DeepLab2 pads 2 before and 2 after
    # (not Keras' 1/2), then convolves VALID: (10 + 4 - 5) // 2 + 1 = 5.
    (2, 24, 10, [2, 2]),
    # Stride 1 with in == out: 'same' padding and a residual.
    (1, 16, 7, [2, 2]),
])
def test_matches_hand_composed_ops(strides, out_filters, input_size, pad):
    block = InvertedBottleneck(
        in_filters=16, out_filters=out_filters, expand_ratio=3.,
        strides=strides, kernel_size=5, se_ratio=0.25,
        activation='hard_swish', divisible_by=8,
        batch_norm=BatchNormOptions(epsilon=_EPSILON), name='block')
    x = tf.random.stateless_normal([2, input_size, input_size + 3, 16],
                                   seed=[1, 2])
    block(x)
    _randomize(block)
    output, depthwise_output = block(x, training=False)
    expected, expected_depthwise = _reference(block, x, _hard_swish, pad)
    np.testing.assert_allclose(depthwise_output.numpy(),
                               expected_depthwise.numpy(), atol=1e-4,
                               rtol=1e-4)
    np.testing.assert_allclose(output.numpy(), expected.numpy(), atol=1e-4,
                               rtol=1e-4)


def test_harness_expand_se_strided(layer_harness):
    block = InvertedBottleneck(
        in_filters=8, out_filters=16, expand_ratio=4.5, strides=2,
        kernel_size=3, se_ratio=0.25, activation='hard_swish',
        divisible_by=8, name='inverted_bottleneck_3')
    # 9 -> ceil(9/2) = 5, 13 -> 7; expanded make_divisible(8 * 4.5, 8) = 40.
    layer_harness(block, tf.random.normal([1, 9, 13, 8]),
                  ((1, 5, 7, 16), (1, 5, 7, 40)))
    assert block._squeeze_excitation._se_reduce.kernel.shape == (1, 1, 40,
                                                                  16)


def test_harness_without_expand_or_se_and_dilated(layer_harness):
    block = InvertedBottleneck(
        in_filters=16, out_filters=16, expand_ratio=1., strides=1,
        kernel_size=3, se_ratio=None, activation='relu', atrous_rate=2,
        divisible_by=8, name='inverted_bottleneck_2')
    layer_harness(block, tf.random.normal([1, 7, 9, 16]),
                  ((1, 7, 9, 16), (1, 7, 9, 16)))
    assert not hasattr(block, '_conv1_bn_act')
    assert block._squeeze_excitation is None
    assert block._conv2_bn_act._depthwise_conv.dilation_rate == (2, 2)


def test_residual_only_when_allowed_and_shapes_match():
    x = tf.random.normal([1, 5, 5, 8])
    for use_residual, added in ((True, True), (False, False)):
        block = InvertedBottleneck(8, 8, expand_ratio=1., strides=1,
                                   use_residual=use_residual, name='b')
        block(x)
        # A zero projection makes the output the shortcut alone (or 0).
        block._conv3_bn._batch_norm.gamma.assign(tf.zeros([8]))
        output, _ = block(x)
        np.testing.assert_allclose(output.numpy(),
                                   x.numpy() if added else 0.0, atol=1e-6)


def test_weight_decay_on_pointwise_and_se_kernels_only():
    block = InvertedBottleneck(8, 16, expand_ratio=2., strides=1,
                               se_ratio=0.25, divisible_by=8,
                               conv_kernel_weight_decay=1e-4, name='b')
    block(tf.zeros([1, 4, 4, 8]))
    # expand, project, se_reduce, se_expand; never the depthwise kernel.
    assert len(block.losses) == 4
