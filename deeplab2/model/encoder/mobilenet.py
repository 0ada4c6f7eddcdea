"""MobileNetV3 (Small, Large) encoders, laid out as DeepLab2 builds them.

The encoder holds its blocks in the list `_blocks` (block 0 is the stem
conv), because DeepLab2's checkpoints name MobileNet weights
`encoder/_blocks/<i>/...`. It returns the endpoints `res1` ... `res5`; an
inverted-bottleneck endpoint is the block's depthwise activation, as in
DeepLab2, so e.g. `res3` of MobileNetV3Small has the expanded width (88), not
the block output width (24).

Output strides below 32 replace the later strides by atrous rates: once the
running stride reaches `output_stride`, each further stride-s block runs at
stride 1 and multiplies the dilation of the blocks after it by s.
"""

from typing import Any, NamedTuple

import keras

from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers.inverted_bottleneck import InvertedBottleneck
from deeplab2.model.layers.normalization import BatchNormOptions
from deeplab2.model.layers.squeeze_and_excite import make_divisible

SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
# Every channel count is rounded to a multiple of this, and never below it.
_CHANNEL_DIVISOR = 8


class BlockSpec(NamedTuple):
    """One block of a MobileNetV3 architecture (before width scaling)."""
    kind: str  # 'conv_bn' (conv + BN + activation) or 'inverted_bottleneck'
    kernel_size: int
    stride: int
    filters: int
    activation: str
    se_ratio: float | None
    expand_ratio: float | None
    is_endpoint: bool


def _conv(kernel, stride, filters, endpoint):
    return BlockSpec('conv_bn', kernel, stride, filters, 'hard_swish', None,
                     None, endpoint)


def _ib(kernel, stride, filters, activation, se_ratio, expand_ratio,
        endpoint=False):
    return BlockSpec('inverted_bottleneck', kernel, stride, filters,
                     activation, se_ratio, expand_ratio, endpoint)


# Howard et al., "Searching for MobileNetV3", Tables 1 and 2, with the
# expansion ratios and endpoints DeepLab2 uses (Small's expanded widths are
# given as 72/16 and 88/24 so that the expanded channel counts come out as
# in the paper).
ARCHITECTURES = {
    'mobilenet_v3_small': ('MobileNetV3Small', (
        _conv(3, 2, 16, endpoint=True),
        _ib(3, 2, 16, 'relu', 0.25, 1, endpoint=True),
        _ib(3, 2, 24, 'relu', None, 72. / 16),
        _ib(3, 1, 24, 'relu', None, 88. / 24, endpoint=True),
        _ib(5, 2, 40, 'hard_swish', 0.25, 4.),
        _ib(5, 1, 40, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 40, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 48, 'hard_swish', 0.25, 3.),
        _ib(5, 1, 48, 'hard_swish', 0.25, 3., endpoint=True),
        _ib(5, 2, 96, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 96, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 96, 'hard_swish', 0.25, 6.),
        _conv(1, 1, 576, endpoint=True),
    )),
    'mobilenet_v3_large': ('MobileNetV3Large', (
        # The stem is no endpoint: res1 is the first bottleneck's depthwise
        # output (same stride), and res2..res5 follow at strides 4..32.
        _conv(3, 2, 16, endpoint=False),
        _ib(3, 1, 16, 'relu', None, 1., endpoint=True),
        _ib(3, 2, 24, 'relu', None, 4.),
        _ib(3, 1, 24, 'relu', None, 3., endpoint=True),
        _ib(5, 2, 40, 'relu', 0.25, 3.),
        _ib(5, 1, 40, 'relu', 0.25, 3.),
        _ib(5, 1, 40, 'relu', 0.25, 3., endpoint=True),
        _ib(3, 2, 80, 'hard_swish', None, 6.),
        _ib(3, 1, 80, 'hard_swish', None, 2.5),
        _ib(3, 1, 80, 'hard_swish', None, 2.3),
        _ib(3, 1, 80, 'hard_swish', None, 2.3),
        _ib(3, 1, 112, 'hard_swish', 0.25, 6.),
        _ib(3, 1, 112, 'hard_swish', 0.25, 6., endpoint=True),
        _ib(5, 2, 160, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 160, 'hard_swish', 0.25, 6.),
        _ib(5, 1, 160, 'hard_swish', 0.25, 6.),
        _conv(1, 1, 960, endpoint=True),
    )),
}


def scaled_filters(filters: int, width_multiplier: float) -> int:
    """Block output channels at `width_multiplier` (at least 8)."""
    return make_divisible(filters * width_multiplier, _CHANNEL_DIVISOR,
                          min_value=_CHANNEL_DIVISOR)


def strides_and_rates(specs, output_stride: int) -> list[tuple[int, int]]:
    """(stride, atrous rate) each block runs at to reach `output_stride`."""
    current_stride, rate, result = 1, 1, []
    for spec in specs:
        if current_stride == output_stride:
            # Keep the resolution; dilate the blocks that follow instead.
            result.append((1, rate))
            rate *= spec.stride
        else:
            result.append((spec.stride, 1))
            current_stride *= spec.stride
    return result


@keras.saving.register_keras_serializable(package='deeplab2')
class MobileNetV3(base.Layer):
    """MobileNetV3 encoder: normalized image -> {'res1': ..., 'res5': ...}.

    Args:
      model_id: 'mobilenet_v3_small' or 'mobilenet_v3_large'.
      output_stride: 8, 16 or 32, the stride of `res5`.
      width_multiplier: scales every block's channels (rounded to 8s).
      batch_norm: BatchNormOptions (or its dict) of every batch norm.
      conv_kernel_weight_decay: L2 factor on the non-depthwise kernels.
    """

    def __init__(self, model_id: str = 'mobilenet_v3_small',
                 output_stride: int = 32, width_multiplier: float = 1.0,
                 batch_norm: Any = None,
                 conv_kernel_weight_decay: float = 0.0, **kwargs):
        _check_arguments(model_id, output_stride, width_multiplier)
        kwargs.setdefault('name', ARCHITECTURES[model_id][0])
        super().__init__(**kwargs)
        self.model_id = model_id
        self.output_stride = output_stride
        self.width_multiplier = width_multiplier
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.conv_kernel_weight_decay = conv_kernel_weight_decay

        specs = ARCHITECTURES[model_id][1]
        blocks, endpoint_names, in_filters = [], [], 3
        for index, (spec, (stride, rate)) in enumerate(
                zip(specs, strides_and_rates(specs, output_stride))):
            filters = scaled_filters(spec.filters, width_multiplier)
            # A 1x1 kernel is the same at any dilation.
            rate = rate if spec.kernel_size > 1 else 1
            blocks.append(self._make_block(index, spec, in_filters, filters,
                                           stride, rate))
            endpoint_names.append(
                f'res{len([n for n in endpoint_names if n]) + 1}'
                if spec.is_endpoint else None)
            in_filters = filters
        self._blocks = blocks
        self._endpoint_names = tuple(endpoint_names)

    def _make_block(self, index, spec, in_filters, filters, stride, rate):
        name = f'{spec.kind}_{index + 1}'
        if spec.kind == 'conv_bn':
            return convolutions.Conv2DSame(
                filters, spec.kernel_size, strides=stride, atrous_rate=rate,
                use_bias=False, use_bn=True, batch_norm=self.batch_norm,
                activation=spec.activation,
                conv_kernel_weight_decay=self.conv_kernel_weight_decay,
                name=name)
        return InvertedBottleneck(
            in_filters=in_filters, out_filters=filters,
            expand_ratio=spec.expand_ratio, strides=stride,
            kernel_size=spec.kernel_size, se_ratio=spec.se_ratio,
            activation=spec.activation, atrous_rate=rate,
            divisible_by=_CHANNEL_DIVISOR,
            # From the architecture's stride, not the one run at: a block
            # turned into stride 1 by the output stride changes its width
            # anyway, so this never adds a residual DeepLab2 lacks.
            use_residual=spec.stride == 1,
            batch_norm=self.batch_norm,
            conv_kernel_weight_decay=self.conv_kernel_weight_decay,
            name=name)

    def call(self, inputs, training=False):
        x = inputs
        endpoints = {}
        for block, endpoint_name in zip(self._blocks, self._endpoint_names):
            if isinstance(block, InvertedBottleneck):
                x, endpoint = block(x, training=training)
            else:
                x = endpoint = block(x, training=training)
            if endpoint_name:
                endpoints[endpoint_name] = endpoint
        return endpoints

    def get_config(self):
        return {**super().get_config(), 'model_id': self.model_id,
                'output_stride': self.output_stride,
                'width_multiplier': self.width_multiplier,
                'batch_norm': self.batch_norm.to_config(),
                'conv_kernel_weight_decay': self.conv_kernel_weight_decay}


def _check_arguments(model_id, output_stride, width_multiplier):
    if model_id not in ARCHITECTURES:
        raise ValueError(f'Unknown MobileNet encoder {model_id!r}; supported: '
                         f'{", ".join(ARCHITECTURES)}.')
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f'{model_id}: output_stride {output_stride} is not one of '
            f'{", ".join(map(str, SUPPORTED_OUTPUT_STRIDES))}.')
    if not width_multiplier > 0:
        raise ValueError(f'{model_id}: width_multiplier must be > 0, got '
                         f'{width_multiplier}.')


def build_mobilenet_encoder(name: str, output_stride: int, *,
                            batch_norm: Any = None,
                            width_multiplier: float = 1.0,
                            conv_kernel_weight_decay: float = 0.0
                            ) -> MobileNetV3:
    """The MobileNetV3 encoder called `name` (case-insensitive, as DeepLab2's
    backbone names), e.g. `build_mobilenet_encoder('mobilenet_v3_small', 16)`.

    Raises:
      ValueError: for an unknown name (listing the supported ones), an
        output stride other than 8, 16, 32, or a width_multiplier <= 0.
    """
    return MobileNetV3(model_id=name.lower(), output_stride=output_stride,
                       width_multiplier=width_multiplier,
                       batch_norm=batch_norm,
                       conv_kernel_weight_decay=conv_kernel_weight_decay)
