"""Panoptic-DeepLab decoder and heads, DeepLabV3(+) decoders (ASPP has
test_aspp.py)."""

import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.model.decoder import deeplabv3
from deeplab2.model.decoder import panoptic_deeplab as pdl

FEATURES = {  # a 65x97 input at output stride 16
    'res2': tf.random.normal([2, 17, 25, 6], seed=1),
    'res3': tf.random.normal([2, 9, 13, 8], seed=2),
    'res5': tf.random.normal([2, 5, 7, 12], seed=3),
}


def _decoder_args(**overrides):
    args = dict(high_level_feature_name='res5',
                low_level_feature_names=['res3', 'res2'],
                low_level_channels_project=[8, 4], aspp_output_channels=10,
                decoder_output_channels=6, atrous_rates=[1, 2, 3])
    return {**args, **overrides}


def test_single_decoder_harness(layer_harness):
    layer = pdl.PanopticDeepLabSingleDecoder(**_decoder_args(), name='dec')
    layer_harness(layer, FEATURES, (2, 17, 25, 6))
    assert hasattr(layer, '_low_level_conv1') and hasattr(layer, '_fusion_conv2')
    assert layer._low_level_conv1._conv.kernel.shape == (1, 1, 8, 8)
    # fusion 1 sees the ASPP output (10) + projected res3 (8).
    assert layer._fusion_conv1._conv1_bn_act._depthwise._depthwise_conv \
        .kernel.shape == (5, 5, 18, 1)


def test_single_decoder_checks_low_level_lengths():
    with pytest.raises(ValueError, match='2 low-level features but 1'):
        pdl.PanopticDeepLabSingleDecoder(
            **_decoder_args(low_level_channels_project=[8]), name='dec')


@pytest.mark.parametrize('conv_type', ['depthwise_separable_conv',
                                       'standard_conv'])
def test_head_harness(layer_harness, conv_type):
    head = pdl.PanopticDeepLabSingleHead(8, 3, 'logits', conv_type=conv_type,
                                         name='head')
    out = layer_harness(head, FEATURES['res2'], {'logits': (2, 17, 25, 3)})
    assert set(out) == {'logits'}


def test_head_range_squashing():
    head = pdl.PanopticDeepLabSingleHead(
        4, 1, 'depth', max_value_after_activation=80.0,
        min_value_after_activation=5.0, name='head')
    out = head(FEATURES['res2'] * 100)['depth'].numpy()
    assert out.min() >= 5.0 and out.max() <= 80.0


def _panoptic(instance=True):
    heads = dict(intermediate_channels=8)
    return pdl.PanopticDeepLab(
        semantic_decoder=_decoder_args(),
        semantic_head={**heads, 'output_channels': 19},
        instance_decoder=_decoder_args(low_level_channels_project=[6, 2],
                                       decoder_output_channels=4)
        if instance else None,
        center_head={**heads, 'output_channels': 1} if instance else None,
        regression_head={**heads, 'output_channels': 2} if instance else None,
        name='PanopticDeepLab')


def test_panoptic_deeplab_harness(layer_harness):
    layer = _panoptic()
    layer_harness(layer, FEATURES, {
        common.PRED_SEMANTIC_LOGITS_KEY: (2, 17, 25, 19),
        common.PRED_CENTER_HEATMAP_KEY: (2, 17, 25, 1),
        common.PRED_OFFSET_MAP_KEY: (2, 17, 25, 2)})
    assert set(layer.checkpoint_items) == {
        'semantic_decoder', 'semantic_head_without_last_layer',
        'semantic_last_layer', 'instance_decoder',
        'instance_center_head_without_last_layer',
        'instance_center_head_last_layer',
        'instance_regression_head_without_last_layer',
        'instance_regression_head_last_layer'}


def test_semantic_only_panoptic_deeplab(layer_harness):
    layer = _panoptic(instance=False)
    layer_harness(layer, FEATURES,
                  {common.PRED_SEMANTIC_LOGITS_KEY: (2, 17, 25, 19)})
    assert len(layer.checkpoint_items) == 3


def test_partial_instance_branch_is_rejected():
    with pytest.raises(ValueError, match='needs its decoder, center head'):
        pdl.PanopticDeepLab(semantic_decoder=_decoder_args(),
                            semantic_head={'intermediate_channels': 4,
                                           'output_channels': 3},
                            instance_decoder=_decoder_args(), name='p')


def test_deeplabv3_harness(layer_harness):
    layer = deeplabv3.DeepLabV3('res5', 8, [1, 2, 3], 6, 19, name='v3')
    layer_harness(layer, FEATURES,
                  {common.PRED_SEMANTIC_LOGITS_KEY: (2, 5, 7, 19)})


def test_deeplabv3plus_harness(layer_harness):
    layer = deeplabv3.DeepLabV3Plus('res5', 'res2', 4, 8, [1, 2, 3], 6, 19,
                                    name='v3plus')
    layer_harness(layer, FEATURES,
                  {common.PRED_SEMANTIC_LOGITS_KEY: (2, 17, 25, 19)})
