"""The DeepLab model: normalization, resizing, offsets scaling, harness,
mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import deeplab
from deeplab2.model import resize
from deeplab2.model.decoder import panoptic_deeplab as pdl
from deeplab2.model.encoder import mobilenet


def _small_model():
    encoder = mobilenet.build_mobilenet_encoder('mobilenet_v3_small', 16,
                                                width_multiplier=0.35)
    head = dict(intermediate_channels=8)
    decoder_args = dict(high_level_feature_name='res5',
                        low_level_feature_names=['res3', 'res2'],
                        low_level_channels_project=[8, 4],
                        aspp_output_channels=8, decoder_output_channels=8,
                        atrous_rates=[6, 12, 18])
    decoder = pdl.PanopticDeepLab(
        semantic_decoder=decoder_args,
        semantic_head={**head, 'output_channels': 5},
        instance_decoder=decoder_args,
        center_head={**head, 'output_channels': 1},
        regression_head={**head, 'output_channels': 2},
        name='PanopticDeepLab')
    return deeplab.DeepLab(encoder, decoder)


def test_model_harness(layer_harness):
    model = _small_model()
    layer_harness(model, tf.random.uniform([2, 65, 97, 3], maxval=255), {
        common.PRED_SEMANTIC_LOGITS_KEY: (2, 65, 97, 5),
        common.PRED_SEMANTIC_PROBS_KEY: (2, 65, 97, 5),
        common.PRED_CENTER_HEATMAP_KEY: (2, 65, 97),
        common.PRED_OFFSET_MAP_KEY: (2, 65, 97, 2)}, atol=1e-4)


def test_input_is_normalized_to_minus_one_one():
    seen = {}

    class Probe(keras.layers.Layer):
        def call(self, x, training=False):
            seen['x'] = x
            return {'res5': x}

    class Identity(keras.layers.Layer):
        checkpoint_items = {}

        def call(self, features, training=False):
            return {common.PRED_SEMANTIC_LOGITS_KEY: features['res5']}

    model = deeplab.DeepLab(Probe(), Identity())
    model(tf.constant([[[[0.0, 127.5, 255.0]]]]))
    np.testing.assert_allclose(seen['x'].numpy().ravel(), [-1.0, 0.0, 1.0])


def test_offsets_are_rescaled_to_the_input_grid():
    """An offset of one feature pixel at 5x9 spans (H-1)/(h-1) = 16/4 = 4
    input pixels vertically and 32/8 = 4 horizontally at 17x33."""
    offsets = tf.ones([1, 5, 9, 2])
    resized = resize.resize_and_rescale_offsets(offsets, [17, 33])
    np.testing.assert_allclose(resized.numpy(), 4.0 * np.ones([1, 17, 33, 2]),
                               rtol=1e-6)


def test_align_corners_resize_keeps_corners():
    x = tf.reshape(tf.range(6, dtype=tf.float32), [1, 2, 3, 1])
    y = resize.resize_align_corners(x, [3, 5])[0, :, :, 0].numpy()
    # Corners map to corners; the middle row is the mean of the two rows.
    np.testing.assert_allclose(y[[0, 0, -1, -1], [0, -1, 0, -1]],
                               [0, 2, 3, 5])
    np.testing.assert_allclose(y[1], (y[0] + y[2]) / 2)


def test_unknown_input_size_under_tf_function():
    model = _small_model()
    model(tf.zeros([1, 33, 33, 3]))
    forward = tf.function(lambda x: model(x), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32)])
    outputs = forward(tf.zeros([1, 45, 70, 3]))
    assert outputs[common.PRED_OFFSET_MAP_KEY].shape == (1, 45, 70, 2)


@pytest.mark.parametrize('policy', ['mixed_bfloat16', 'mixed_float16'])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _small_model()
        outputs = model(tf.random.uniform([1, 65, 97, 3], maxval=255))
        training = model(tf.random.uniform([1, 65, 97, 3], maxval=255),
                         training=True)
    finally:
        keras.mixed_precision.set_global_policy('float32')
    for value in list(outputs.values()) + list(training.values()):
        assert value.dtype == tf.float32
        assert np.all(np.isfinite(value.numpy()))
    assert model.encoder.variables[0].dtype == 'float32'
