"""MobileNetV3 encoders: checkpoint layout parity with DeepLab2, endpoint
shapes at every output stride, atrous rates, numerics of the stem."""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab2.model.encoder import mobilenet
from deeplab2.model.layers.inverted_bottleneck import InvertedBottleneck
from deeplab2.model.layers.normalization import BatchNormOptions

# Endpoint shapes on a 1x97x161 input, worked out by hand. A stride-2 layer
# with an odd kernel pads (k-1)/2 on both sides and convolves VALID, so it
# maps n to (n + k - 1 - k) // 2 + 1 = ceil(n / 2):
#   H: 97 -> 49 (stride 2) -> 25 (4) -> 13 (8) -> 7 (16) -> 4 (32)
#   W: 161 -> 81 -> 41 -> 21 -> 11 -> 6
# Once the running stride reaches the output stride, later layers keep the
# size. Endpoints are the depthwise activations of bottleneck blocks, so
# their channels are the expanded widths:
#   Small: res1 stem 16 (stride 2), res2 block 1 16 (4), res3 block 3
#     make_divisible(24 * 88/24) = 88 (8), res4 block 8 48 * 3 = 144 (16),
#     res5 last 1x1 conv 576 (32).
#   Large: res1 block 1 16 (2), res2 block 3 24 * 3 = 72 (4), res3 block 6
#     40 * 3 = 120 (8), res4 block 12 112 * 6 = 672 (16), res5 960 (32).
_SIZES = {2: (49, 81), 4: (25, 41), 8: (13, 21), 16: (7, 11), 32: (4, 6)}
_CHANNELS = {
    'mobilenet_v3_small': {'res1': 16, 'res2': 16, 'res3': 88, 'res4': 144,
                           'res5': 576},
    'mobilenet_v3_large': {'res1': 16, 'res2': 72, 'res3': 120, 'res4': 672,
                           'res5': 960},
}
_STRIDES = {'res1': 2, 'res2': 4, 'res3': 8, 'res4': 16, 'res5': 32}


def _expected_shapes(name, output_stride):
    shapes = {}
    for endpoint, stride in _STRIDES.items():
        height, width = _SIZES[min(stride, output_stride)]
        shapes[endpoint] = (1, height, width, _CHANNELS[name][endpoint])
    return shapes


@pytest.mark.parametrize('config_path,manifest_path', [
    ('full_configs/mobilenet_v3_small_os16.textproto',
     'full_manifests/mobilenet_v3_small_os16.train.tsv'),
    ('full_configs/mobilenet_v3_large_os16.textproto',
     'full_manifests/mobilenet_v3_large_os16.train.tsv'),
    ('mobilenet_v3_small_os16_narrow/mobilenet_v3_small_os16_narrow.textproto',
     'mobilenet_v3_small_os16_narrow/manifest_train_ckpt.tsv'),
])
def test_checkpoint_layout_matches_deeplab2(fixtures_dir, tmp_path,
                                            checkpoint_layout, config_path,
                                            manifest_path):
    root = fixtures_dir / 'deeplab2'
    encoder = checkpoint_layout.encoder_from_config(root / config_path)
    encoder(tf.zeros([1, 33, 49, 3]))
    checkpoint_layout.assert_encoder_layout(encoder, root / manifest_path,
                                            tmp_path)
    assert encoder.batch_norm.epsilon == pytest.approx(1e-5)


@pytest.mark.parametrize('input_key', ['input', 'input_b', 'input_c'])
def test_feature_shapes_match_deeplab2_narrow_fixture(fixtures_dir,
                                                      input_key):
    """DeepLab2 recorded its encoder's feature shapes on the fixture inputs;
    90x150 (input_c) has even sizes at several levels."""
    root = fixtures_dir / 'deeplab2' / 'mobilenet_v3_small_os16_narrow'
    facts = json.loads((root / 'verify_facts.json').read_text())[input_key]
    expected = {k: tuple(v) for k, v in facts['encoder_feature_shapes'].items()}
    height, width = {'input': (129, 257), 'input_b': (97, 161),
                     'input_c': (90, 150)}[input_key]
    encoder = mobilenet.build_mobilenet_encoder('mobilenet_v3_small', 16,
                                                width_multiplier=0.5)
    features = encoder(tf.zeros([1, height, width, 3]))
    assert {k: tuple(v.shape) for k, v in features.items()} == expected


@pytest.mark.parametrize('name', ['mobilenet_v3_small', 'mobilenet_v3_large'])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_endpoint_shapes(name, output_stride):
    encoder = mobilenet.build_mobilenet_encoder(name, output_stride)
    features = encoder(tf.zeros([1, 97, 161, 3]))
    assert {k: tuple(v.shape) for k, v in features.items()} == (
        _expected_shapes(name, output_stride))


# Width 0.35 keeps the harness fast. Every block width becomes
# make_divisible(w * 0.35, 8) >= 8, and bottleneck endpoints are expanded:
#   Small: stem 8; block 1 8; block 3 in 8 * 88/24 -> 32; block 8 in
#     make_divisible(16.8) = 16, * 3 = 48; last conv 576 * 0.35 -> 200.
#   Large: block 1 8; block 3 in 8 * 3 = 24; block 6 in 16 * 3 = 48;
#     block 12 in make_divisible(39.2) = 40, * 6 = 240; last 960 * 0.35 = 336.
# Sizes at OS 16: 65 -> 33 -> 17 -> 9 -> 5 and 97 -> 49 -> 25 -> 13 -> 7.
_HARNESS_CHANNELS = {'mobilenet_v3_small': (8, 8, 32, 48, 200),
                     'mobilenet_v3_large': (8, 24, 48, 240, 336)}
_HARNESS_SIZES = ((33, 49), (17, 25), (9, 13), (5, 7), (5, 7))


@pytest.mark.parametrize('name', ['mobilenet_v3_small', 'mobilenet_v3_large'])
def test_harness(layer_harness, name):
    encoder = mobilenet.build_mobilenet_encoder(
        name, 16, width_multiplier=0.35,
        batch_norm=BatchNormOptions(epsilon=1e-5))
    expected = {f'res{i + 1}': (1, *size, channels) for i, (size, channels)
                in enumerate(zip(_HARNESS_SIZES, _HARNESS_CHANNELS[name]))}
    inputs = tf.random.stateless_normal([1, 65, 97, 3], seed=[0, 1])
    layer_harness(encoder, inputs, expected)


def test_output_stride_turns_strides_into_rates():
    """Small at OS 8: block 4 (stride 2 in the architecture) runs at stride
    1 and doubles the rate after it; block 9 runs at stride 1, rate 2, and
    doubles it again for blocks 10-11 (rate 4)."""
    specs = mobilenet.ARCHITECTURES['mobilenet_v3_small'][1]
    assert mobilenet.strides_and_rates(specs, 8) == [
        (2, 1), (2, 1), (2, 1), (1, 1), (1, 1), (1, 2), (1, 2), (1, 2),
        (1, 2), (1, 2), (1, 4), (1, 4), (1, 4)]
    encoder = mobilenet.build_mobilenet_encoder('mobilenet_v3_small', 8)
    depthwise = {i: block._conv2_bn_act._depthwise_conv
                 for i, block in enumerate(encoder._blocks)
                 if isinstance(block, InvertedBottleneck)}
    assert [depthwise[i].dilation_rate[0] for i in range(1, 12)] == [
        1, 1, 1, 1, 2, 2, 2, 2, 2, 4, 4]
    assert [depthwise[i].strides[0] for i in range(1, 12)] == [
        2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    # The final 1x1 conv is not dilated (it would make no difference).
    assert encoder._blocks[12]._conv.dilation_rate == (1, 1)


def test_stem_and_first_depthwise_match_hand_composed_ops():
    """res1 = hard_swish(BN(conv3x3/2 of the symmetrically padded image));
    res2 = relu(BN(depthwise3x3/2 of the padded res1)), written with raw TF
    ops on an even-sized input where Keras' 'same' would pad differently."""
    encoder = mobilenet.build_mobilenet_encoder(
        'mobilenet_v3_small', 32, batch_norm=BatchNormOptions(epsilon=1e-5))
    x = tf.random.stateless_uniform([1, 20, 30, 3], seed=[3, 4],
                                    minval=-1.0, maxval=1.0)
    encoder(x)
    rng = np.random.RandomState(0)
    for variable in encoder.weights:
        low = 0.5 if 'variance' in variable.path or 'gamma' in variable.path \
            else -0.5
        variable.assign(rng.uniform(low, low + 1.0, variable.shape)
                        .astype(np.float32))
    features = encoder(x, training=False)

    def bn(y, layer):
        norm = layer._batch_norm
        return ((y - norm.moving_mean) / tf.sqrt(norm.moving_variance + 1e-5)
                * norm.gamma + norm.beta)

    padding = [[0, 0], [1, 1], [1, 1], [0, 0]]
    stem = encoder._blocks[0]
    y = bn(tf.nn.conv2d(tf.pad(x, padding), stem._conv.kernel, 2, 'VALID'),
           stem)
    res1 = y * tf.nn.relu6(y + 3.0) / 6.0
    np.testing.assert_allclose(features['res1'].numpy(), res1.numpy(),
                               atol=1e-4, rtol=1e-4)
    depthwise = encoder._blocks[1]._conv2_bn_act
    y = tf.nn.depthwise_conv2d(tf.pad(res1, padding),
                               depthwise._depthwise_conv.kernel,
                               [1, 2, 2, 1], 'VALID')
    np.testing.assert_allclose(features['res2'].numpy(),
                               tf.nn.relu(bn(y, depthwise)).numpy(),
                               atol=1e-4, rtol=1e-4)


def test_names_are_case_insensitive_and_errors_are_clear():
    encoder = mobilenet.build_mobilenet_encoder('MobileNet_V3_Small', 16)
    assert encoder.model_id == 'mobilenet_v3_small'
    assert encoder.name == 'MobileNetV3Small'
    with pytest.raises(ValueError, match='mobilenet_v3_small, '
                                         'mobilenet_v3_large'):
        mobilenet.build_mobilenet_encoder('mobilenet_v2', 16)
    with pytest.raises(ValueError, match='output_stride 4'):
        mobilenet.build_mobilenet_encoder('mobilenet_v3_large', 4)
    with pytest.raises(ValueError, match='width_multiplier'):
        mobilenet.build_mobilenet_encoder('mobilenet_v3_large', 16,
                                          width_multiplier=0.0)


def test_weight_decay_reaches_every_non_depthwise_kernel():
    encoder = mobilenet.build_mobilenet_encoder(
        'mobilenet_v3_small', 32, conv_kernel_weight_decay=1e-4)
    encoder(tf.zeros([1, 33, 33, 3]))
    kernels = [v for v in encoder.trainable_variables
               if v.path.endswith('kernel')]
    depthwise = [v for v in kernels if 'depthwise' in v.path]
    assert len(encoder.losses) == len(kernels) - len(depthwise) > 0
