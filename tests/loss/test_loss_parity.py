"""Parity of PanopticDeepLabLoss with the values DeepLab2's loss returned.

The normalization being checked, in words: each term's per-pixel loss
(softmax cross-entropy, 0 on ignore pixels; squared error of the center
heatmap; absolute offset error averaged over the 2 channels) is multiplied by
its weight map. Per image, with top_k_percent < 1, only the
k = round(top_k_percent * H * W) largest weighted values are kept; the
image's value is the sum of the kept values divided by how many of them are
non-zero (0 when none is). It is then multiplied by the term's config
weight. The terms and their total are returned per image; the batch value is
the plain mean over images, empty images included.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.loss import PanopticDeepLabLoss

RTOL = 1e-5


@pytest.fixture(scope='module')
def case(fixtures_dir):
    folder = fixtures_dir / 'deeplab2' / 'loss'
    arrays = dict(np.load(folder / 'loss_case.npz'))
    for key in (common.PRED_SEMANTIC_LOGITS_KEY, common.PRED_CENTER_HEATMAP_KEY,
                common.PRED_OFFSET_MAP_KEY):
        arrays[key] = arrays[key].astype(np.float32)
    expected = json.loads((folder / 'loss_expected.json').read_text())
    return arrays, expected


def _loss(expected, semantic_top_k_percent=None):
    used = expected['loss_options']['float32_values_used']
    weights, top_k = used['loss_weights'], used['top_k_percent']
    return PanopticDeepLabLoss(
        num_classes=expected['dataset']['num_classes'],
        ignore_label=expected['dataset']['ignore_label'],
        semantic_loss_weight=weights['semantic_loss'],
        semantic_top_k_percent=(top_k['semantic_loss']
                                if semantic_top_k_percent is None
                                else semantic_top_k_percent),
        center_loss_weight=weights['center_loss'],
        center_top_k_percent=top_k['center_loss'],
        regression_loss_weight=weights['regression_loss'],
        regression_top_k_percent=top_k['regression_loss'])


def _variant(arrays, name):
    """The inputs and the semantic top-k of each fixture variant."""
    arrays = dict(arrays)
    top_k = None
    if name in ('semantic_top_k_1.0', 'semantic_weights_all_ones_top_k_1.0'):
        top_k = 1.0
    if name.startswith('semantic_weights_all_ones'):
        arrays[common.SEMANTIC_LOSS_WEIGHT_KEY] = np.ones_like(
            arrays[common.SEMANTIC_LOSS_WEIGHT_KEY])
    if name == 'sample1_semantic_logits_x0.25':
        logits = arrays[common.PRED_SEMANTIC_LOGITS_KEY].copy()
        logits[1] *= 0.25
        arrays[common.PRED_SEMANTIC_LOGITS_KEY] = logits
    if name == 'sample1_regression_weight_all_zero':
        weights = arrays[common.REGRESSION_LOSS_WEIGHT_KEY].copy()
        weights[1] = 0.0
        arrays[common.REGRESSION_LOSS_WEIGHT_KEY] = weights
    return arrays, top_k


def _split(arrays):
    prediction_keys = (common.PRED_SEMANTIC_LOGITS_KEY,
                       common.PRED_CENTER_HEATMAP_KEY,
                       common.PRED_OFFSET_MAP_KEY)
    ground_truth = {k: tf.constant(v) for k, v in arrays.items()
                    if k not in prediction_keys}
    predictions = {k: tf.constant(arrays[k]) for k in prediction_keys}
    return ground_truth, predictions


VARIANTS = ['main', 'semantic_top_k_1.0', 'semantic_weights_all_ones',
            'semantic_weights_all_ones_top_k_1.0',
            'sample1_semantic_logits_x0.25',
            'sample1_regression_weight_all_zero']


@pytest.mark.parametrize('name', VARIANTS)
def test_matches_deeplab2_per_sample_and_batch_mean(case, name):
    arrays, expected = case
    assert name in expected['expected']
    want = expected['expected'][name]
    inputs, top_k = _variant(arrays, name)
    got = _loss(expected, top_k)(*_split(inputs))
    assert list(got) == expected['returned_keys_in_order']
    for term, values in want['per_sample'].items():
        assert got[term].shape == (2,)
        np.testing.assert_allclose(got[term].numpy(), values, rtol=RTOL,
                                   err_msg=f'{name}: {term}')
        np.testing.assert_allclose(np.mean(got[term].numpy()),
                                   want['batch_mean'][term], rtol=RTOL,
                                   err_msg=f'{name}: batch mean {term}')


def test_fixture_variants_all_covered(case):
    assert sorted(case[1]['expected']) == sorted(VARIANTS)


def test_tf_function_matches(case):
    arrays, expected = case
    loss = _loss(expected)
    got = tf.function(loss)(*_split(arrays))
    for term, values in expected['tf_function']['per_sample'].items():
        np.testing.assert_allclose(got[term].numpy(), values, rtol=RTOL)


def test_rank4_center_heatmap_is_rejected(case):
    arrays, expected = case
    ground_truth, predictions = _split(arrays)
    predictions[common.PRED_CENTER_HEATMAP_KEY] = predictions[
        common.PRED_CENTER_HEATMAP_KEY][..., None]
    with pytest.raises(ValueError, match='center_heatmap'):
        _loss(expected)(ground_truth, predictions)
