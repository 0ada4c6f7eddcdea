"""ResNet-family encoders: DeepLab2 checkpoint layout, endpoint shapes for
every output stride, layer multipliers, drop path, atrous consistency."""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.encoder import resnet

BACKBONES = ('resnet50', 'resnet50_beta', 'wide_resnet41', 'swidernet')
NARROW = 0.0625  # multipliers that keep the encoders small and fast


def _narrow(name, output_stride=32, **kwargs):
    return resnet.build_resnet_encoder(
        name, output_stride, stem_width_multiplier=NARROW,
        backbone_width_multiplier=NARROW, **kwargs)


_FULL = ('resnet50_os32_merge_with_pure_tf_func', 'resnet50_beta_os32',
         'wide_resnet41_os16', 'swidernet_sac_1_1_1_os16')
_NARROW = ('resnet50_os32_merge_with_pure_tf_func_narrow',
           'swidernet_sac_1_1_1_os16_narrow')


@pytest.mark.parametrize('fixture', _FULL + _NARROW)
def test_checkpoint_layout_matches_deeplab2(fixture, fixtures_dir, tmp_path,
                                            checkpoint_layout):
    root = fixtures_dir / 'deeplab2'
    if fixture in _NARROW:
        config_path = root / fixture / f'{fixture}.textproto'
        manifest = root / fixture / 'manifest_train_ckpt.tsv'
    else:
        config_path = root / 'full_configs' / f'{fixture}.textproto'
        manifest = root / 'full_manifests' / f'{fixture}.train.tsv'
    encoder = checkpoint_layout.encoder_from_config(config_path)
    # A tiny input builds every variable; the layout does not depend on it.
    encoder(tf.zeros([1, 33, 33, 3]))
    checkpoint_layout.assert_encoder_layout(encoder, manifest, tmp_path)


_FIXTURE_INPUT_SIZES = {'input': (129, 257), 'input_b': (97, 161),
                        'input_c': (90, 150)}


@pytest.mark.parametrize('fixture', _NARROW)
def test_endpoint_shapes_match_deeplab2(fixture, fixtures_dir,
                                        checkpoint_layout):
    """DeepLab2 recorded its encoder's endpoint shapes for each fixture
    input; 90x150 hits even sizes, where its padding rule matters."""
    folder = fixtures_dir / 'deeplab2' / fixture
    facts = json.loads((folder / 'verify_facts.json').read_text())
    encoder = checkpoint_layout.encoder_from_config(
        folder / f'{fixture}.textproto')
    for key, (height, width) in _FIXTURE_INPUT_SIZES.items():
        endpoints = encoder(tf.zeros([1, height, width, 3]))
        assert {k: list(v.shape) for k, v in endpoints.items()} == (
            facts[key]['encoder_feature_shapes']), key

# Endpoint sizes for a 97x161 input. Every strided conv pads (k_eff - 1) // 2
# on both sides, so each stride-2 level maps n to (n - 1) // 2 + 1 =
# ceil(n / 2), e.g. the 7x7 stem: (97 + 3 + 3 - 7) // 2 + 1 = 49 and
# (161 + 6 - 7) // 2 + 1 = 81; a 3x3 on 49: (49 + 2 - 3) // 2 + 1 = 25.
#   stride 2: 49x81, 4: 25x41, 8: 13x21, 16: 7x11, 32: 4x6.
# Levels beyond the output stride keep its size (atrous instead of strides).
_SIZE_AT_STRIDE = {2: (49, 81), 4: (25, 41), 8: (13, 21), 16: (7, 11),
                   32: (4, 6)}
# Channels at width 0.0625 (stem multiplier too):
#   resnet50      stem round(64 * m) = 4, stages 2-5 (256, 512, 1024, 2048) * m
#   resnet50_beta stem int(128 * m) = 8 (the Inception stem truncates)
#   wider ResNets stage 1: 4 * round(32 * m) = 8, stages 2-5 as ResNet-50.
_CHANNELS = {
    'resnet50': (4, 16, 32, 64, 128),
    'resnet50_beta': (8, 16, 32, 64, 128),
    'wide_resnet41': (8, 16, 32, 64, 128),
    'swidernet': (8, 16, 32, 64, 128),
}


@pytest.mark.parametrize('output_stride', [8, 16, 32])
@pytest.mark.parametrize('name', BACKBONES)
def test_endpoint_shapes(name, output_stride):
    endpoints = _narrow(name, output_stride)(tf.zeros([1, 97, 161, 3]))
    expected = {}
    for level, channels in enumerate(_CHANNELS[name], start=1):
        size = _SIZE_AT_STRIDE[min(2 ** level, output_stride)]
        expected[f'stage{level}'] = expected[f'res{level}'] = (
            1, *size, channels)
    expected['backbone_output'] = expected['res5']
    assert {k: tuple(v.shape) for k, v in endpoints.items()} == expected


@pytest.mark.parametrize('name', BACKBONES)
def test_encoder_harness(layer_harness, name):
    # Drop path on, so the training step exercises it (the ResNet-50s from
    # stride 16, the wider ResNets from stride 4).
    encoder = _narrow(name, 16, drop_path_keep_prob=0.8,
                      drop_path_schedule='linear', use_squeeze_and_excite=True,
                      use_sac_beyond_stride=32)
    # 65x97 -> 33x49 -> 17x25 -> 9x13 -> 5x7 (OS16: stage 5 stays 5x7).
    channels = _CHANNELS[name]
    expected = {'stage1': (1, 33, 49, channels[0]),
                'stage2': (1, 17, 25, channels[1]),
                'stage3': (1, 9, 13, channels[2]),
                'stage4': (1, 5, 7, channels[3]),
                'stage5': (1, 5, 7, channels[4])}
    expected.update({k.replace('stage', 'res'): v
                     for k, v in expected.items()})
    expected['backbone_output'] = expected['res5']
    layer_harness(encoder, tf.random.uniform([1, 65, 97, 3], -1, 1), expected,
                  atol=1e-4)


def _blocks_per_stage(encoder):
    return [getattr(encoder, stage).num_blocks
            for stage in encoder._stage_names]


@pytest.mark.parametrize('layer_multiplier,expected', [
    # Stage 1 always has 3 blocks; stages 2-5 have int((3, 6, 3, 3) * m).
    (1.0, [3, 3, 6, 3, 3]),
    (3.0, [3, 9, 18, 9, 9]),
    (4.5, [3, 13, 27, 13, 13]),  # int(13.5) = 13, int(27.0) = 27
])
def test_swidernet_layer_multiplier(layer_multiplier, expected):
    encoder = _narrow('swidernet', backbone_layer_multiplier=layer_multiplier)
    assert _blocks_per_stage(encoder) == expected
    stage3 = encoder._stage3
    assert hasattr(stage3, f'_block{expected[2]}')
    assert not hasattr(stage3, f'_block{expected[2] + 1}')


def test_resnet50_blocks_and_layer_multiplier():
    assert _blocks_per_stage(_narrow('resnet50')) == [3, 4, 6, 3]
    # int((3, 4, 6, 3) * 1.5) = (4, 6, 9, 4)
    assert _blocks_per_stage(_narrow(
        'resnet50_beta', backbone_layer_multiplier=1.5)) == [4, 6, 9, 4]


def _keep_probs(encoder):
    return [[spec.drop_path_keep_prob
             for spec in getattr(encoder, stage).block_specs]
            for stage in encoder._stage_names]


def test_swidernet_linear_drop_path_by_hand():
    """0.8, linear, from stride 4. A block's stage is log2(its input's
    original stride) - 1 and its keep prob 1 - 0.2 * stage / 4, so the first
    block of each stage takes the previous stride's value:
    stride 2: 1.0 (below 4), 4: 0.95, 8: 0.9, 16: 0.85, 32: 0.8."""
    encoder = _narrow('swidernet', 16, drop_path_keep_prob=0.8,
                      drop_path_schedule='linear')
    expected = [[1.0] * 3, [1.0, 0.95, 0.95], [0.95] + [0.9] * 5,
                [0.9, 0.85, 0.85], [0.85, 0.8, 0.8]]
    for got, want in zip(_keep_probs(encoder), expected):
        assert got == pytest.approx(want)


def test_resnet50_drop_path_starts_at_stride_16():
    encoder = _narrow('resnet50', drop_path_keep_prob=0.8)
    assert _keep_probs(encoder) == [[1.0] * 3, [1.0] * 4, [1.0] + [0.8] * 5,
                                    [0.8] * 3]


def test_sac_and_squeeze_excite_placement():
    encoder = _narrow('swidernet', use_sac_beyond_stride=16,
                      use_squeeze_and_excite=True)
    # SAC in stages whose original output stride is >= 16: stages 4 and 5.
    assert [getattr(encoder, s)._block1.use_sac
            for s in encoder._stage_names] == [False, False, False, True,
                                               True]
    assert all(hasattr(getattr(encoder, s)._block2, '_squeeze_and_excite')
               for s in encoder._stage_names)
    assert not hasattr(_narrow('resnet50')._stage2._block1,
                       '_squeeze_and_excite')


def _randomize(encoder, seed=0):
    """Weights like the DeepLab2 fixtures': He-normal kernels, gamma and
    moving variance in [0.5, 1.5], small betas, means and biases."""
    rng = np.random.RandomState(seed)
    for variable in encoder.weights:
        shape, name = variable.shape, variable.path.rsplit('/', 1)[-1]
        if name == 'kernel':
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[:-1])), shape)
        elif name in ('gamma', 'moving_variance'):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        variable.assign(value.astype(np.float32))


@pytest.mark.parametrize('name', ['resnet50', 'swidernet'])
def test_atrous_rates_are_consistent_across_output_strides(name):
    """With the same weights, atrous convs must compute the strided network
    densely: on odd sizes (where DeepLab2's symmetric padding keeps the
    grids aligned) OS8's res5 sampled every 4th pixel equals OS32's res5.
    Wrong rates, such as a missing basic-block second-conv rate, break it.
    (SAC's global context would see a different mean, so it is off.)"""
    x = tf.random.uniform([1, 97, 161, 3], -1, 1, seed=1)
    dense, strided = _narrow(name, 8), _narrow(name, 32)
    dense(x)
    strided(x)
    _randomize(dense)
    strided.set_weights(dense.get_weights())
    dense_out, strided_out = dense(x), strided(x)
    scale = np.abs(strided_out['res5'].numpy()).max()
    np.testing.assert_allclose(dense_out['res5'].numpy()[:, ::4, ::4],
                               strided_out['res5'].numpy(),
                               atol=1e-4 * scale)
    np.testing.assert_allclose(dense_out['res3'].numpy(),
                               strided_out['res3'].numpy(), atol=1e-4 * scale)


def test_unknown_backbone_lists_the_supported_ones():
    with pytest.raises(ValueError, match='resnet50, resnet50_beta, '
                                         'wide_resnet41, swidernet'):
        resnet.build_resnet_encoder('resnet101', 16)


@pytest.mark.parametrize('output_stride', [4, 12, 64])
def test_unsupported_output_stride(output_stride):
    with pytest.raises(ValueError, match='output_stride must be one of'):
        resnet.build_resnet_encoder('resnet50', output_stride)


def test_unknown_drop_path_schedule():
    with pytest.raises(ValueError, match='drop_path_schedule'):
        resnet.build_resnet_encoder('swidernet', 16,
                                    drop_path_schedule='cosine')


def test_zero_blocks_is_an_error():
    with pytest.raises(ValueError, match='without blocks'):
        resnet.build_resnet_encoder('swidernet', 16,
                                    backbone_layer_multiplier=0.2)
