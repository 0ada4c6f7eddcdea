"""Block groups: DeepLab2's strides, atrous rates and drop path per block."""

import pytest
import tensorflow as tf

from deeplab2.model.layers import block_group


def _plan(**kwargs):
    specs = block_group.plan_block_group(**kwargs)
    return [(s.strides, s.atrous_rate, s.second_conv_atrous_rate)
            for s in specs]


@pytest.mark.parametrize('output_stride,expected', [
    # ResNet stage 5: original input stride 16, stride 2, three blocks.
    # OS32: the first block strides.
    (32, [(2, 1, 1), (1, 1, 1), (1, 1, 1)]),
    # OS16: no stride; the first block's 3x3 still sees stride 16 (rate 1),
    # the others stride 32 -> rate 32 / 16 = 2.
    (16, [(1, 1, 2), (1, 2, 2), (1, 2, 2)]),
    # OS8: 16 / 8 = 2 for the first block, 32 / 8 = 4 after it.
    (8, [(1, 2, 4), (1, 4, 4), (1, 4, 4)]),
])
def test_stage5_strides_and_rates(output_stride, expected):
    assert _plan(filters=512, num_blocks=3, original_resnet_stride=2,
                 original_resnet_input_stride=16, output_stride=output_stride,
                 backbone_type='resnet') == expected


def test_wider_stage4_at_os8_gives_the_second_conv_the_stage_rate():
    """A basic block's second conv in the first block sees the stage's
    output: 8 * 2 / 8 = 2, while its first conv has rate 8 / 8 = 1."""
    specs = block_group.plan_block_group(
        filters=256, num_blocks=3, original_resnet_stride=2,
        original_resnet_input_stride=8, output_stride=8,
        backbone_type='wider_resnet')
    assert [(s.strides, s.atrous_rate, s.second_conv_atrous_rate)
            for s in specs] == [(1, 1, 2), (1, 2, 2), (1, 2, 2)]
    assert specs[0].filters == (1024, 1024)


@pytest.mark.parametrize('backbone_type,input_stride,expected', [
    ('resnet', 2, (64, 64, 256)), ('resnet_beta', 16, (64, 64, 256)),
    ('wider_resnet', 8, (256, 256)),        # basic below stride 32
    ('wider_resnet', 16, (64, 128, 256)),   # wide bottleneck reaching 32
])
def test_block_filters(backbone_type, input_stride, expected):
    assert block_group.block_filters(64, backbone_type,
                                     input_stride * 2) == expected


def test_linear_drop_path_per_block_by_hand():
    """keep 0.8, linear, from stride 4: the first block of a stage sees the
    previous stride. Stride 2 -> 1.0 (below 4); 4 -> stage 1 -> 1 - 0.2/4 =
    0.95; 8 -> 0.9; 16 -> 0.85; 32 -> 0.8."""
    def keep_probs(input_stride):
        specs = block_group.plan_block_group(
            filters=8, num_blocks=3, original_resnet_stride=2,
            original_resnet_input_stride=input_stride, output_stride=32,
            backbone_type='wider_resnet', drop_path_keep_prob=0.8,
            drop_path_beyond_stride=4, drop_path_schedule='linear')
        return [s.drop_path_keep_prob for s in specs]
    assert keep_probs(2) == pytest.approx([1.0, 0.95, 0.95])
    assert keep_probs(4) == pytest.approx([0.95, 0.9, 0.9])
    assert keep_probs(16) == pytest.approx([0.85, 0.8, 0.8])


def test_constant_drop_path_starts_at_the_threshold():
    specs = block_group.plan_block_group(
        filters=8, num_blocks=3, original_resnet_stride=2,
        original_resnet_input_stride=8, output_stride=32,
        backbone_type='resnet', drop_path_keep_prob=0.7,
        drop_path_beyond_stride=16)
    assert [s.drop_path_keep_prob for s in specs] == [1.0, 0.7, 0.7]


def test_rejects_non_power_of_two_strides():
    with pytest.raises(ValueError, match='output_stride must be a power'):
        block_group.plan_block_group(8, 1, 2, 4, 12, 'resnet')


def test_block_group_harness(layer_harness):
    group = block_group.BlockGroup(
        4, 2, 8, original_resnet_stride=2, original_resnet_input_stride=8,
        output_stride=8, backbone_type='wider_resnet',
        use_sac_beyond_stride=16, use_squeeze_and_excite=True,
        drop_path_keep_prob=0.8, drop_path_beyond_stride=4, name='stage4')
    layer_harness(group, tf.random.normal([1, 9, 11, 8]), (1, 9, 11, 16))
    assert group.output_channels == 16
    assert group._block1.use_sac and group._block2.use_sac
    assert group._block1.input_channels == 8
    assert group._block2.input_channels == 16
