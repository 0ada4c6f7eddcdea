"""Squeeze-and-excite layers and MobileNet's channel rounding."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.layers import squeeze_and_excite as se


@pytest.mark.parametrize('value,divisor,expected', [
    (16 * 0.25, 8, 8),   # below min_value: rounds up to the divisor
    (72 * 0.25, 8, 24),  # 18 -> 16 would lose > 10%, so 24
    (120, 8, 120), (100, 8, 104), (35, 8, 32), (36, 16, 48),
])
def test_make_divisible(value, divisor, expected):
    assert se.make_divisible(value, divisor) == expected


def test_squeeze_and_excite_harness(layer_harness):
    layer = se.SqueezeAndExcite(16, 16, 0.25, divisible_by=8,
                                gating_activation='hard_sigmoid',
                                name='squeeze_excitation')
    layer_harness(layer, tf.random.normal([2, 5, 7, 16]), (2, 5, 7, 16))
    assert layer._se_reduce.kernel.shape == (1, 1, 16, 8)


def test_simplified_squeeze_and_excite_is_a_channel_gate(layer_harness):
    layer = se.SimplifiedSqueezeAndExcite(4, name='se')
    x = tf.random.normal([1, 3, 3, 4])
    layer_harness(layer, x, (1, 3, 3, 4))
    # Kernel 0, bias 0: the gate is hard_sigmoid(0) = 3 * 0.16667 everywhere.
    layer._se_conv.kernel.assign(tf.zeros([1, 1, 4, 4]))
    layer._se_conv.bias.assign(tf.zeros([4]))
    np.testing.assert_allclose(layer(x).numpy(), x.numpy() * 0.50001,
                               rtol=1e-6)
