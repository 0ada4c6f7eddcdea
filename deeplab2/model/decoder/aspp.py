"""Atrous spatial pyramid pooling (DeepLabV3's context module).

Five parallel branches on the high-level features (1x1 conv, three 3x3
atrous convs, image pooling), concatenated and projected by a 1x1 conv.

Image pooling: DeepLab2 average-pools with a window set from the training
crop ((crop - 1) / output_stride + 1), which at the crop size covers the
whole feature map, i.e. it is global pooling. At any other size its window
is wrong (a cause of exported models scoring worse than eval), so here the
branch always pools globally: identical at the crop size, right elsewhere.
"""

import keras
import tensorflow as tf

from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers import training_noise
from deeplab2.model.layers.normalization import BatchNormOptions


# Dropout after the projection, in training only (DeepLab2's value).
_PROJECTION_DROPOUT = 0.1


@keras.saving.register_keras_serializable(package='deeplab2')
class ASPPConv(base.Layer):
    """3x3 atrous conv + batch norm + activation."""

    def __init__(self, output_channels: int, atrous_rate: int,
                 batch_norm=None, activation: str = 'relu', **kwargs):
        super().__init__(**kwargs)
        self.output_channels = output_channels
        self.atrous_rate = atrous_rate
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation
        self._conv_bn_act = convolutions.Conv2DSame(
            output_channels, 3, atrous_rate=atrous_rate, use_bias=False,
            use_bn=True, batch_norm=self.batch_norm, activation=activation,
            name='conv_bn_act')

    def call(self, inputs, training=False):
        return self._conv_bn_act(inputs, training=training)

    def get_config(self):
        return {**super().get_config(),
                'output_channels': self.output_channels,
                'atrous_rate': self.atrous_rate,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}


@keras.saving.register_keras_serializable(package='deeplab2')
class ASPPPool(base.Layer):
    """Global average pool -> 1x1 conv + BN + activation -> broadcast back.

    Args:
      pool_size: the feature size of the training crop, kept for reference
        (see the module docstring: pooling is always global).
    """

    def __init__(self, output_channels: int, pool_size=None, batch_norm=None,
                 activation: str = 'relu', **kwargs):
        super().__init__(**kwargs)
        self.output_channels = output_channels
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation
        self._conv_bn_act = convolutions.Conv2DSame(
            output_channels, 1, use_bias=False, use_bn=True,
            batch_norm=self.batch_norm, activation=activation,
            name='conv_bn_act')

    def call(self, inputs, training=False):
        pooled = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        pooled = self._conv_bn_act(pooled, training=training)
        # Bilinear resizing from 1x1 (align_corners) is a broadcast.
        shape = tf.shape(inputs)
        return tf.broadcast_to(
            pooled, tf.stack([shape[0], shape[1], shape[2],
                              self.output_channels]))

    def get_config(self):
        return {**super().get_config(),
                'output_channels': self.output_channels,
                'pool_size': self.pool_size,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}


@keras.saving.register_keras_serializable(package='deeplab2')
class ASPP(base.Layer):
    """The ASPP module.

    Args:
      output_channels: channels of every branch and of the projection.
      atrous_rates: the three rates of the 3x3 branches.
      aspp_use_only_1x1_proj_conv: replace the module by its 1x1 projection.
      pool_size: training-crop feature size, recorded on the pooling branch.
    """

    def __init__(self, output_channels: int, atrous_rates,
                 aspp_use_only_1x1_proj_conv: bool = False, pool_size=None,
                 batch_norm=None, activation: str = 'relu', **kwargs):
        super().__init__(**kwargs)
        atrous_rates = tuple(atrous_rates)
        if not aspp_use_only_1x1_proj_conv and len(atrous_rates) != 3:
            raise ValueError(
                f'{self.name}: ASPP needs exactly 3 atrous_rates, got '
                f'{list(atrous_rates)} (DecoderOptions.atrous_rates).')
        self.output_channels = output_channels
        self.atrous_rates = atrous_rates
        self.aspp_use_only_1x1_proj_conv = aspp_use_only_1x1_proj_conv
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation
        branch_args = dict(batch_norm=self.batch_norm, activation=activation)
        self._proj_conv_bn_act = convolutions.Conv2DSame(
            output_channels, 1, use_bias=False, use_bn=True,
            name='proj_conv_bn_act', **branch_args)
        if aspp_use_only_1x1_proj_conv:
            return
        self._conv_bn_act = convolutions.Conv2DSame(
            output_channels, 1, use_bias=False, use_bn=True,
            name='conv_bn_act', **branch_args)
        for index, rate in enumerate(atrous_rates, start=1):
            setattr(self, f'_aspp_conv{index}', ASPPConv(
                output_channels, rate, name=f'aspp_conv{index}',
                **branch_args))
        self._aspp_pool = ASPPPool(output_channels, pool_size=self.pool_size,
                                   name='aspp_pool', **branch_args)

    def call(self, inputs, training=False):
        if self.aspp_use_only_1x1_proj_conv:
            return self._proj_conv_bn_act(inputs, training=training)
        branches = [self._conv_bn_act, self._aspp_conv1, self._aspp_conv2,
                    self._aspp_conv3, self._aspp_pool]
        x = tf.concat([branch(inputs, training=training)
                       for branch in branches], axis=3)
        x = self._proj_conv_bn_act(x, training=training)
        if training and _PROJECTION_DROPOUT > 0:
            # Not keras.layers.Dropout: it owns a seed variable that
            # DeepLab2 checkpoints do not have.
            x = training_noise.dropout(x, _PROJECTION_DROPOUT)
        return x

    def get_config(self):
        return {**super().get_config(),
                'output_channels': self.output_channels,
                'atrous_rates': self.atrous_rates,
                'aspp_use_only_1x1_proj_conv':
                    self.aspp_use_only_1x1_proj_conv,
                'pool_size': self.pool_size,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}
