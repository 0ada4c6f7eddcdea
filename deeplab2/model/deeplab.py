"""The DeepLab model: normalize -> encoder -> decoder -> resize to the input.

It returns raw predictions only (post-processing lives in inference.py):
`semantic_logits` [B, H, W, classes], `center_heatmap` [B, H, W] and
`offset_map` [B, H, W, 2] (dy, dx in input pixels) when the decoder has an
instance branch, and `semantic_probs` at inference. The encoder and decoder
are given; the model reads no config.
"""

import keras
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import resize

# The name scope of the predictions' resizing, scaling and softmax.
OUTPUT_SCOPE = 'network_outputs'


# Serializable by name so get_config/from_config round-trip the whole model.
@keras.saving.register_keras_serializable(package="deeplab2")
class DeepLab(keras.Model):
    """Args: encoder (image -> dict of endpoints) and decoder (endpoints ->
    dict of predictions at feature resolution)."""

    def __init__(self, encoder: keras.layers.Layer,
                 decoder: keras.layers.Layer, **kwargs):
        kwargs.setdefault('name', 'DeepLab')
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def call(self, images, training=False, output_size=None):
        """images: [B, H, W, 3] RGB in [0, 255] (any real dtype).

        output_size: [height, width] to resize the predictions to (default:
        the input size); multi-scale inference resizes straight from the
        decoder to the original size, as DeepLab2 does.
        """
        normalized = tf.cast(images, tf.float32) / 127.5 - 1.0
        predictions = self.decoder(self.encoder(normalized, training=training),
                                   training=training)
        size = _spatial_size(images) if output_size is None else output_size
        # Named: an int8 TFLite export keeps these ops float.
        with tf.name_scope(OUTPUT_SCOPE):
            return self._resized_outputs(predictions, size, training)

    def _resized_outputs(self, predictions, size, training):
        outputs = {}
        for key, value in predictions.items():
            value = tf.cast(value, tf.float32)
            if key == common.PRED_OFFSET_MAP_KEY:
                outputs[key] = resize.resize_and_rescale_offsets(value, size)
            else:
                outputs[key] = resize.resize_align_corners(value, size)
        if common.PRED_CENTER_HEATMAP_KEY in outputs:
            outputs[common.PRED_CENTER_HEATMAP_KEY] = tf.squeeze(
                outputs[common.PRED_CENTER_HEATMAP_KEY], axis=3)
        if not training:
            outputs[common.PRED_SEMANTIC_PROBS_KEY] = tf.nn.softmax(
                outputs[common.PRED_SEMANTIC_LOGITS_KEY])
        return outputs

    @property
    def checkpoint_items(self) -> dict:
        """The model's parts under DeepLab2's checkpoint item names."""
        return {'encoder': self.encoder, **self.decoder.checkpoint_items}

    def get_config(self):
        return {'name': self.name,
                'encoder': keras.saving.serialize_keras_object(self.encoder),
                'decoder': keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for part in ('encoder', 'decoder'):
            config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)


def _spatial_size(images):
    """Static [H, W] when known (keeps resizes no-ops and shapes static),
    else the dynamic one."""
    static = images.shape[1:3]
    if static[0] is not None and static[1] is not None:
        return [int(static[0]), int(static[1])]
    return tf.shape(images)[1:3]
