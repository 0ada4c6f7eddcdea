"""The residual blocks of the ResNet-family encoders (DeepLab2's AxialBlock
without attention).

A block takes NON-activated features, activates them, and returns
`branch(x) + shortcut(x)` without a final activation, so the encoder can
report both the raw sum ('stageN') and its activation ('resN').

- Bottleneck (three filters): 1x1 -> 3x3 (strided, atrous, optionally SAC)
  -> 1x1. ResNet-50 and SWideRNet's last stage.
- Basic (two filters): 3x3 (strided, atrous, optionally SAC) -> 3x3. The
  other stages of SWideRNet / Wide-ResNet-41.

The last batch norm of the branch starts with gamma = 0, so every block is
the identity at initialization (Goyal et al., 2017), as in DeepLab2.
"""

from typing import Any, Sequence

import keras

from deeplab2.model.layers import activations
from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers import drop_path
from deeplab2.model.layers import squeeze_and_excite
from deeplab2.model.layers.normalization import BatchNormOptions


@keras.saving.register_keras_serializable(package='deeplab2')
class ResidualBlock(base.Layer):
    """A bottleneck or basic residual block, chosen by len(filters).

    Args:
      filters: (1x1, 3x3, 1x1) channels for a bottleneck block, or
        (3x3, 3x3) channels for a basic block.
      input_channels: channels of the input. A projection shortcut (1x1
        conv + BN) is used iff they differ from filters[-1].
      strides: stride of the first 3x3 conv (and of the shortcut).
      atrous_rate: dilation of the first 3x3 conv.
      second_conv_atrous_rate: dilation of a basic block's second 3x3 conv
        (None: atrous_rate). DeepLab2 uses it so that the first block of a
        stage whose stride became atrous is consistent across output
        strides.
      use_squeeze_and_excite: gate the branch with a simplified SE.
      use_sac: make the 3x3 convs switchable atrous convs with global
        context (a strided conv keeps only the global context, as in
        DeepLab2).
      drop_path_keep_prob: keep probability of the branch in training.
      activation: activation of the input and inside the branch.
      batch_norm: BatchNormOptions (or its dict).
      conv_kernel_weight_decay: L2 factor on the conv kernels.
    """

    def __init__(self, filters: Sequence[int], input_channels: int,
                 strides: int = 1, atrous_rate: int = 1,
                 second_conv_atrous_rate: int | None = None,
                 use_squeeze_and_excite: bool = False, use_sac: bool = False,
                 drop_path_keep_prob: float = 1.0, activation: str = 'relu',
                 batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if len(filters) not in (2, 3):
            raise ValueError(f'{self.name}: filters must have 2 (basic) or 3 '
                             f'(bottleneck) entries, got {list(filters)}.')
        self.filters = [int(f) for f in filters]
        self.input_channels = input_channels
        self.strides = strides
        self.atrous_rate = atrous_rate
        self.second_conv_atrous_rate = second_conv_atrous_rate
        self.use_squeeze_and_excite = use_squeeze_and_excite
        self.use_sac = use_sac
        self.drop_path_keep_prob = drop_path_keep_prob
        self.activation = activation
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        if len(self.filters) == 3:
            self._make_bottleneck_branch()
        else:
            self._make_basic_branch()
        if use_squeeze_and_excite:
            self._squeeze_and_excite = (
                squeeze_and_excite.SimplifiedSqueezeAndExcite(
                    self.filters[-1], name='squeeze_and_excite'))
        self._drop_path = drop_path.DropPath(drop_path_keep_prob,
                                             name='drop_path')
        if input_channels != self.filters[-1]:
            self._shortcut = self._conv(self.filters[-1], 1, 'shortcut',
                                        strides=strides)
        self._activation_fn = activations.get_activation(activation)

    def _conv(self, channels, kernel_size, name, activation=None,
              **kwargs) -> convolutions.Conv2DSame:
        return convolutions.Conv2DSame(
            channels, kernel_size, use_bias=False, use_bn=True,
            batch_norm=self.batch_norm, activation=activation,
            conv_kernel_weight_decay=self.conv_kernel_weight_decay,
            name=name, **kwargs)

    def _make_bottleneck_branch(self):
        reduce, middle, expand = self.filters
        self._conv1_bn_act = self._conv(reduce, 1, 'conv1_bn_act',
                                        self.activation)
        self._conv2_bn_act = self._conv(
            middle, 3, 'conv2_bn_act', self.activation, strides=self.strides,
            atrous_rate=self.atrous_rate,
            use_switchable_atrous_conv=self.use_sac,
            use_global_context_in_sac=self.use_sac)
        self._conv3_bn = self._conv(expand, 1, 'conv3_bn',
                                    bn_gamma_initializer='zeros')
        self._branch_names = ('_conv1_bn_act', '_conv2_bn_act', '_conv3_bn')

    def _make_basic_branch(self):
        first, second = self.filters
        second_rate = (self.atrous_rate if self.second_conv_atrous_rate is None
                       else self.second_conv_atrous_rate)
        sac = dict(use_switchable_atrous_conv=self.use_sac,
                   use_global_context_in_sac=self.use_sac)
        self._conv1_bn_act = self._conv(
            first, 3, 'conv1_bn_act', self.activation, strides=self.strides,
            atrous_rate=self.atrous_rate, **sac)
        self._conv2_bn = self._conv(
            second, 3, 'conv2_bn', atrous_rate=second_rate,
            bn_gamma_initializer='zeros', **sac)
        self._branch_names = ('_conv1_bn_act', '_conv2_bn')

    def build(self, input_shape):
        if input_shape[-1] != self.input_channels:
            raise ValueError(f'{self.name}: built for {self.input_channels} '
                             f'input channels, got shape {input_shape}.')
        super().build(input_shape)

    def call(self, inputs, training=False):
        x = self._activation_fn(inputs)
        if self.input_channels != self.filters[-1]:
            shortcut = self._shortcut(x, training=training)
        elif self.strides == 1:
            shortcut = x
        else:
            # Same as a 1x1 strided conv with DeepLab2's padding (none).
            shortcut = x[:, ::self.strides, ::self.strides, :]
        # By attribute name: a list of the layers would give the checkpoint
        # a second path to them (see base.Layer).
        for name in self._branch_names:
            x = getattr(self, name)(x, training=training)
        if self.use_squeeze_and_excite:
            x = self._squeeze_and_excite(x)
        x = self._drop_path(x, training=training)
        return x + shortcut

    def get_config(self):
        return {**super().get_config(), 'filters': self.filters,
                'input_channels': self.input_channels,
                'strides': self.strides, 'atrous_rate': self.atrous_rate,
                'second_conv_atrous_rate': self.second_conv_atrous_rate,
                'use_squeeze_and_excite': self.use_squeeze_and_excite,
                'use_sac': self.use_sac,
                'drop_path_keep_prob': self.drop_path_keep_prob,
                'activation': self.activation,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}
