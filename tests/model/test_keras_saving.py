"""Keras-native saving of the whole model: `model.save('m.keras')` and
`keras.models.load_model` give back a Panoptic-DeepLab with the same
outputs, for every backbone family the builder offers (each family has its
own stem and blocks, hence its own get_config)."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import deeplab2  # noqa: E402

DEMO_CONFIG = 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto'
CROP = 33

# name -> backbone overrides, the narrowest widths the builder allows.
FAMILIES = {
    'mobilenet_v3': ['model_options.backbone.name=mobilenet_v3_small',
                     'model_options.backbone.backbone_width_multiplier=0.35'],
    # 7x7 stem, bottleneck blocks.
    'resnet': ['model_options.backbone.name=resnet50',
               'model_options.backbone.use_squeeze_and_excite=false',
               'model_options.backbone.stem_width_multiplier=0.125',
               'model_options.backbone.backbone_width_multiplier=0.125'],
    # Inception stem.
    'resnet_beta': ['model_options.backbone.name=resnet50_beta',
                    'model_options.backbone.use_squeeze_and_excite=false',
                    'model_options.backbone.stem_width_multiplier=0.125',
                    'model_options.backbone.backbone_width_multiplier=0.125'],
    # Wider ResNet: 3x3 stem, five stages; squeeze-and-excite and
    # switchable atrous convolutions as in SWideRNet.
    'swidernet': ['model_options.backbone.name=swidernet',
                  'model_options.backbone.stem_width_multiplier=0.0625',
                  'model_options.backbone.backbone_width_multiplier=0.0625',
                  'model_options.backbone.use_sac_beyond_stride=8'],
}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_keras_file_round_trip_keeps_outputs(family, repo_root, tmp_path):
    crop = f'{CROP},{CROP}'
    config = deeplab2.load_config(
        repo_root / DEMO_CONFIG,
        FAMILIES[family] + [f'train_dataset_options.crop_size={crop}',
                            f'eval_dataset_options.crop_size={crop}'])
    model = deeplab2.build_model(config)
    images = tf.random.stateless_uniform([1, CROP, CROP, 3], seed=[1, 2],
                                         maxval=255.0)
    expected = model(images, training=False)

    path = tmp_path / 'model.keras'
    model.save(path)
    loaded = keras.models.load_model(path)

    assert type(loaded) is type(model)
    assert len(loaded.weights) == len(model.weights)
    actual = loaded(images, training=False)
    assert sorted(actual) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key].numpy(),
                                      expected[key].numpy(), err_msg=key)
