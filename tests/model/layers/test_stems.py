"""The ResNet-family stems: shapes, channels, layout, harness."""

import pytest
import tensorflow as tf

from deeplab2.model.layers import stems

# 33x50: 3x3 / 7x7 stride 2 with DeepLab2's symmetric padding gives
# ceil(33 / 2) = 17 and ceil(50 / 2) = 25 (e.g. (50 + 3 + 3 - 7) // 2 + 1).
_INPUT = (1, 33, 50, 3)


@pytest.mark.parametrize('stem_type,channels,kernel', [
    ('resnet', 8, 7), ('wider_resnet', 8, 3),
])
def test_single_conv_stems(layer_harness, stem_type, channels, kernel):
    stem = stems.build_stem(stem_type, 0.125)
    layer_harness(stem, tf.random.normal(_INPUT), (1, 17, 25, channels))
    assert stem.name == 'stem'
    assert stem._conv.kernel.shape == (kernel, kernel, 3, channels)
    assert stem.activation is None  # the encoder activates it as 'res1'


def test_inception_stem(layer_harness):
    stem = stems.build_stem('resnet_beta', 0.25)
    layer_harness(stem, tf.random.normal(_INPUT), (1, 17, 25, 32))
    assert [stem._conv1_bn_act._conv.kernel.shape,
            stem._conv2_bn_act._conv.kernel.shape,
            stem._conv3_bn._conv.kernel.shape] == [
                (3, 3, 3, 16), (3, 3, 16, 16), (3, 3, 16, 32)]
    assert stem._conv3_bn.activation is None


def test_inception_stem_truncates_channels_where_the_others_round():
    # 64 * 0.1 = 6.4 and 128 * 0.1 = 12.8: DeepLab2's Inception stem
    # truncates (6, 12); the single-conv stems round 64 * 0.11 = 7.04 -> 7
    # and 64 * 0.12 = 7.68 -> 8.
    stem = stems.build_stem('resnet_beta', 0.1)
    assert (stem._conv1_bn_act.output_channels,
            stem._conv3_bn.output_channels) == (6, 12)
    assert stems.stem_output_channels('resnet_beta', 0.1) == 12
    assert stems.stem_output_channels('resnet', 0.11) == 7
    assert stems.stem_output_channels('wider_resnet', 0.12) == 8


def test_unknown_stem_type_is_an_error():
    with pytest.raises(ValueError, match="'vgg'.*resnet, resnet_beta"):
        stems.build_stem('vgg')
