"""Convolutions with DeepLab2's padding, optional batch norm and activation.

DeepLab2 pads strided convolutions symmetrically ((k_eff - 1) // 2 before,
the rest after) and then convolves with VALID padding, where Keras' 'same'
would put the extra row and column at the bottom-right. Stride-1
convolutions use 'same' directly (odd kernels pad symmetrically anyway).
The attribute names (`_conv`, `_batch_norm`, `_depthwise_conv`, ...) are
DeepLab2's, because its checkpoints address variables by them. The options,
padding and batch norm + activation the blocks share live in `_ConvBlock`.
"""

from typing import Any

import keras
import tensorflow as tf

from deeplab2.model.layers import activations
from deeplab2.model.layers import base
from deeplab2.model.layers import conv_gradient
from deeplab2.model.layers import depthwise
from deeplab2.model.layers.normalization import BatchNormOptions


def same_padding(kernel_size: int, atrous_rate: int = 1) -> tuple[int, int]:
    """(before, after) padding that keeps a strided conv aligned as DeepLab2."""
    effective = kernel_size + (kernel_size - 1) * (atrous_rate - 1)
    total = effective - 1
    return total // 2, total - total // 2


def _is_unit_stride(strides) -> bool:
    if isinstance(strides, int):
        return strides == 1
    return tuple(strides) == (1, 1)


@keras.saving.register_keras_serializable(package='deeplab2')
class Conv2D(keras.layers.Conv2D):
    """keras Conv2D calling tf.nn.conv2d with native dilations.

    Keras goes through tf.nn.convolution, which runs dilated convolutions
    as space-to-batch + conv + batch-to-space; the native dilated kernel is
    about twice as fast on CPU for ASPP-sized rates. Same variables, same
    results. Stride-1 convolutions that are 1x1 or dilated take their
    kernel gradient as matrix products (`conv_gradient`).
    """

    def _takes_tap_gradient(self) -> bool:
        return (tuple(self.strides) == (1, 1) and self.groups == 1
                and self.data_format == 'channels_last'
                and (tuple(self.kernel_size) == (1, 1)
                     or max(self.dilation_rate) > 1))

    def convolution_op(self, inputs, kernel):
        if self._takes_tap_gradient():
            return conv_gradient.conv2d(inputs, kernel, self.padding.upper(),
                                        tuple(self.dilation_rate))
        return tf.nn.conv2d(inputs, kernel, strides=list(self.strides),
                            padding=self.padding.upper(),
                            dilations=list(self.dilation_rate))


@keras.saving.register_keras_serializable(package='deeplab2')
class GlobalContext(base.Layer):
    """Adds a 1x1 conv of the global average to every position (SAC's
    pre/post context). Zero-initialized, so it starts as the identity."""

    def build(self, input_shape):
        self.convolution = keras.layers.Conv2D(
            input_shape[-1], 1, kernel_initializer='zeros',
            bias_initializer='zeros', name='convolution')
        self.convolution.build((None, 1, 1, input_shape[-1]))

    def call(self, inputs):
        pooled = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        return inputs + self.convolution(pooled)


@keras.saving.register_keras_serializable(package='deeplab2')
class SwitchableAtrousConv2D(Conv2D):
    """Switchable atrous convolution (DetectoRS): one kernel applied at
    dilation r and 3r, blended per pixel by a learned switch computed from a
    5x5 average of the input. Stride 1 only, 'same' padding."""

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self._average_pool = keras.layers.AveragePooling2D(
            pool_size=5, strides=1, padding='same')
        self._switch = keras.layers.Conv2D(
            1, 1, strides=self.strides, kernel_initializer='zeros',
            bias_initializer='zeros', name='switch')

    def call(self, inputs):
        switch = self._switch(self._average_pool(inputs))
        small = self.convolution_op(inputs, self.kernel)
        large = tf.nn.conv2d(
            inputs, self.kernel, strides=list(self.strides), padding='SAME',
            dilations=[3 * rate for rate in self.dilation_rate])
        outputs = switch * large + (1.0 - switch) * small
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs


class _ConvBlock(base.Layer):
    """What the conv blocks below share: their common options (and config),
    the rule that batch norm replaces the bias, DeepLab2's padding of
    strided convolutions, and the batch norm + activation after the conv.

    A block that holds a convolution itself creates it with
    `self._conv_padding()` as its Keras padding, then calls
    `self._add_norm_and_activation()`; its `call` runs `self._pad`, the
    convolution, then `self._norm_and_activation`. Blocks made of other
    blocks (separable, stacked) use only the options.
    """

    def __init__(self, kernel_size: int, strides: int = 1,
                 atrous_rate: int = 1, use_bias: bool = True,
                 use_bn: bool = False, batch_norm: Any = None,
                 activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if use_bn and use_bias:
            raise ValueError(f'{self.name}: a convolution followed by batch '
                             'norm must not have a bias.')
        self.kernel_size = kernel_size
        self.strides = strides
        self.atrous_rate = atrous_rate
        self.use_bias = use_bias
        self.use_bn = use_bn
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation

    def _conv_padding(self) -> str:
        """Keras padding for this block's convolution. A strided conv gets
        'valid' after `_pad` has padded symmetrically (the amount is kept in
        `_padding`); a stride-1 conv pads itself with 'same'."""
        if _is_unit_stride(self.strides):
            return 'same'
        self._padding = same_padding(self.kernel_size, self.atrous_rate)
        return 'valid'

    def _pad(self, x):
        if _is_unit_stride(self.strides):
            return x
        before, after = self._padding
        return tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])

    def _add_norm_and_activation(self, gamma_initializer: str = 'ones'):
        # After the convolution, so that `weights` (the order get_weights and
        # set_weights use) lists the kernel before the batch norm.
        if self.use_bn:
            self._batch_norm = self.batch_norm.make(
                gamma_initializer=gamma_initializer)
        self._activation_fn = activations.get_activation(self.activation)

    def _norm_and_activation(self, x, training):
        if self.use_bn:
            x = self._batch_norm(x, training=training)
        return self._activation_fn(x)

    def get_config(self):
        return {**super().get_config(), 'kernel_size': self.kernel_size,
                'strides': self.strides, 'atrous_rate': self.atrous_rate,
                'use_bias': self.use_bias, 'use_bn': self.use_bn,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}


@keras.saving.register_keras_serializable(package='deeplab2')
class Conv2DSame(_ConvBlock):
    """Conv2D (+ batch norm) (+ activation) with DeepLab2's padding.

    Args:
      output_channels: filters of the convolution.
      kernel_size: square kernel size.
      strides: stride (int).
      atrous_rate: dilation rate (int).
      use_bias: add a bias (not allowed together with batch norm).
      use_bn: add batch norm after the convolution.
      batch_norm: BatchNormOptions (or its dict) for that batch norm.
      bn_gamma_initializer: 'ones', or 'zeros' for residual branches that
        should start as the identity.
      activation: activation name or None.
      use_switchable_atrous_conv: use SAC (stride 1 only; ignored otherwise,
        as DeepLab2 does).
      use_global_context_in_sac: add SAC's pre/post global context.
      conv_kernel_weight_decay: L2 factor on the kernel (added to the loss).
    """

    def __init__(self, output_channels: int, kernel_size: int,
                 strides: int = 1, atrous_rate: int = 1,
                 use_bias: bool = True, use_bn: bool = False,
                 batch_norm: Any = None, bn_gamma_initializer: str = 'ones',
                 activation: str | None = None,
                 use_switchable_atrous_conv: bool = False,
                 use_global_context_in_sac: bool = False,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(kernel_size, strides, atrous_rate, use_bias, use_bn,
                         batch_norm, activation, **kwargs)
        self.output_channels = output_channels
        self.bn_gamma_initializer = bn_gamma_initializer
        self.use_switchable_atrous_conv = use_switchable_atrous_conv
        self.use_global_context_in_sac = use_global_context_in_sac
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        if use_global_context_in_sac:
            self._pre_global_context = GlobalContext(name='pre_global_context')
        padding = self._conv_padding()
        conv_class = (SwitchableAtrousConv2D if use_switchable_atrous_conv
                      and padding == 'same' else Conv2D)
        self._conv = conv_class(
            output_channels, kernel_size, strides=strides, padding=padding,
            dilation_rate=atrous_rate, use_bias=use_bias,
            kernel_initializer='he_normal',
            kernel_regularizer=(keras.regularizers.L2(conv_kernel_weight_decay)
                                if conv_kernel_weight_decay else None),
            name='conv')
        if use_global_context_in_sac:
            self._post_global_context = GlobalContext(name='post_global_context')
        self._add_norm_and_activation(bn_gamma_initializer)

    def call(self, inputs, training=False):
        x = inputs
        if self.use_global_context_in_sac:
            x = self._pre_global_context(x)
        x = self._conv(self._pad(x))
        if self.use_global_context_in_sac:
            x = self._post_global_context(x)
        return self._norm_and_activation(x, training)

    def get_config(self):
        return {**super().get_config(),
                'output_channels': self.output_channels,
                'bn_gamma_initializer': self.bn_gamma_initializer,
                'use_switchable_atrous_conv': self.use_switchable_atrous_conv,
                'use_global_context_in_sac': self.use_global_context_in_sac,
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}


@keras.saving.register_keras_serializable(package='deeplab2')
class DepthwiseConv2DSame(_ConvBlock):
    """DepthwiseConv2D (+ batch norm) (+ activation) with DeepLab2's padding.
    Arguments as Conv2DSame, without output_channels (multiplier 1)."""

    def __init__(self, kernel_size: int, strides: int = 1,
                 atrous_rate: int = 1, use_bias: bool = True,
                 use_bn: bool = False, batch_norm: Any = None,
                 activation: str | None = None, **kwargs):
        super().__init__(kernel_size, strides, atrous_rate, use_bias, use_bn,
                         batch_norm, activation, **kwargs)
        self._depthwise_conv = depthwise.DepthwiseConv2D(
            kernel_size, strides=strides, padding=self._conv_padding(),
            dilation_rate=atrous_rate, use_bias=use_bias,
            name='depthwise_conv')
        self._add_norm_and_activation()

    def call(self, inputs, training=False):
        x = self._depthwise_conv(self._pad(inputs))
        return self._norm_and_activation(x, training)


@keras.saving.register_keras_serializable(package='deeplab2')
class SeparableConv2DSame(_ConvBlock):
    """Depthwise kxk then pointwise 1x1, each with its own batch norm and
    activation (DeepLab2's separable conv, not Keras' fused one)."""

    def __init__(self, output_channels: int, kernel_size: int,
                 strides: int = 1, atrous_rate: int = 1,
                 use_bias: bool = True, use_bn: bool = False,
                 batch_norm: Any = None, activation: str | None = None,
                 **kwargs):
        super().__init__(kernel_size, strides, atrous_rate, use_bias, use_bn,
                         batch_norm, activation, **kwargs)
        self.output_channels = output_channels
        shared = dict(use_bias=use_bias, use_bn=use_bn,
                      batch_norm=self.batch_norm, activation=activation)
        self._depthwise = DepthwiseConv2DSame(
            kernel_size, strides=strides, atrous_rate=atrous_rate,
            name='depthwise', **shared)
        self._pointwise = Conv2DSame(output_channels, 1, name='pointwise',
                                     **shared)

    def call(self, inputs, training=False):
        x = self._depthwise(inputs, training=training)
        return self._pointwise(x, training=training)

    def get_config(self):
        return {**super().get_config(),
                'output_channels': self.output_channels}


CONV_TYPES = {
    'standard_conv': Conv2DSame,
    'depthwise_separable_conv': SeparableConv2DSame,
}


def conv_bn_act_name(index: int, use_bn: bool, activation: str | None) -> str:
    """DeepLab2's attribute name of the index-th (0-based) conv in a stack:
    `_conv1`, `_conv1_bn`, `_conv1_bn_act`, ..."""
    name = f'_conv{index + 1}'
    if use_bn:
        name += '_bn'
    if activation is not None and activation.lower() not in ('none',
                                                              'linear'):
        name += '_act'
    return name


@keras.saving.register_keras_serializable(package='deeplab2')
class StackedConv2DSame(_ConvBlock):
    """num_layers convolutions of one type in sequence, named
    `_conv1_bn_act`, `_conv2_bn_act`, ... as in DeepLab2.

    Args:
      conv_type: 'standard_conv' or 'depthwise_separable_conv'.
      Others as Conv2DSame.
    """

    def __init__(self, num_layers: int, conv_type: str, output_channels: int,
                 kernel_size: int, strides: int = 1, atrous_rate: int = 1,
                 use_bias: bool = True, use_bn: bool = False,
                 batch_norm: Any = None, activation: str | None = None,
                 **kwargs):
        super().__init__(kernel_size, strides, atrous_rate, use_bias, use_bn,
                         batch_norm, activation, **kwargs)
        if conv_type not in CONV_TYPES:
            raise ValueError(f'{self.name}: conv_type {conv_type!r} is not '
                             f'one of {", ".join(CONV_TYPES)}.')
        self.num_layers = num_layers
        self.conv_type = conv_type
        self.output_channels = output_channels
        self._layer_names = []
        for index in range(num_layers):
            attribute = conv_bn_act_name(index, use_bn, activation)
            setattr(self, attribute, CONV_TYPES[conv_type](
                output_channels, kernel_size, strides=strides,
                atrous_rate=atrous_rate, use_bias=use_bias, use_bn=use_bn,
                batch_norm=self.batch_norm, activation=activation,
                name=attribute[1:]))
            self._layer_names.append(attribute)

    def call(self, inputs, training=False):
        x = inputs
        for attribute in self._layer_names:
            x = getattr(self, attribute)(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), 'num_layers': self.num_layers,
                'conv_type': self.conv_type,
                'output_channels': self.output_channels}
