"""ResNet-family encoders as DeepLab2 builds them for Panoptic-DeepLab:
ResNet-50, ResNet-50-beta, Wide-ResNet-41 and SWideRNet.

All four are DeepLab2's Axial-ResNet without attention, in classification
mode. Its differences from the textbook ResNet-50 are kept, because
checkpoints and numerics depend on them: no max pool after the stem (the
first block of stage 2 strides instead) and the stride in the 3x3 conv.

Endpoints (DeepLab2's names): 'stageN' are the non-activated outputs,
'resN' their activations, for N = 1 (stem; for wider ResNets the first
residual stage replaces it) to 5; 'backbone_output' equals 'res5'.
"""

import dataclasses
from typing import Any, Sequence

import keras
import tensorflow as tf

from deeplab2.model.layers import activations
from deeplab2.model.layers import base
from deeplab2.model.layers import block_group
from deeplab2.model.layers import drop_path
from deeplab2.model.layers import stems
from deeplab2.model.layers.normalization import BatchNormOptions

SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
# Total stride at the input of stages 1..5 in the original network.
_STAGE_INPUT_STRIDES = (1, 2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class _Backbone:
    backbone_type: str
    num_blocks: tuple[int, ...]  # stages 2..5; stage 1 always has 3
    drop_path_beyond_stride: int


# DeepLab2 builds 'wide_resnet41' and 'swidernet' from the same class, so
# they differ only through the multipliers in the config.
_BACKBONES = {
    'resnet50': _Backbone('resnet', (3, 4, 6, 3), 16),
    'resnet50_beta': _Backbone('resnet_beta', (3, 4, 6, 3), 16),
    'wide_resnet41': _Backbone('wider_resnet', (3, 6, 3, 3), 4),
    'swidernet': _Backbone('wider_resnet', (3, 6, 3, 3), 4),
}


def stage_num_blocks(num_blocks: Sequence[int],
                     backbone_layer_multiplier: float) -> list[int]:
    """Blocks in stages 1..5: 3, then each of `num_blocks` times the
    multiplier, truncated (DeepLab2's rule; stage 1 is not scaled)."""
    return [3] + [int(n * backbone_layer_multiplier) for n in num_blocks]


@keras.saving.register_keras_serializable(package='deeplab2')
class ResNetEncoder(base.Layer):
    """A ResNet-family encoder: stem then residual stages `_stageN`.

    Args:
      backbone_type: 'resnet' (7x7 stem), 'resnet_beta' (Inception stem) or
        'wider_resnet' (3x3 stem and five stages).
      num_blocks: blocks of stages 2..5 before the layer multiplier.
      output_stride: 8, 16 or 32; beyond it strides become atrous rates.
      stem_width_multiplier: scales the stem (and, for wider ResNets, the
        first stage, as DeepLab2 does).
      width_multiplier: scales the other stages.
      backbone_layer_multiplier: scales num_blocks.
      use_squeeze_and_excite, use_sac_beyond_stride, drop_path_keep_prob,
        drop_path_beyond_stride, drop_path_schedule: see BlockGroup.
      activation, batch_norm, conv_kernel_weight_decay: for every layer.
    """

    def __init__(self, backbone_type: str, num_blocks: Sequence[int],
                 output_stride: int = 32, stem_width_multiplier: float = 1.0,
                 width_multiplier: float = 1.0,
                 backbone_layer_multiplier: float = 1.0,
                 use_squeeze_and_excite: bool = False,
                 use_sac_beyond_stride: int = -1,
                 drop_path_keep_prob: float = 1.0,
                 drop_path_beyond_stride: int = 16,
                 drop_path_schedule: str = 'constant',
                 activation: str = 'relu', batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if output_stride not in SUPPORTED_OUTPUT_STRIDES:
            raise ValueError(f'{self.name}: output_stride must be one of '
                             f'{SUPPORTED_OUTPUT_STRIDES}, got '
                             f'{output_stride}.')
        if drop_path_schedule not in drop_path.SCHEDULES:
            raise ValueError(f'{self.name}: unknown drop_path_schedule '
                             f'{drop_path_schedule!r}; supported: '
                             f'{", ".join(drop_path.SCHEDULES)}.')
        self.backbone_type = backbone_type
        self.num_blocks = [int(n) for n in num_blocks]
        self.output_stride = output_stride
        self.stem_width_multiplier = stem_width_multiplier
        self.width_multiplier = width_multiplier
        self.backbone_layer_multiplier = backbone_layer_multiplier
        self.use_squeeze_and_excite = use_squeeze_and_excite
        self.use_sac_beyond_stride = use_sac_beyond_stride
        self.drop_path_keep_prob = drop_path_keep_prob
        self.drop_path_beyond_stride = drop_path_beyond_stride
        self.drop_path_schedule = drop_path_schedule
        self.activation = activation
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        self._stem = stems.build_stem(
            backbone_type, stem_width_multiplier, activation=activation,
            batch_norm=self.batch_norm,
            conv_kernel_weight_decay=conv_kernel_weight_decay)
        self._stage_names = self._make_stages()
        self._activation_fn = activations.get_activation(activation)

    def _make_stages(self) -> tuple[str, ...]:
        wider = self.backbone_type == 'wider_resnet'
        blocks = stage_num_blocks(self.num_blocks,
                                  self.backbone_layer_multiplier)
        input_strides = list(_STAGE_INPUT_STRIDES)
        strides = [2] * 5
        if wider:
            # The strided stem stands in for stage 1's stride.
            input_strides[0], strides[0] = 2, 1
        channels = stems.stem_output_channels(self.backbone_type,
                                              self.stem_width_multiplier)
        names = []
        for index in range(0 if wider else 1, 5):
            if blocks[index] < 1:
                raise ValueError(
                    f'{self.name}: backbone_layer_multiplier '
                    f'{self.backbone_layer_multiplier} leaves stage '
                    f'{index + 1} without blocks.')
            # The base width follows the stage's original input stride
            # (1, 2, 4, 8, 16) x 32; wider ResNets scale stage 1 with the
            # stem multiplier.
            multiplier = (self.stem_width_multiplier if wider and index == 0
                          else self.width_multiplier)
            filters = int(round(_STAGE_INPUT_STRIDES[index] * 32 * multiplier))
            name = f'_stage{index + 1}'
            stage = block_group.BlockGroup(
                filters, blocks[index], channels,
                original_resnet_stride=strides[index],
                original_resnet_input_stride=input_strides[index],
                output_stride=self.output_stride,
                backbone_type=self.backbone_type,
                use_sac_beyond_stride=self.use_sac_beyond_stride,
                use_squeeze_and_excite=self.use_squeeze_and_excite,
                drop_path_keep_prob=self.drop_path_keep_prob,
                drop_path_beyond_stride=self.drop_path_beyond_stride,
                drop_path_schedule=self.drop_path_schedule,
                activation=self.activation, batch_norm=self.batch_norm,
                conv_kernel_weight_decay=self.conv_kernel_weight_decay,
                name=name[1:])
            setattr(self, name, stage)
            channels = stage.output_channels
            names.append(name)
        self.output_channels = channels
        return tuple(names)

    def call(self, inputs, training=False) -> dict[str, tf.Tensor]:
        features = self._stem(inputs, training=training)
        endpoints = {'stage1': features,
                     'res1': self._activation_fn(features)}
        for name in self._stage_names:
            features = getattr(self, name)(features, training=training)
            level = name.removeprefix('_stage')
            endpoints[f'stage{level}'] = features
            endpoints[f'res{level}'] = self._activation_fn(features)
        endpoints['backbone_output'] = endpoints['res5']
        return endpoints

    def get_config(self):
        return {**super().get_config(),
                'backbone_type': self.backbone_type,
                'num_blocks': self.num_blocks,
                'output_stride': self.output_stride,
                'stem_width_multiplier': self.stem_width_multiplier,
                'width_multiplier': self.width_multiplier,
                'backbone_layer_multiplier': self.backbone_layer_multiplier,
                'use_squeeze_and_excite': self.use_squeeze_and_excite,
                'use_sac_beyond_stride': self.use_sac_beyond_stride,
                'drop_path_keep_prob': self.drop_path_keep_prob,
                'drop_path_beyond_stride': self.drop_path_beyond_stride,
                'drop_path_schedule': self.drop_path_schedule,
                'activation': self.activation,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}


def build_resnet_encoder(name: str, output_stride: int, *,
                         batch_norm=None, stem_width_multiplier: float = 1.0,
                         backbone_width_multiplier: float = 1.0,
                         backbone_layer_multiplier: float = 1.0,
                         use_squeeze_and_excite: bool = False,
                         drop_path_keep_prob: float = 1.0,
                         drop_path_schedule: str = 'constant',
                         use_sac_beyond_stride: int = -1,
                         conv_kernel_weight_decay: float = 0.0
                         ) -> ResNetEncoder:
    """The encoder DeepLab2's `create_resnet_encoder` builds for `name`.

    Every argument reaches the network for all four backbones, as in
    DeepLab2 (ResNet-50's own default keep probability 1.0 is overridden by
    the config's value there too). What differs by backbone is fixed here:
    drop path only acts from stride 16 on for the ResNet-50s and from
    stride 4 on for the wider ResNets, and the stem multiplier also scales
    a wider ResNet's first stage.

    Raises:
      ValueError: for an unknown name (listing the supported ones) or an
        output stride other than 8, 16 or 32.
    """
    backbone = _BACKBONES.get(name.lower())
    if backbone is None:
        raise ValueError(f'Unknown ResNet-family backbone {name!r}; '
                         f'supported: {", ".join(_BACKBONES)}.')
    return ResNetEncoder(
        backbone.backbone_type, backbone.num_blocks,
        output_stride=output_stride,
        stem_width_multiplier=stem_width_multiplier,
        width_multiplier=backbone_width_multiplier,
        backbone_layer_multiplier=backbone_layer_multiplier,
        use_squeeze_and_excite=use_squeeze_and_excite,
        use_sac_beyond_stride=use_sac_beyond_stride,
        drop_path_keep_prob=drop_path_keep_prob,
        drop_path_beyond_stride=backbone.drop_path_beyond_stride,
        drop_path_schedule=drop_path_schedule,
        batch_norm=batch_norm,
        conv_kernel_weight_decay=conv_kernel_weight_decay,
        name=name.lower())
