"""build_loss from configs, and PanopticDeepLabLoss's term selection."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.loss import PanopticDeepLabLoss, build_loss

CITYSCAPES = datasets.get_dataset_descriptor('cityscapes_panoptic')


def _config(loss_options: str):
    return config_lib.parse_config_text(
        'trainer_options { loss_options { %s } }' % loss_options)


PANOPTIC = ('semantic_loss { name: "softmax_cross_entropy" top_k_percent: 0.2 }'
            ' center_loss { name: "mse" weight: 200 }'
            ' regression_loss { name: "l1" weight: 0.01 }')


def _inputs(height=4, width=6, num_classes=19):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, num_classes, [2, height, width]).astype(np.int32)
    labels[0, 0, :] = 255
    ground_truth = {
        common.GT_SEMANTIC_KEY: labels,
        common.SEMANTIC_LOSS_WEIGHT_KEY: np.ones([2, height, width], np.float32),
        common.GT_INSTANCE_CENTER_KEY: rng.random([2, height, width]),
        common.CENTER_LOSS_WEIGHT_KEY: np.ones([2, height, width], np.float32),
        common.GT_INSTANCE_REGRESSION_KEY: rng.normal(size=[2, height, width, 2]),
        common.REGRESSION_LOSS_WEIGHT_KEY: np.ones([2, height, width],
                                                   np.float32),
    }
    predictions = {
        common.PRED_SEMANTIC_LOGITS_KEY: rng.normal(
            size=[2, height, width, num_classes]),
        common.PRED_CENTER_HEATMAP_KEY: rng.random([2, height, width]),
        common.PRED_OFFSET_MAP_KEY: rng.normal(size=[2, height, width, 2]),
    }
    cast = lambda d: {k: tf.constant(v, tf.int32 if v.dtype == np.int32
                                     else tf.float32) for k, v in d.items()}
    return cast(ground_truth), cast(predictions)


def test_build_loss_reads_the_cityscapes_config(repo_root):
    config = config_lib.load_config(
        repo_root / 'configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto')
    loss = build_loss(config, CITYSCAPES)
    assert loss.num_classes == 19 and loss.ignore_label == 255
    assert loss.semantic_top_k_percent == pytest.approx(0.2)
    assert loss.center_loss_weight == 200
    assert loss.regression_loss_weight == pytest.approx(0.01)
    assert loss.loss_names() == [common.CENTER_LOSS, common.REGRESSION_LOSS,
                                 common.SEMANTIC_LOSS, common.TOTAL_LOSS]
    terms = loss(*_inputs())
    assert list(terms) == loss.loss_names()
    total = sum(terms[k] for k in loss.loss_names()[:-1])
    np.testing.assert_allclose(terms[common.TOTAL_LOSS], total, rtol=1e-6)


def test_semantic_only_config_and_model():
    loss = build_loss(_config('semantic_loss { name: "softmax_cross_entropy" }'),
                      CITYSCAPES)
    terms = loss(*_inputs())
    assert list(terms) == [common.SEMANTIC_LOSS, common.TOTAL_LOSS]
    # A panoptic config with a semantic-only model: only the semantic term.
    ground_truth, predictions = _inputs()
    semantic_only = {common.PRED_SEMANTIC_LOGITS_KEY:
                     predictions[common.PRED_SEMANTIC_LOGITS_KEY]}
    terms = build_loss(_config(PANOPTIC), CITYSCAPES)(
        {common.GT_SEMANTIC_KEY: ground_truth[common.GT_SEMANTIC_KEY],
         common.SEMANTIC_LOSS_WEIGHT_KEY:
         ground_truth[common.SEMANTIC_LOSS_WEIGHT_KEY]}, semantic_only)
    assert list(terms) == [common.SEMANTIC_LOSS, common.TOTAL_LOSS]
    np.testing.assert_array_equal(terms[common.SEMANTIC_LOSS],
                                  terms[common.TOTAL_LOSS])


def test_config_weight_scales_its_term():
    inputs = _inputs()
    one = PanopticDeepLabLoss(19, 255, center_loss_weight=1.0)(*inputs)
    ten = PanopticDeepLabLoss(19, 255, center_loss_weight=10.0)(*inputs)
    np.testing.assert_allclose(ten[common.CENTER_LOSS],
                               10 * one[common.CENTER_LOSS], rtol=1e-6)
    np.testing.assert_allclose(ten[common.SEMANTIC_LOSS],
                               one[common.SEMANTIC_LOSS])


def test_unknown_loss_name_names_the_field():
    with pytest.raises(config_lib.ConfigError,
                       match=r'loss_options\.center_loss\.name .*huber'):
        build_loss(_config('semantic_loss { name: "softmax_cross_entropy" }'
                           ' center_loss { name: "huber" }'), CITYSCAPES)
    with pytest.raises(config_lib.ConfigError,
                       match=r'loss_options\.semantic_loss\.name'):
        build_loss(_config('semantic_loss { name: "focal" }'), CITYSCAPES)


@pytest.mark.parametrize('term', ['motion_loss', 'depth_loss',
                                  'pq_style_loss'])
def test_unsupported_terms(term):
    with pytest.raises(config_lib.NotSupportedError,
                       match=f'loss_options.{term} is not supported yet'):
        build_loss(_config(PANOPTIC + ' %s { name: "l1" }' % term), CITYSCAPES)


def test_top_k_out_of_range_names_the_field():
    with pytest.raises(config_lib.ConfigError,
                       match=r'semantic_loss\.top_k_percent'):
        build_loss(_config('semantic_loss { name: "softmax_cross_entropy" '
                           'top_k_percent: 1.5 }'), CITYSCAPES)


def test_missing_ground_truth_names_the_key():
    ground_truth, predictions = _inputs()
    del ground_truth[common.CENTER_LOSS_WEIGHT_KEY]
    with pytest.raises(KeyError, match=common.CENTER_LOSS_WEIGHT_KEY):
        build_loss(_config(PANOPTIC), CITYSCAPES)(ground_truth, predictions)
