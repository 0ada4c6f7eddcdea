"""Convolution blocks: DeepLab2's padding rule, shapes, harness."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import convolutions


@pytest.mark.parametrize('kernel,rate,expected', [
    (1, 1, (0, 0)), (3, 1, (1, 1)), (7, 1, (3, 3)), (3, 2, (2, 2)),
    (2, 1, (0, 1)), (4, 1, (1, 2)),
])
def test_same_padding(kernel, rate, expected):
    assert convolutions.same_padding(kernel, rate) == expected


def test_strided_conv_pads_symmetrically_unlike_keras_same():
    """On an even input, a 3x3 stride-2 conv must see one zero row above
    (DeepLab2) rather than Keras' zero row only below. With an all-ones
    kernel, each output is the sum over its 3x3 window: worked out by hand
    on a 4x4 input of ones, output[0, 0] covers rows -1..1 and cols -1..1,
    of which 2x2 are inside: 4. Keras 'same' would give 9 at [0, 0]."""
    layer = convolutions.Conv2DSame(1, 3, strides=2, use_bias=False,
                                    name='conv')
    x = tf.ones([1, 4, 4, 1])
    layer(x)
    layer._conv.kernel.assign(tf.ones([3, 3, 1, 1]))
    out = layer(x)[0, :, :, 0].numpy()
    np.testing.assert_array_equal(out, [[4, 6], [6, 9]])


def test_conv2d_same_harness(layer_harness):
    layer = convolutions.Conv2DSame(8, 3, strides=2, use_bias=False,
                                    use_bn=True, activation='relu',
                                    name='conv_bn_act')
    layer_harness(layer, tf.random.normal([2, 9, 17, 3]), (2, 5, 9, 8))


def test_conv2d_rejects_bias_with_batch_norm():
    with pytest.raises(ValueError, match='must not have a bias'):
        convolutions.Conv2DSame(8, 3, use_bias=True, use_bn=True, name='x')


def test_sac_conv_harness(layer_harness):
    layer = convolutions.Conv2DSame(
        6, 3, atrous_rate=2, use_bias=False, use_bn=True, activation='relu',
        use_switchable_atrous_conv=True, use_global_context_in_sac=True,
        name='sac')
    layer_harness(layer, tf.random.normal([1, 11, 13, 4]), (1, 11, 13, 6))
    names = sorted(v.path.split('sac/')[1] for v in layer.trainable_variables)
    assert names == ['batch_norm/beta', 'batch_norm/gamma', 'conv/kernel',
                     'conv/switch/bias', 'conv/switch/kernel',
                     'post_global_context/convolution/bias',
                     'post_global_context/convolution/kernel',
                     'pre_global_context/convolution/bias',
                     'pre_global_context/convolution/kernel']


def test_sac_blends_two_dilations_by_the_switch():
    """With the switch forced to 1 (bias 1, kernel 0) SAC equals the conv at
    dilation 3r; with it at 0 it equals the plain dilation-r conv."""
    x = tf.random.normal([1, 12, 12, 2], seed=1)
    sac = convolutions.SwitchableAtrousConv2D(3, 3, padding='same',
                                              dilation_rate=1, use_bias=False)
    sac(x)
    for switch_value, dilation in [(1.0, 3), (0.0, 1)]:
        sac._switch.bias.assign([switch_value])
        expected = tf.nn.convolution(x, sac.kernel, padding='SAME',
                                     dilations=dilation)
        np.testing.assert_allclose(sac(x).numpy(), expected.numpy(),
                                   atol=1e-5)


def test_depthwise_harness(layer_harness):
    layer = convolutions.DepthwiseConv2DSame(5, strides=2, use_bias=False,
                                             use_bn=True, activation='relu6',
                                             name='dw')
    layer_harness(layer, tf.random.normal([1, 10, 7, 4]), (1, 5, 4, 4))


def test_separable_harness(layer_harness):
    layer = convolutions.SeparableConv2DSame(
        6, 5, use_bias=False, use_bn=True, activation='relu', name='sep')
    layer_harness(layer, tf.random.normal([2, 9, 9, 4]), (2, 9, 9, 6))


@pytest.mark.parametrize('conv_type', ['standard_conv',
                                       'depthwise_separable_conv'])
def test_stacked_harness_and_names(layer_harness, conv_type):
    layer = convolutions.StackedConv2DSame(
        2, conv_type, 6, 5, use_bias=False, use_bn=True, activation='relu',
        name='stack')
    layer_harness(layer, tf.random.normal([1, 7, 9, 3]), (1, 7, 9, 6))
    assert hasattr(layer, '_conv1_bn_act') and hasattr(layer, '_conv2_bn_act')


def test_stacked_rejects_unknown_conv_type():
    with pytest.raises(ValueError, match="'dilated' is not one of"):
        convolutions.StackedConv2DSame(1, 'dilated', 4, 3, name='s')


@pytest.mark.parametrize('rate', [1, 3, 6])
def test_native_dilated_conv_equals_keras_convolution(rate):
    """Our Conv2D calls tf.nn.conv2d with native dilations; it must equal
    the tf.nn.convolution (space-to-batch) result Keras computes."""
    ours = convolutions.Conv2D(5, 3, padding='same', dilation_rate=rate)
    x = tf.random.normal([1, 13, 17, 4], seed=3)
    ours(x)
    reference = tf.nn.convolution(x, ours.kernel, padding='SAME',
                                  dilations=rate) + ours.bias
    np.testing.assert_allclose(ours(x).numpy(), reference.numpy(), atol=1e-5)


def test_global_context_harness(layer_harness):
    layer = convolutions.GlobalContext(name='gc')
    x = tf.random.normal([2, 5, 6, 3])
    out = layer_harness(layer, x, (2, 5, 6, 3))
    # Zero-initialized: starts as the identity.
    np.testing.assert_allclose(out.numpy(), x.numpy())


def test_plain_and_sac_conv2d_harness(layer_harness):
    layer_harness(convolutions.Conv2D(4, 3, padding='same', dilation_rate=2,
                                      name='conv'),
                  tf.random.normal([1, 9, 9, 3]), (1, 9, 9, 4))
    layer_harness(convolutions.SwitchableAtrousConv2D(4, 3, padding='same',
                                                      name='sac'),
                  tf.random.normal([1, 9, 9, 3]), (1, 9, 9, 4))
