"""The Panoptic-DeepLab decoder: a semantic and an instance branch, each an
ASPP followed by coarse-to-fine fusion with low-level features, and the
three heads (semantic logits, center heatmap, center offsets).

Attribute names follow DeepLab2 (`_semantic_decoder`, `_low_level_conv1`,
`_fusion_conv1`, `conv_block`, `final_conv`, ...): its checkpoints address
variables by them.
"""

from typing import Any, Mapping, Sequence

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import resize
from deeplab2.model.decoder import aspp
from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers.normalization import BatchNormOptions


@keras.saving.register_keras_serializable(package='deeplab2')
class PanopticDeepLabSingleDecoder(base.Layer):
    """ASPP on the high-level features, then for each low-level feature
    (coarse to fine): project it by a 1x1 conv, upsample the running
    features to its size, concatenate and fuse by one 5x5 conv.

    Args:
      high_level_feature_name: encoder endpoint fed to the ASPP.
      low_level_feature_names: endpoints fused on the way up, coarse first.
      low_level_channels_project: 1x1 projection channels of each.
      aspp_output_channels / atrous_rates / aspp_use_only_1x1_proj_conv:
        the ASPP.
      decoder_output_channels: channels of each fusion conv.
      decoder_conv_type: 'depthwise_separable_conv' or 'standard_conv'.
      pool_size: training-crop feature size (recorded by the ASPP).
    """

    def __init__(self, high_level_feature_name: str,
                 low_level_feature_names: Sequence[str],
                 low_level_channels_project: Sequence[int],
                 aspp_output_channels: int, decoder_output_channels: int,
                 atrous_rates: Sequence[int],
                 aspp_use_only_1x1_proj_conv: bool = False,
                 decoder_conv_type: str = 'depthwise_separable_conv',
                 pool_size=None, batch_norm=None, activation: str = 'relu',
                 **kwargs):
        super().__init__(**kwargs)
        if len(low_level_feature_names) != len(low_level_channels_project):
            raise ValueError(
                f'{self.name}: {len(low_level_feature_names)} low-level '
                f'features but {len(low_level_channels_project)} projection '
                'channel counts; each LowLevelOptions needs both.')
        self.high_level_feature_name = high_level_feature_name
        self.low_level_feature_names = tuple(low_level_feature_names)
        self.low_level_channels_project = tuple(low_level_channels_project)
        self.aspp_output_channels = aspp_output_channels
        self.decoder_output_channels = decoder_output_channels
        self.atrous_rates = tuple(atrous_rates)
        self.aspp_use_only_1x1_proj_conv = aspp_use_only_1x1_proj_conv
        self.decoder_conv_type = decoder_conv_type
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation

        self._aspp = aspp.ASPP(
            aspp_output_channels, self.atrous_rates,
            aspp_use_only_1x1_proj_conv=aspp_use_only_1x1_proj_conv,
            pool_size=self.pool_size, batch_norm=self.batch_norm,
            activation=activation, name='aspp')
        for index, channels in enumerate(self.low_level_channels_project,
                                         start=1):
            setattr(self, f'_low_level_conv{index}', convolutions.Conv2DSame(
                channels, 1, use_bias=False, use_bn=True,
                batch_norm=self.batch_norm, activation=activation,
                name=f'low_level_conv{index}'))
            setattr(self, f'_fusion_conv{index}',
                    convolutions.StackedConv2DSame(
                        1, decoder_conv_type, decoder_output_channels, 5,
                        use_bias=False, use_bn=True,
                        batch_norm=self.batch_norm, activation=activation,
                        name=f'fusion_conv{index}'))

    def call(self, features: Mapping[str, tf.Tensor], training=False):
        x = self._aspp(features[self.high_level_feature_name],
                       training=training)
        for index, name in enumerate(self.low_level_feature_names, start=1):
            low_level = getattr(self, f'_low_level_conv{index}')(
                features[name], training=training)
            x = resize.resize_align_corners(x, tf.shape(low_level)[1:3])
            x = tf.concat([x, low_level], axis=3)
            x = getattr(self, f'_fusion_conv{index}')(x, training=training)
        return x

    def get_config(self):
        return {**super().get_config(),
                'high_level_feature_name': self.high_level_feature_name,
                'low_level_feature_names': self.low_level_feature_names,
                'low_level_channels_project': self.low_level_channels_project,
                'aspp_output_channels': self.aspp_output_channels,
                'decoder_output_channels': self.decoder_output_channels,
                'atrous_rates': self.atrous_rates,
                'aspp_use_only_1x1_proj_conv':
                    self.aspp_use_only_1x1_proj_conv,
                'decoder_conv_type': self.decoder_conv_type,
                'pool_size': self.pool_size,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}


@keras.saving.register_keras_serializable(package='deeplab2')
class PanopticDeepLabSingleHead(base.Layer):
    """One 5x5 conv + BN + activation (`conv_block`), then a 1x1 conv with
    bias (`final_conv`); returns {pred_key: output}.

    When max_value_after_activation > min_value_after_activation the output
    is squashed by a sigmoid onto [min, max] (DeepLab2's depth-head option;
    off by default).
    """

    def __init__(self, intermediate_channels: int, output_channels: int,
                 pred_key: str, conv_type: str = 'depthwise_separable_conv',
                 max_value_after_activation: float = 0.0,
                 min_value_after_activation: float = 0.0, batch_norm=None,
                 activation: str = 'relu', **kwargs):
        super().__init__(**kwargs)
        self.intermediate_channels = intermediate_channels
        self.output_channels = output_channels
        self.pred_key = pred_key
        self.conv_type = conv_type
        self.max_value_after_activation = max_value_after_activation
        self.min_value_after_activation = min_value_after_activation
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation
        self.conv_block = convolutions.StackedConv2DSame(
            1, conv_type, intermediate_channels, 5, use_bias=False,
            use_bn=True, batch_norm=self.batch_norm, activation=activation,
            name='conv_block')
        # float32 whatever the model's precision (model/precision.py): the
        # logits, heatmap and offsets come out of it. convolutions.Conv2D
        # for its kernel gradient as one matrix product (1x1).
        self.final_conv = convolutions.Conv2D(
            output_channels, 1,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=0.01),
            dtype='float32', name='final_conv')

    def call(self, features, training=False):
        x = self.final_conv(self.conv_block(features, training=training))
        low, high = (self.min_value_after_activation,
                     self.max_value_after_activation)
        if high > low:
            x = tf.sigmoid(x) * (high - low) + low
        return {self.pred_key: x}

    def get_config(self):
        return {**super().get_config(),
                'intermediate_channels': self.intermediate_channels,
                'output_channels': self.output_channels,
                'pred_key': self.pred_key, 'conv_type': self.conv_type,
                'max_value_after_activation': self.max_value_after_activation,
                'min_value_after_activation': self.min_value_after_activation,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}


@keras.saving.register_keras_serializable(package='deeplab2')
class PanopticDeepLab(base.Layer):
    """Semantic decoder + head, and (when `instance_decoder` is given) the
    instance decoder with the center and offset heads.

    Args:
      semantic_decoder: PanopticDeepLabSingleDecoder keyword arguments.
      semantic_head: PanopticDeepLabSingleHead keyword arguments (its
        pred_key is set here).
      instance_decoder, center_head, regression_head: likewise, or all None
        for the semantic-only model.
    Shared `batch_norm` and `activation` are passed to every part.
    """

    def __init__(self, semantic_decoder: Mapping[str, Any],
                 semantic_head: Mapping[str, Any],
                 instance_decoder: Mapping[str, Any] | None = None,
                 center_head: Mapping[str, Any] | None = None,
                 regression_head: Mapping[str, Any] | None = None,
                 batch_norm=None, activation: str = 'relu', **kwargs):
        super().__init__(**kwargs)
        instance_parts = (instance_decoder, center_head, regression_head)
        if any(part is None for part in instance_parts) and any(
                part is not None for part in instance_parts):
            raise ValueError(f'{self.name}: the instance branch needs its '
                             'decoder, center head and regression head.')
        self.semantic_decoder = dict(semantic_decoder)
        self.semantic_head = dict(semantic_head)
        self.instance_decoder = (None if instance_decoder is None
                                 else dict(instance_decoder))
        self.center_head = None if center_head is None else dict(center_head)
        self.regression_head = (None if regression_head is None
                                else dict(regression_head))
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self.activation = activation
        shared = dict(batch_norm=self.batch_norm, activation=activation)

        self._semantic_decoder = PanopticDeepLabSingleDecoder(
            **self.semantic_decoder, **shared, name='semantic_decoder')
        self._semantic_head = PanopticDeepLabSingleHead(
            **self.semantic_head, pred_key=common.PRED_SEMANTIC_LOGITS_KEY,
            **shared, name='semantic_head')
        self._instance_decoder = None
        if self.instance_decoder is not None:
            self._instance_decoder = PanopticDeepLabSingleDecoder(
                **self.instance_decoder, **shared, name='instance_decoder')
            self._instance_center_head = PanopticDeepLabSingleHead(
                **self.center_head, pred_key=common.PRED_CENTER_HEATMAP_KEY,
                **shared, name='instance_center_head')
            self._instance_regression_head = PanopticDeepLabSingleHead(
                **self.regression_head, pred_key=common.PRED_OFFSET_MAP_KEY,
                **shared, name='instance_regression_head')

    def call(self, features, training=False):
        results = self._semantic_head(
            self._semantic_decoder(features, training=training),
            training=training)
        if self._instance_decoder is not None:
            instance = self._instance_decoder(features, training=training)
            results.update(self._instance_center_head(instance,
                                                      training=training))
            results.update(self._instance_regression_head(instance,
                                                          training=training))
        return results

    @property
    def checkpoint_items(self) -> dict[str, Any]:
        """The parts under DeepLab2's checkpoint item names."""
        items = {
            common.CKPT_SEMANTIC_DECODER: self._semantic_decoder,
            common.CKPT_SEMANTIC_HEAD_WITHOUT_LAST_LAYER:
                self._semantic_head.conv_block,
            common.CKPT_SEMANTIC_LAST_LAYER: self._semantic_head.final_conv,
        }
        if self._instance_decoder is not None:
            items.update({
                common.CKPT_INSTANCE_DECODER: self._instance_decoder,
                common.CKPT_INSTANCE_CENTER_HEAD_WITHOUT_LAST_LAYER:
                    self._instance_center_head.conv_block,
                common.CKPT_INSTANCE_CENTER_HEAD_LAST_LAYER:
                    self._instance_center_head.final_conv,
                common.CKPT_INSTANCE_REGRESSION_HEAD_WITHOUT_LAST_LAYER:
                    self._instance_regression_head.conv_block,
                common.CKPT_INSTANCE_REGRESSION_HEAD_LAST_LAYER:
                    self._instance_regression_head.final_conv,
            })
        return items

    def get_config(self):
        return {**super().get_config(),
                'semantic_decoder': self.semantic_decoder,
                'semantic_head': self.semantic_head,
                'instance_decoder': self.instance_decoder,
                'center_head': self.center_head,
                'regression_head': self.regression_head,
                'batch_norm': self.batch_norm.to_config(),
                'activation': self.activation}
