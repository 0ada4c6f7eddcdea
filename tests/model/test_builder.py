"""build_model: every config builds; the variable layout equals DeepLab2's;
output shapes for odd sizes and every output stride; clear errors."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.model import builder

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
OUR_CONFIGS = sorted((REPO_ROOT / 'configs').rglob('*.textproto'))
FULL_MANIFESTS = ['mobilenet_v3_small_os16', 'mobilenet_v3_large_os16',
                  'resnet50_os32_merge_with_pure_tf_func',
                  'resnet50_beta_os32', 'wide_resnet41_os16',
                  'swidernet_sac_1_1_1_os16']
NARROW = ['mobilenet_v3_small_os16_narrow',
          'resnet50_os32_merge_with_pure_tf_func_narrow',
          'swidernet_sac_1_1_1_os16_narrow']


def _expected_counts(manifest_shapes):
    non_trainable = sum(1 for key in manifest_shapes
                        if key.endswith(('/moving_mean', '/moving_variance')))
    return len(manifest_shapes) - non_trainable, non_trainable


def _assert_same_layout(model, manifest, checkpoint_layout, tmp_path):
    expected = checkpoint_layout.read_manifest(manifest)
    ours = checkpoint_layout.checkpoint_shapes(tmp_path,
                                               **model.checkpoint_items)
    assert sorted(ours.values()) == sorted(expected.values())
    missing, extra = set(expected) - set(ours), set(ours) - set(expected)
    assert not missing and not extra, (sorted(missing)[:5], sorted(extra)[:5])
    assert ours == expected
    assert (len(model.trainable_variables),
            len(model.non_trainable_variables)) == _expected_counts(expected)


@pytest.mark.parametrize('name', FULL_MANIFESTS)
def test_full_size_layout_equals_deeplab2(fixtures_dir, checkpoint_layout,
                                          tmp_path, name):
    folder = fixtures_dir / 'deeplab2'
    config = config_lib.load_config(folder / 'full_configs' / f'{name}.textproto')
    model = builder.build_model(config)
    _assert_same_layout(model, folder / 'full_manifests' / f'{name}.train.tsv',
                        checkpoint_layout, tmp_path)


@pytest.mark.parametrize('name', NARROW)
def test_narrow_layout_equals_deeplab2(fixtures_dir, checkpoint_layout,
                                       tmp_path, name):
    folder = fixtures_dir / 'deeplab2' / name
    model = builder.build_model(
        config_lib.load_config(folder / f'{name}.textproto'))
    _assert_same_layout(model, folder / 'manifest_train_ckpt.tsv',
                        checkpoint_layout, tmp_path)


@pytest.mark.parametrize('path', OUR_CONFIGS, ids=lambda p: p.stem)
def test_every_config_builds_with_odd_input(path):
    config = config_lib.load_config(path)
    model = builder.build_model(config)
    outputs = model(tf.zeros([1, 97, 161, 3]), training=False)
    classes = config.model_options.panoptic_deeplab.semantic_head \
        .output_channels
    assert outputs[common.PRED_SEMANTIC_LOGITS_KEY].shape == (1, 97, 161,
                                                              classes)
    assert outputs[common.PRED_SEMANTIC_PROBS_KEY].shape == (1, 97, 161,
                                                             classes)
    if not config.model_options.panoptic_deeplab.instance.enable:
        # resnet50_os32_semseg: the semantic branch alone.
        assert set(outputs) == {common.PRED_SEMANTIC_LOGITS_KEY,
                                common.PRED_SEMANTIC_PROBS_KEY}
        return
    assert outputs[common.PRED_CENTER_HEATMAP_KEY].shape == (1, 97, 161)
    assert outputs[common.PRED_OFFSET_MAP_KEY].shape == (1, 97, 161, 2)


def _narrow_config(backbone_name, output_stride):
    # The narrow MobileNet fixture config, with another backbone and stride.
    config = config_lib.load_config(
        REPO_ROOT / 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16'
        '.textproto')
    backbone = config.model_options.backbone
    backbone.name = backbone_name
    backbone.output_stride = output_stride
    if not backbone_name.startswith('mobilenet'):
        backbone.use_squeeze_and_excite = False
        backbone.stem_width_multiplier = 0.125
        backbone.backbone_width_multiplier = 0.125
    return config


@pytest.mark.parametrize('backbone', ['mobilenet_v3_small', 'resnet50'])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_output_strides_keep_the_input_size(backbone, output_stride):
    model = builder.build_model(_narrow_config(backbone, output_stride))
    outputs = model(tf.random.uniform([2, 97, 161, 3], maxval=255),
                    training=False)
    assert outputs[common.PRED_SEMANTIC_LOGITS_KEY].shape == (2, 97, 161, 19)
    assert outputs[common.PRED_OFFSET_MAP_KEY].shape == (2, 97, 161, 2)
    probs = outputs[common.PRED_SEMANTIC_PROBS_KEY].numpy()
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    training = model(tf.zeros([2, 97, 161, 3]), training=True)
    assert common.PRED_SEMANTIC_PROBS_KEY not in training


def test_pool_size_follows_crop_and_stride():
    assert builder.aspp_pool_size([1025, 2049], 32) == (33, 65)
    assert builder.aspp_pool_size([1025, 2049], 16) == (65, 129)
    assert builder.aspp_pool_size([641, 641], 16) == (41, 41)
    assert builder.aspp_pool_size([], 16) is None


def test_unknown_backbone_lists_supported():
    config = _narrow_config('resnet101', 16)
    with pytest.raises(config_lib.ConfigError,
                       match=r"Unknown model_options.backbone.name "
                       r"'resnet101'; supported backbones: mobilenet_v3_small"):
        builder.build_model(config)


def test_axial_backbone_is_not_supported_yet():
    config = _narrow_config('axial_deeplab_l', 16)
    with pytest.raises(config_lib.NotSupportedError,
                       match='is not supported yet'):
        builder.build_model(config)


def test_max_deeplab_is_not_supported_yet():
    config = config_lib.parse_config_text('model_options { max_deeplab {} }')
    with pytest.raises(config_lib.NotSupportedError,
                       match='model_options.max_deeplab is not supported yet'):
        builder.build_model(config)


def test_bad_output_stride_is_named():
    with pytest.raises(config_lib.ConfigError,
                       match='output_stride must be 8, 16 or 32, got 4'):
        builder.build_model(_narrow_config('mobilenet_v3_small', 4))


def test_mobilenet_rejects_drop_path():
    config = _narrow_config('mobilenet_v3_small', 16)
    config.model_options.backbone.drop_path_keep_prob = 0.8
    with pytest.raises(config_lib.ConfigError,
                       match='backbone.drop_path_keep_prob must be 1.0'):
        builder.build_model(config)


def test_semantic_only_and_deeplabv3_variants():
    config = _narrow_config('mobilenet_v3_small', 16)
    config.model_options.panoptic_deeplab.instance.enable = False
    outputs = builder.build_model(config)(tf.zeros([1, 65, 97, 3]))
    assert set(outputs) == {common.PRED_SEMANTIC_LOGITS_KEY,
                            common.PRED_SEMANTIC_PROBS_KEY}
    config_lib.apply_overrides(config, [
        'model_options.deeplab_v3_plus={low_level {feature_key: "res2" '
        'channels_project: 8} num_classes: 5}'])
    outputs = builder.build_model(config)(tf.zeros([1, 65, 97, 3]))
    assert outputs[common.PRED_SEMANTIC_LOGITS_KEY].shape == (1, 65, 97, 5)
    config_lib.apply_overrides(config, [
        'model_options.deeplab_v3={num_classes: 7}'])
    outputs = builder.build_model(config)(tf.zeros([1, 65, 97, 3]))
    assert outputs[common.PRED_SEMANTIC_LOGITS_KEY].shape == (1, 65, 97, 7)


def test_weight_decay_reaches_encoder_kernels_halved():
    config = _narrow_config('mobilenet_v3_small', 16)
    config.trainer_options.solver_options.weight_decay = 0.0002
    model = builder.build_model(config)
    # Keras' L2 is factor * sum(w^2); DeepLab2 passes weight_decay / 2.
    stem = model.encoder._blocks[0]._conv
    expected = 0.0001 * float(tf.reduce_sum(tf.square(stem.kernel)))
    assert float(stem.kernel_regularizer(stem.kernel)) == pytest.approx(
        expected, rel=1e-5)
    assert len(model.losses) > 0


def test_solver_options_set_every_batch_norm():
    import keras
    config = _narrow_config('mobilenet_v3_small', 16)
    config_lib.apply_overrides(config, [
        'trainer_options.solver_options.use_sync_batchnorm=true',
        'trainer_options.solver_options.batchnorm_momentum=0.9',
        'trainer_options.solver_options.batchnorm_epsilon=0.00002'])
    model = builder.build_model(config)
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 50
    assert all(n.synchronized for n in norms)
    assert [n.momentum for n in norms] == pytest.approx([0.9] * len(norms))
    assert [n.epsilon for n in norms] == pytest.approx([2e-5] * len(norms))


def test_classifier_must_fit_the_dataset_class_count():
    from deeplab2.data import datasets
    option = 'model_options.panoptic_deeplab.semantic_head.output_channels'
    config = config_lib.load_config(
        REPO_ROOT / 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16'
        '.textproto', [f'{option}=5'])
    descriptor = datasets.get_dataset_descriptor('demo')  # 19 classes
    with pytest.raises(config_lib.ConfigError) as error:
        builder.check_model_suits_dataset(config, 'train_dataset_options',
                                          descriptor)
    message = str(error.value)
    assert f'{option} is 5' in message and '19 classes' in message
    assert f'--config_override={option}=19' in message
    config = config_lib.load_config(
        REPO_ROOT / 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16'
        '.textproto')
    builder.check_model_suits_dataset(config, 'train_dataset_options',
                                      descriptor)
