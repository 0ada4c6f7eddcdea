"""Inference: single pass equals model + post-processing; flips and scales
average as DeepLab2 does."""

import keras
import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.model import inference
from deeplab2.model import postprocess


class _ConstantModel(keras.layers.Layer):
    """Predicts class 11 everywhere, one center at the image middle, and a
    constant (dy, dx) = (1, 2) offset, at whatever output size it is asked."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def call(self, images, training=False, output_size=None):
        self.sizes.append(tuple(int(s) for s in images.shape[1:3]))
        height, width = int(output_size[0]), int(output_size[1])
        batch = tf.shape(images)[0]
        logits = tf.one_hot(tf.fill([batch, height, width], 11), 19) * 5.0
        heatmap = np.zeros([1, height, width], np.float32)
        heatmap[0, height // 2, width // 2] = 0.9
        return {common.PRED_SEMANTIC_LOGITS_KEY: logits,
                common.PRED_SEMANTIC_PROBS_KEY: tf.nn.softmax(logits),
                common.PRED_CENTER_HEATMAP_KEY: tf.tile(heatmap, [batch, 1, 1]),
                common.PRED_OFFSET_MAP_KEY: tf.ones([batch, height, width, 2])
                * tf.constant([1.0, 2.0])}


def _postprocessor():
    return postprocess.PanopticPostProcessor(postprocess.PostProcessOptions(
        thing_class_ids=tuple(range(11, 19)), label_divisor=1000,
        void_label=255))


def test_flipped_pass_negates_x_offsets_before_averaging():
    model = _ConstantModel()
    outputs = inference.Inference(model, _postprocessor(),
                                  add_flipped_images=True)(
        tf.zeros([1, 9, 13, 3]))
    # (1, 2) and the mirrored pass's (1, -2) average to (1, 0).
    np.testing.assert_allclose(
        outputs[common.PRED_OFFSET_MAP_KEY].numpy()[0, 4, 6], [1.0, 0.0])
    assert outputs[common.PRED_PANOPTIC_KEY].numpy().max() == 11001
    assert len(model.sizes) == 2


def test_scales_resize_the_input_as_deeplab2():
    model = _ConstantModel()
    inference.Inference(model, None, eval_scales=[0.5, 1.0, 1.75])(
        tf.zeros([2, 97, 161, 3]))
    # int((size - 1) * scale + 1) per side.
    assert model.sizes == [(49, 81), (97, 161), (169, 281)]


def test_single_pass_equals_model_and_postprocessing(layer_harness):
    from deeplab2.model.decoder import panoptic_deeplab as pdl
    from deeplab2.model import deeplab
    from deeplab2.model.encoder import mobilenet
    decoder_args = dict(high_level_feature_name='res5',
                        low_level_feature_names=['res2'],
                        low_level_channels_project=[4],
                        aspp_output_channels=8, decoder_output_channels=8,
                        atrous_rates=[1, 2, 3])
    model = deeplab.DeepLab(
        mobilenet.build_mobilenet_encoder('mobilenet_v3_small', 16,
                                          width_multiplier=0.35),
        pdl.PanopticDeepLab(
            semantic_decoder=decoder_args,
            semantic_head={'intermediate_channels': 8, 'output_channels': 19},
            instance_decoder=decoder_args,
            center_head={'intermediate_channels': 8, 'output_channels': 1},
            regression_head={'intermediate_channels': 8,
                             'output_channels': 2}))
    images = tf.random.uniform([2, 65, 97, 3], maxval=255, seed=5)
    processor = _postprocessor()
    expected = model(images, training=False)
    expected.update(processor(expected))
    got = tf.function(inference.Inference(model, processor))(images)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value.numpy(),
                                   atol=1e-4, err_msg=key)
    # Two scales and flips still give input-sized maps.
    multi = inference.Inference(model, processor, eval_scales=[0.75, 1.25],
                                add_flipped_images=True)(images)
    assert multi[common.PRED_PANOPTIC_KEY].shape == (2, 65, 97)
    assert multi[common.PRED_OFFSET_MAP_KEY].shape == (2, 65, 97, 2)
