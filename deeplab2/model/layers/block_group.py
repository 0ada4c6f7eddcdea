"""A stage of a ResNet-family encoder: residual blocks at one resolution.

Strides and atrous rates follow DeepLab2's rule. Each stage is described by
the stride it would have in the original network (`original_resnet_stride`,
applied in its first block) and the total stride of its input there
(`original_resnet_input_stride`). Once that original stride reaches the
requested output stride, the stage stops striding and dilates instead:
  - a block's 3x3 conv has rate = original stride at the block's input /
    output_stride (if above 1), so the first block of a stage whose stride
    was dropped still has rate 1 and the later ones the doubled rate;
  - a basic block's second conv in the first block already sees the
    stage's output resolution, so it gets the stage's full rate.
Drop path uses the same original stride: the block's stage is
log2(stride at its input) - 1 (stride 4 -> stage 1, ..., 32 -> stage 4).
"""

import dataclasses
import math
from typing import Any

import keras

from deeplab2.model.layers import base
from deeplab2.model.layers import drop_path
from deeplab2.model.layers import residual_blocks
from deeplab2.model.layers.normalization import BatchNormOptions

BACKBONE_TYPES = ('resnet', 'resnet_beta', 'wider_resnet')
# The drop path schedule spans stages 1..4 (strides 4..32); 0 is the stem.
_DROP_PATH_NUM_STAGES = 4


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """How one residual block of a stage is built."""
    filters: tuple[int, ...]
    strides: int
    atrous_rate: int
    second_conv_atrous_rate: int
    drop_path_keep_prob: float


def _is_power_of_two(value: int) -> bool:
    return value > 0 and not value & (value - 1)


def block_filters(filters: int, backbone_type: str,
                  stage_output_stride: int) -> tuple[int, ...]:
    """Conv channels of the blocks of a stage with base width `filters`.

    ResNets use bottlenecks (f, f, 4f). Wider ResNets use basic blocks
    (4f, 4f), except in the stage that reaches stride 32, which uses a
    wider bottleneck (f, 2f, 4f).
    """
    if backbone_type in ('resnet', 'resnet_beta'):
        return (filters, filters, 4 * filters)
    if backbone_type == 'wider_resnet':
        if stage_output_stride < 32:
            return (4 * filters, 4 * filters)
        return (filters, 2 * filters, 4 * filters)
    raise ValueError(f'Unknown backbone type {backbone_type!r}; supported: '
                     f'{", ".join(BACKBONE_TYPES)}.')


def plan_block_group(filters: int, num_blocks: int,
                     original_resnet_stride: int,
                     original_resnet_input_stride: int, output_stride: int,
                     backbone_type: str, drop_path_keep_prob: float = 1.0,
                     drop_path_beyond_stride: int = 16,
                     drop_path_schedule: str = 'constant'
                     ) -> list[BlockSpec]:
    """The BlockSpec of every block of a stage (see the module docstring)."""
    for label, value in (('original_resnet_input_stride',
                          original_resnet_input_stride),
                         ('output_stride', output_stride)):
        if not _is_power_of_two(value):
            raise ValueError(f'{label} must be a power of 2, got {value}.')
    stage_output_stride = original_resnet_input_stride * original_resnet_stride
    conv_filters = block_filters(filters, backbone_type, stage_output_stride)
    specs = []
    current_stride = original_resnet_input_stride
    for index in range(num_blocks):
        first = index == 0
        strides = (original_resnet_stride
                   if first and original_resnet_input_stride < output_stride
                   else 1)
        rate = max(1, current_stride // output_stride)
        second_rate = (max(1, stage_output_stride // output_stride)
                       if first else rate)
        keep_prob = 1.0
        if current_stride >= drop_path_beyond_stride:
            keep_prob = drop_path.scheduled_keep_prob(
                drop_path_keep_prob, drop_path_schedule,
                current_stage=int(round(math.log2(current_stride) - 1)),
                num_stages=_DROP_PATH_NUM_STAGES)
        specs.append(BlockSpec(conv_filters, strides, rate, second_rate,
                               keep_prob))
        if first:
            current_stride *= original_resnet_stride
    return specs


@keras.saving.register_keras_serializable(package='deeplab2')
class BlockGroup(base.Layer):
    """Residual blocks `_block1`, `_block2`, ... (DeepLab2's names).

    Args:
      filters: base width (the 3x3 channels of a ResNet bottleneck).
      num_blocks: number of residual blocks.
      input_channels: channels of the stage's input.
      original_resnet_stride, original_resnet_input_stride, output_stride:
        see the module docstring.
      backbone_type: 'resnet', 'resnet_beta' or 'wider_resnet'.
      use_sac_beyond_stride: use switchable atrous convs if the stage's
        original output stride is >= this (<= 0: never).
      use_squeeze_and_excite: simplified SE in every block.
      drop_path_keep_prob, drop_path_beyond_stride, drop_path_schedule:
        stochastic depth for blocks whose input stride is >= the threshold.
      activation, batch_norm, conv_kernel_weight_decay: for every block.
    """

    def __init__(self, filters: int, num_blocks: int, input_channels: int,
                 original_resnet_stride: int,
                 original_resnet_input_stride: int, output_stride: int = 16,
                 backbone_type: str = 'resnet', use_sac_beyond_stride: int = 0,
                 use_squeeze_and_excite: bool = False,
                 drop_path_keep_prob: float = 1.0,
                 drop_path_beyond_stride: int = 16,
                 drop_path_schedule: str = 'constant',
                 activation: str = 'relu', batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.num_blocks = num_blocks
        self.input_channels = input_channels
        self.original_resnet_stride = original_resnet_stride
        self.original_resnet_input_stride = original_resnet_input_stride
        self.output_stride = output_stride
        self.backbone_type = backbone_type
        self.use_sac_beyond_stride = use_sac_beyond_stride
        self.use_squeeze_and_excite = use_squeeze_and_excite
        self.drop_path_keep_prob = drop_path_keep_prob
        self.drop_path_beyond_stride = drop_path_beyond_stride
        self.drop_path_schedule = drop_path_schedule
        self.activation = activation
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        self.block_specs = tuple(plan_block_group(
            filters, num_blocks, original_resnet_stride,
            original_resnet_input_stride, output_stride, backbone_type,
            drop_path_keep_prob, drop_path_beyond_stride, drop_path_schedule))
        stage_output_stride = (original_resnet_input_stride *
                               original_resnet_stride)
        use_sac = stage_output_stride >= use_sac_beyond_stride > 0
        channels = input_channels
        self._block_names = tuple(f'_block{i + 1}' for i in range(num_blocks))
        for name, spec in zip(self._block_names, self.block_specs):
            setattr(self, name, residual_blocks.ResidualBlock(
                spec.filters, channels, strides=spec.strides,
                atrous_rate=spec.atrous_rate,
                second_conv_atrous_rate=spec.second_conv_atrous_rate,
                use_squeeze_and_excite=use_squeeze_and_excite,
                use_sac=use_sac,
                drop_path_keep_prob=spec.drop_path_keep_prob,
                activation=activation, batch_norm=self.batch_norm,
                conv_kernel_weight_decay=conv_kernel_weight_decay,
                name=name[1:]))
            channels = spec.filters[-1]
        self.output_channels = channels

    def call(self, inputs, training=False):
        x = inputs
        for name in self._block_names:
            x = getattr(self, name)(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(), 'filters': self.filters,
                'num_blocks': self.num_blocks,
                'input_channels': self.input_channels,
                'original_resnet_stride': self.original_resnet_stride,
                'original_resnet_input_stride':
                    self.original_resnet_input_stride,
                'output_stride': self.output_stride,
                'backbone_type': self.backbone_type,
                'use_sac_beyond_stride': self.use_sac_beyond_stride,
                'use_squeeze_and_excite': self.use_squeeze_and_excite,
                'drop_path_keep_prob': self.drop_path_keep_prob,
                'drop_path_beyond_stride': self.drop_path_beyond_stride,
                'drop_path_schedule': self.drop_path_schedule,
                'activation': self.activation,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}
