"""MobileNet's inverted bottleneck: expand 1x1 -> depthwise kxk -> SE ->
project 1x1, with a residual when the shape allows it.

The attribute names (`_conv1_bn_act`, `_conv2_bn_act`, `_squeeze_excitation`,
`_conv3_bn`) are DeepLab2's: its checkpoints address the weights by them.
"""

from typing import Any

import keras

from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers.normalization import BatchNormOptions
from deeplab2.model.layers.squeeze_and_excite import SqueezeAndExcite
from deeplab2.model.layers.squeeze_and_excite import make_divisible


@keras.saving.register_keras_serializable(package='deeplab2')
class InvertedBottleneck(base.Layer):
    """Inverted bottleneck block (MobileNetV2/V3) with batch norm after
    every convolution.

    `call` returns `(output, depthwise_output)`: DeepLab2's MobileNet uses
    the activation after the depthwise conv (the widest tensor of the block)
    as the segmentation endpoint, not the projected block output.

    Args:
      in_filters: channels of the input.
      out_filters: channels of the output.
      expand_ratio: expanded channels = make_divisible(in_filters *
        expand_ratio, divisible_by); at <= 1 there is no expand conv.
      strides: stride of the depthwise conv.
      kernel_size: kernel of the depthwise conv.
      se_ratio: squeeze-and-excite ratio of the expanded channels; None or
        0 for no squeeze-and-excite.
      activation: after the expand and the depthwise conv (the projection
        is linear).
      se_inner_activation: after the squeeze-and-excite reduce conv.
      se_gating_activation: of the squeeze-and-excite gate.
      atrous_rate: dilation of the depthwise conv.
      divisible_by: divisor for the expanded and squeezed channel counts.
      use_residual: add the input to the output when in_filters ==
        out_filters (DeepLab2 decides this from the block spec's stride, so
        a block made stride 1 for the output stride keeps no residual).
      batch_norm: BatchNormOptions (or its dict) of every batch norm.
      conv_kernel_weight_decay: L2 factor on the 1x1 kernels and the
        squeeze-and-excite kernels; the depthwise kernel is not decayed.
    """

    def __init__(self, in_filters: int, out_filters: int,
                 expand_ratio: float, strides: int, kernel_size: int = 3,
                 se_ratio: float | None = None, activation: str = 'relu',
                 se_inner_activation: str = 'relu',
                 se_gating_activation: str = 'sigmoid',
                 atrous_rate: int = 1, divisible_by: int = 1,
                 use_residual: bool = True, batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.in_filters = in_filters
        self.out_filters = out_filters
        self.expand_ratio = expand_ratio
        self.strides = strides
        self.kernel_size = kernel_size
        self.se_ratio = se_ratio
        self.activation = activation
        self.se_inner_activation = se_inner_activation
        self.se_gating_activation = se_gating_activation
        self.atrous_rate = atrous_rate
        self.divisible_by = divisible_by
        self.use_residual = use_residual
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        expand_filters = in_filters
        if expand_ratio > 1:
            expand_filters = make_divisible(in_filters * expand_ratio,
                                            divisible_by)
            self._conv1_bn_act = convolutions.Conv2DSame(
                expand_filters, 1, use_bias=False, use_bn=True,
                batch_norm=self.batch_norm, activation=activation,
                conv_kernel_weight_decay=conv_kernel_weight_decay,
                name='expand_conv')
        self._conv2_bn_act = convolutions.DepthwiseConv2DSame(
            kernel_size, strides=strides, atrous_rate=atrous_rate,
            use_bias=False, use_bn=True, batch_norm=self.batch_norm,
            activation=activation, name='depthwise_conv')
        self._squeeze_excitation = None
        if se_ratio:
            # The ratio applies to the expanded channels, not the input's.
            self._squeeze_excitation = SqueezeAndExcite(
                expand_filters, expand_filters, se_ratio,
                divisible_by=divisible_by, activation=se_inner_activation,
                gating_activation=se_gating_activation,
                kernel_initializer='he_normal',
                conv_kernel_weight_decay=conv_kernel_weight_decay,
                name=f'{self.name}_se')
        self._conv3_bn = convolutions.Conv2DSame(
            out_filters, 1, use_bias=False, use_bn=True,
            batch_norm=self.batch_norm, activation=None,
            conv_kernel_weight_decay=conv_kernel_weight_decay,
            name='project_conv')

    @property
    def _has_residual(self) -> bool:
        return self.use_residual and self.in_filters == self.out_filters

    def call(self, inputs, training=False):
        x = inputs
        if self.expand_ratio > 1:
            x = self._conv1_bn_act(x, training=training)
        x = self._conv2_bn_act(x, training=training)
        depthwise_output = x
        if self._squeeze_excitation is not None:
            x = self._squeeze_excitation(x)
        x = self._conv3_bn(x, training=training)
        if self._has_residual:
            x = x + inputs
        return x, depthwise_output

    def get_config(self):
        return {**super().get_config(), 'in_filters': self.in_filters,
                'out_filters': self.out_filters,
                'expand_ratio': self.expand_ratio, 'strides': self.strides,
                'kernel_size': self.kernel_size, 'se_ratio': self.se_ratio,
                'activation': self.activation,
                'se_inner_activation': self.se_inner_activation,
                'se_gating_activation': self.se_gating_activation,
                'atrous_rate': self.atrous_rate,
                'divisible_by': self.divisible_by,
                'use_residual': self.use_residual,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}
