"""DeepLabV3 and DeepLabV3+ semantic decoders.

DeepLabV3: ASPP -> 3x3 conv -> 1x1 classifier. DeepLabV3+: the same ASPP,
upsampled to a projected low-level feature, concatenated, fused by two 3x3
separable convs, then the classifier. Attribute and checkpoint item names
are DeepLab2's.
"""

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import resize
from deeplab2.model.decoder import aspp
from deeplab2.model.layers import base
from deeplab2.model.layers import convolutions
from deeplab2.model.layers.normalization import BatchNormOptions

# DeepLab2's checkpoint item names of these decoders' parts.
CKPT_DEEPLABV3_ASPP = 'deeplab_v3_aspp'
CKPT_DEEPLABV3_CLASSIFIER_CONV_BN_ACT = 'classifier_conv_bn_act'
CKPT_DEEPLABV3PLUS_ASPP = 'deeplab_v3plus_aspp'
CKPT_DEEPLABV3PLUS_PROJECT_CONV_BN_ACT = 'deeplab_v3plus_project_conv_bn_act'
CKPT_DEEPLABV3PLUS_FUSE = 'deeplab_v3plus_fuse'


class _AsppDecoder(base.Layer):
    """What both decoders share: their options, the ASPP on the high-level
    feature, and the 1x1 classifier that subclasses create last (after
    their own layers, in DeepLab2's order)."""

    def __init__(self, feature_key: str, aspp_channels: int, atrous_rates,
                 decoder_channels: int, num_classes: int, pool_size=None,
                 batch_norm=None, **kwargs):
        super().__init__(**kwargs)
        self.feature_key = feature_key
        self.aspp_channels = aspp_channels
        self.atrous_rates = tuple(atrous_rates)
        self.decoder_channels = decoder_channels
        self.num_classes = num_classes
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.batch_norm = BatchNormOptions.coerce(batch_norm)
        self._aspp = aspp.ASPP(aspp_channels, self.atrous_rates,
                               pool_size=self.pool_size,
                               batch_norm=self.batch_norm, name='ASPP')

    def _classifier(self):
        # float32 whatever the model's precision (model/precision.py).
        return convolutions.Conv2DSame(self.num_classes, 1, dtype='float32',
                                       name='final_conv')

    def get_config(self):
        return {**super().get_config(), 'feature_key': self.feature_key,
                'aspp_channels': self.aspp_channels,
                'atrous_rates': self.atrous_rates,
                'decoder_channels': self.decoder_channels,
                'num_classes': self.num_classes, 'pool_size': self.pool_size,
                'batch_norm': self.batch_norm.to_config()}


@keras.saving.register_keras_serializable(package='deeplab2')
class DeepLabV3(_AsppDecoder):
    """Args: feature_key (encoder endpoint), aspp_channels, atrous_rates,
    decoder_channels (the 3x3 conv), num_classes, pool_size, batch_norm."""

    def __init__(self, feature_key: str, aspp_channels: int, atrous_rates,
                 decoder_channels: int, num_classes: int, pool_size=None,
                 batch_norm=None, **kwargs):
        super().__init__(feature_key, aspp_channels, atrous_rates,
                         decoder_channels, num_classes, pool_size,
                         batch_norm, **kwargs)
        self._classifier_conv_bn_act = convolutions.Conv2DSame(
            decoder_channels, 3, use_bias=False, use_bn=True,
            batch_norm=self.batch_norm, activation='relu',
            name='classifier_conv_bn_act')
        self._final_conv = self._classifier()

    def call(self, features, training=False):
        x = self._aspp(features[self.feature_key], training=training)
        x = self._classifier_conv_bn_act(x, training=training)
        return {common.PRED_SEMANTIC_LOGITS_KEY: self._final_conv(x)}

    @property
    def checkpoint_items(self):
        return {CKPT_DEEPLABV3_ASPP: self._aspp,
                CKPT_DEEPLABV3_CLASSIFIER_CONV_BN_ACT:
                    self._classifier_conv_bn_act,
                common.CKPT_SEMANTIC_LAST_LAYER: self._final_conv}


@keras.saving.register_keras_serializable(package='deeplab2')
class DeepLabV3Plus(_AsppDecoder):
    """Args: feature_key (high level), low_level_feature_key,
    low_level_channels_project, aspp_channels, atrous_rates,
    decoder_channels (the fusion convs), num_classes, pool_size, batch_norm.
    """

    def __init__(self, feature_key: str, low_level_feature_key: str,
                 low_level_channels_project: int, aspp_channels: int,
                 atrous_rates, decoder_channels: int, num_classes: int,
                 pool_size=None, batch_norm=None, **kwargs):
        super().__init__(feature_key, aspp_channels, atrous_rates,
                         decoder_channels, num_classes, pool_size,
                         batch_norm, **kwargs)
        self.low_level_feature_key = low_level_feature_key
        self.low_level_channels_project = low_level_channels_project
        self._project_conv_bn_act = convolutions.Conv2DSame(
            low_level_channels_project, 1, use_bias=False, use_bn=True,
            batch_norm=self.batch_norm, activation='relu',
            name='project_conv_bn_act')
        self._fuse = convolutions.StackedConv2DSame(
            2, 'depthwise_separable_conv', decoder_channels, 3,
            use_bias=False, use_bn=True, batch_norm=self.batch_norm,
            activation='relu', name='fuse')
        self._final_conv = self._classifier()

    def call(self, features, training=False):
        high = self._aspp(features[self.feature_key], training=training)
        low = self._project_conv_bn_act(features[self.low_level_feature_key],
                                        training=training)
        high = resize.resize_align_corners(high, tf.shape(low)[1:3])
        # DeepLab2 runs the fusion convs' batch norm in inference mode even
        # while training (it omits `training`); here it trains as intended.
        x = self._fuse(tf.concat([high, low], axis=3), training=training)
        return {common.PRED_SEMANTIC_LOGITS_KEY: self._final_conv(x)}

    @property
    def checkpoint_items(self):
        return {CKPT_DEEPLABV3PLUS_ASPP: self._aspp,
                CKPT_DEEPLABV3PLUS_PROJECT_CONV_BN_ACT:
                    self._project_conv_bn_act,
                CKPT_DEEPLABV3PLUS_FUSE: self._fuse,
                common.CKPT_SEMANTIC_LAST_LAYER: self._final_conv}

    def get_config(self):
        return {**super().get_config(),
                'low_level_feature_key': self.low_level_feature_key,
                'low_level_channels_project': self.low_level_channels_project}
