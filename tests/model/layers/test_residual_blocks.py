"""Residual blocks: shapes, shortcut rules, identity at init, layout."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import residual_blocks


def _block(filters, input_channels, **kwargs):
    return residual_blocks.ResidualBlock(filters, input_channels,
                                         name='block1', **kwargs)


def test_bottleneck_with_projection_harness(layer_harness):
    # 3x3 stride 2 on 9x14, padded (1, 1): (9 + 2 - 3) // 2 + 1 = 5 and
    # (14 + 2 - 3) // 2 + 1 = 7; the 1x1 stride-2 shortcut agrees.
    block = _block((4, 4, 16), 8, strides=2, use_squeeze_and_excite=True,
                   drop_path_keep_prob=0.5)
    layer_harness(block, tf.random.normal([2, 9, 14, 8]), (2, 5, 7, 16))
    assert block._shortcut._conv.kernel.shape == (1, 1, 8, 16)
    assert block._conv2_bn_act._conv.dilation_rate == (1, 1)


def test_basic_block_with_sac_harness(layer_harness):
    block = _block((6, 6), 6, atrous_rate=2, second_conv_atrous_rate=4,
                   use_sac=True)
    layer_harness(block, tf.random.normal([1, 11, 13, 6]), (1, 11, 13, 6))
    assert not hasattr(block, '_shortcut')
    assert block._conv1_bn_act._conv.dilation_rate == (2, 2)
    assert block._conv2_bn._conv.dilation_rate == (4, 4)
    assert hasattr(block._conv2_bn._conv, '_switch')


def _checkpoint_keys(tmp_path, checkpoint_layout, layer):
    return set(checkpoint_layout.checkpoint_shapes(tmp_path, block=layer))


def test_bottleneck_layout(tmp_path, checkpoint_layout):
    """SAC on a bottleneck touches only the 3x3 conv; SE is `_se_conv`."""
    block = _block((2, 4, 8), 3, use_sac=True, use_squeeze_and_excite=True)
    block(tf.zeros([1, 5, 5, 3]))
    keys = _checkpoint_keys(tmp_path, checkpoint_layout, block)
    assert {k.split('/')[1] for k in keys} == {
        '_conv1_bn_act', '_conv2_bn_act', '_conv3_bn', '_shortcut',
        '_squeeze_and_excite'}
    sac = {k for k in keys if '_switch' in k or 'global_context' in k}
    assert {k.split('/')[1] for k in sac} == {'_conv2_bn_act'}
    assert 'block/_squeeze_and_excite/_se_conv/kernel' in keys


@pytest.mark.parametrize('filters,strides', [((2, 2, 4), 1), ((2, 2, 4), 2),
                                             ((4, 4), 1), ((4, 4), 2)])
def test_a_fresh_block_is_the_activated_identity(filters, strides):
    """The branch ends in a batch norm with gamma = 0, so at init (and at
    inference, moving stats 0 / 1) the block returns its activated input,
    subsampled when it strides without a projection."""
    block = _block(filters, 4, strides=strides)
    x = tf.random.normal([1, 7, 9, 4], seed=3)
    expected = tf.nn.relu(x).numpy()[:, ::strides, ::strides, :]
    np.testing.assert_allclose(block(x).numpy(), expected, atol=1e-6)


def test_rejects_wrong_input_channels():
    with pytest.raises(ValueError, match='built for 4 input channels'):
        _block((2, 2, 4), 4)(tf.zeros([1, 3, 3, 5]))


def test_rejects_other_filter_counts():
    with pytest.raises(ValueError, match='2 \\(basic\\) or 3'):
        _block((4,), 4)
