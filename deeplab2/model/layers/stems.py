"""Stems of the ResNet-family encoders: the first stride-2 convolutions.

Every stem returns features that are NOT activated: the encoder reports
them as 'stage1' and their ReLU as 'res1', and the next residual block
applies the activation itself.

- 'resnet': one 7x7 stride-2 conv + BN. DeepLab2 drops ResNet's max pool
  and strides the first residual block instead.
- 'resnet_beta': the Inception-style stem, three 3x3 convs (the first
  strided) with 64, 64 and 128 channels.
- 'wider_resnet': one 3x3 stride-2 conv + BN (SWideRNet, Wide-ResNet-41).
"""

from typing import Any

import keras

from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers.normalization import BatchNormOptions

# Kernel size of the single-conv stems, by backbone type.
_SINGLE_CONV_KERNEL = {'resnet': 7, 'wider_resnet': 3}
STEM_TYPES = ('resnet', 'resnet_beta', 'wider_resnet')


@keras.saving.register_keras_serializable(package='deeplab2')
class InceptionStem(base.Layer):
    """conv3x3/2 + BN + act -> conv3x3 + BN + act -> conv3x3 + BN.

    Args:
      width_multiplier: scales the 64 / 64 / 128 channels. DeepLab2
        truncates here (int(64 * m)) where the other stems round.
      activation: after the first two convs.
      batch_norm: BatchNormOptions (or its dict).
      conv_kernel_weight_decay: L2 factor on the kernels.
    """

    def __init__(self, width_multiplier: float = 1.0,
                 activation: str = 'relu', batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.width_multiplier = width_multiplier
        self.activation = activation
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay
        narrow = int(64 * width_multiplier)
        wide = int(128 * width_multiplier)
        common = dict(kernel_size=3, use_bias=False, use_bn=True,
                      batch_norm=self.batch_norm,
                      conv_kernel_weight_decay=conv_kernel_weight_decay)
        self._conv1_bn_act = convolutions.Conv2DSame(
            narrow, strides=2, activation=activation, name='conv1_bn_act',
            **common)
        self._conv2_bn_act = convolutions.Conv2DSame(
            narrow, activation=activation, name='conv2_bn_act', **common)
        self._conv3_bn = convolutions.Conv2DSame(
            wide, activation=None, name='conv3_bn', **common)

    def call(self, inputs, training=False):
        x = self._conv1_bn_act(inputs, training=training)
        x = self._conv2_bn_act(x, training=training)
        return self._conv3_bn(x, training=training)

    def get_config(self):
        return {**super().get_config(),
                'width_multiplier': self.width_multiplier,
                'activation': self.activation,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}


def stem_output_channels(stem_type: str, width_multiplier: float) -> int:
    """Channels the stem of `stem_type` outputs."""
    if stem_type == 'resnet_beta':
        return int(128 * width_multiplier)
    return int(round(64 * width_multiplier))


def build_stem(stem_type: str, width_multiplier: float = 1.0, *,
               activation: str = 'relu', batch_norm: Any = None,
               conv_kernel_weight_decay: float = 0.0) -> base.Layer:
    """The stem layer of a ResNet-family encoder, named 'stem'.

    Args:
      stem_type: 'resnet', 'resnet_beta' or 'wider_resnet'.
      width_multiplier: DeepLab2's stem_width_multiplier.
      activation: used inside the Inception stem only; the single-conv stems
        end without activation, as in DeepLab2.

    Raises:
      ValueError: for an unknown stem type.
    """
    if stem_type == 'resnet_beta':
        return InceptionStem(
            width_multiplier=width_multiplier, activation=activation,
            batch_norm=batch_norm,
            conv_kernel_weight_decay=conv_kernel_weight_decay, name='stem')
    if stem_type not in _SINGLE_CONV_KERNEL:
        raise ValueError(f'Unknown stem type {stem_type!r}; supported: '
                         f'{", ".join(STEM_TYPES)}.')
    return convolutions.Conv2DSame(
        stem_output_channels(stem_type, width_multiplier),
        _SINGLE_CONV_KERNEL[stem_type], strides=2, use_bias=False,
        use_bn=True, batch_norm=batch_norm, activation=None,
        conv_kernel_weight_decay=conv_kernel_weight_decay, name='stem')
