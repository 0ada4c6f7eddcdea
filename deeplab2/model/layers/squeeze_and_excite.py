"""Squeeze-and-excite: reweight channels by a function of their global mean.

`SqueezeAndExcite` is the original two-layer form (MobileNetV3);
`SimplifiedSqueezeAndExcite` is CenterMask's one-layer form with a hard
sigmoid (SWideRNet's `use_squeeze_and_excite`).
"""

import keras
import tensorflow as tf

from deeplab2.model.layers import activations
from deeplab2.model.layers import base


def make_divisible(value: float, divisor: int,
                   min_value: int | None = None) -> int:
    """Rounds `value` to a multiple of `divisor`, never below `min_value`
    (default: divisor) and never more than 10% below `value` (MobileNet's
    channel rule)."""
    min_value = divisor if min_value is None else min_value
    if min_value % divisor:
        raise ValueError(f'min_value {min_value} is not a multiple of '
                         f'{divisor}')
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


@keras.saving.register_keras_serializable(package='deeplab2')
class SqueezeAndExcite(base.Layer):
    """Global mean -> 1x1 reduce -> activation -> 1x1 expand -> gate.

    Args:
      in_filters: channels the ratio applies to.
      out_filters: channels of the gate (= input channels).
      se_ratio: reduced channels = make_divisible(in_filters * se_ratio).
      divisible_by: divisor for the reduced channel count.
      activation: after the reduce conv.
      gating_activation: of the gate.
      kernel_initializer: of both 1x1 convs.
      conv_kernel_weight_decay: L2 factor on both kernels (DeepLab2's
        inverted bottleneck regularizes them like its other convs).
    """

    def __init__(self, in_filters: int, out_filters: int, se_ratio: float,
                 divisible_by: int = 1, activation: str = 'relu',
                 gating_activation: str = 'sigmoid',
                 kernel_initializer: str = 'VarianceScaling',
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.in_filters = in_filters
        self.out_filters = out_filters
        self.se_ratio = se_ratio
        self.divisible_by = divisible_by
        self.activation = activation
        self.gating_activation = gating_activation
        self.kernel_initializer = kernel_initializer
        self.conv_kernel_weight_decay = conv_kernel_weight_decay
        reduced = make_divisible(max(1, int(in_filters * se_ratio)),
                                 divisible_by)
        regularizer = (keras.regularizers.L2(conv_kernel_weight_decay)
                       if conv_kernel_weight_decay else None)
        self._se_reduce = keras.layers.Conv2D(
            reduced, 1, kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer, name=f'{self.name}_reduce')
        self._se_expand = keras.layers.Conv2D(
            out_filters, 1, kernel_initializer=kernel_initializer,
            kernel_regularizer=regularizer, name=f'{self.name}_expand')
        self._activation_fn = activations.get_activation(activation)
        self._gating_fn = activations.get_activation(gating_activation)

    def call(self, inputs):
        x = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        x = self._activation_fn(self._se_reduce(x))
        return self._gating_fn(self._se_expand(x)) * inputs

    def get_config(self):
        return {**super().get_config(), 'in_filters': self.in_filters,
                'out_filters': self.out_filters, 'se_ratio': self.se_ratio,
                'divisible_by': self.divisible_by,
                'activation': self.activation,
                'gating_activation': self.gating_activation,
                'kernel_initializer': self.kernel_initializer,
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}


@keras.saving.register_keras_serializable(package='deeplab2')
class SimplifiedSqueezeAndExcite(base.Layer):
    """Global mean -> one 1x1 conv -> hard sigmoid gate.

    Args:
      squeeze_channels: output channels of the conv (= input channels).
    """

    def __init__(self, squeeze_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.squeeze_channels = squeeze_channels
        self._se_conv = keras.layers.Conv2D(
            squeeze_channels, 1, kernel_initializer='VarianceScaling',
            name='squeeze_and_excite')

    def call(self, inputs):
        pooled = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        return activations.hard_sigmoid(self._se_conv(pooled)) * inputs

    def get_config(self):
        return {**super().get_config(),
                'squeeze_channels': self.squeeze_channels}
