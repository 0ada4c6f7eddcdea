"""PanopticDeepLabLoss on hand-worked 1x2 examples, and its input checks.

(DeepLab2 parity on real shapes: test_loss_parity.py; configs:
test_loss_builder.py.)
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.loss.panoptic_deeplab import PanopticDeepLabLoss


def _example():
    """Two examples of 1x2 pixels, 2 classes.

    Example 0: semantic logits [0, 0] at both pixels, labels [0, void]: the
    cross-entropy is ln 2 on the first pixel and the void one does not count
    -> ln 2. Center target [1, 0], prediction [0.5, 0]: squared errors
    [0.25, 0], one non-zero -> 0.25. Offsets target (2, -2), prediction
    (1, 0) on the first pixel, equal on the second: L1 averaged over the two
    channels (1 + 2) / 2 = 1.5 and 0 -> 1.5.
    Example 1: every label void, every target met: all terms 0.
    """
    float32 = lambda value: tf.constant(value, tf.float32)
    ones = float32(np.ones([2, 1, 2]))
    ground_truth = {
        common.GT_SEMANTIC_KEY: tf.constant([[[0, 255]], [[255, 255]]]),
        common.SEMANTIC_LOSS_WEIGHT_KEY: ones,
        common.GT_INSTANCE_CENTER_KEY: float32([[[1, 0]], [[0, 0]]]),
        common.CENTER_LOSS_WEIGHT_KEY: ones,
        common.GT_INSTANCE_REGRESSION_KEY: float32(
            [[[[2, -2], [0, 0]]], [[[0, 0], [0, 0]]]]),
        common.REGRESSION_LOSS_WEIGHT_KEY: ones,
    }
    predictions = {
        common.PRED_SEMANTIC_LOGITS_KEY: float32(np.zeros([2, 1, 2, 2])),
        common.PRED_CENTER_HEATMAP_KEY: float32([[[0.5, 0]], [[0, 0]]]),
        common.PRED_OFFSET_MAP_KEY: float32(
            [[[[1, 0], [0, 0]]], [[[0, 0], [0, 0]]]]),
    }
    return ground_truth, predictions


def _panoptic_loss(**kwargs):
    weights = dict(semantic_loss_weight=1.0, center_loss_weight=200.0,
                   regression_loss_weight=0.01)
    return PanopticDeepLabLoss(2, 255, **{**weights, **kwargs})


def test_terms_by_hand():
    terms = _panoptic_loss()(*_example())
    assert list(terms) == [common.CENTER_LOSS, common.REGRESSION_LOSS,
                           common.SEMANTIC_LOSS, common.TOTAL_LOSS]
    expected = {common.CENTER_LOSS: [200 * 0.25, 0],
                common.REGRESSION_LOSS: [0.01 * 1.5, 0],
                common.SEMANTIC_LOSS: [math.log(2), 0]}
    expected[common.TOTAL_LOSS] = [50 + 0.015 + math.log(2), 0]
    for term, values in expected.items():
        np.testing.assert_allclose(terms[term].numpy(), values, rtol=1e-6,
                                   err_msg=term)


def test_weights_scale_the_sum_not_the_count():
    """Semantic weights [3, 1] on two ln 2 pixels: (3 + 1) ln 2 over the 2
    non-zero pixels = 2 ln 2."""
    ground_truth, predictions = _example()
    ground_truth[common.GT_SEMANTIC_KEY] = tf.constant([[[0, 1]], [[0, 1]]])
    ground_truth[common.SEMANTIC_LOSS_WEIGHT_KEY] = tf.constant(
        [[[3.0, 1.0]], [[3.0, 1.0]]])
    terms = _panoptic_loss()(ground_truth, predictions)
    np.testing.assert_allclose(terms[common.SEMANTIC_LOSS].numpy(),
                               [2 * math.log(2)] * 2, rtol=1e-6)


def test_mse_and_l1_swap_by_name():
    """Center by L1: |1 - 0.5| = 0.5; offsets by MSE: (1 + 4) / 2 = 2.5."""
    terms = _panoptic_loss(center_loss_name='l1',
                           regression_loss_name='mse')(*_example())
    np.testing.assert_allclose(terms[common.CENTER_LOSS].numpy(),
                               [200 * 0.5, 0], rtol=1e-6)
    np.testing.assert_allclose(terms[common.REGRESSION_LOSS].numpy(),
                               [0.01 * 2.5, 0], rtol=1e-6)


def test_absent_terms_are_left_out():
    loss = PanopticDeepLabLoss(2, 255, semantic_loss_weight=None,
                               center_loss_weight=1.0)
    assert loss.loss_names() == [common.CENTER_LOSS, common.TOTAL_LOSS]
    terms = loss(*_example())
    np.testing.assert_allclose(terms[common.TOTAL_LOSS].numpy(), [0.25, 0])


def test_constructor_checks():
    with pytest.raises(ValueError, match='at least one term'):
        PanopticDeepLabLoss(2, 255, semantic_loss_weight=None)
    with pytest.raises(ValueError, match=r"center_loss_name must be one of "
                                         r"\['l1', 'mse'\], got 'huber'"):
        PanopticDeepLabLoss(2, 255, center_loss_name='huber')
    with pytest.raises(ValueError, match='regression_top_k_percent'):
        PanopticDeepLabLoss(2, 255, regression_top_k_percent=2.0)


def test_input_checks_name_the_prediction():
    ground_truth, predictions = _example()
    loss = _panoptic_loss()
    with pytest.raises(ValueError, match='3 channels but the loss expects '
                                         'num_classes=2'):
        loss(ground_truth, {**predictions, common.PRED_SEMANTIC_LOGITS_KEY:
                            tf.zeros([2, 1, 2, 3])})
    with pytest.raises(ValueError, match=r'offset_map is \[2, 2\] but the '
                                         r'ground truth is \[1, 2\]'):
        loss(ground_truth, {**predictions, common.PRED_OFFSET_MAP_KEY:
                            tf.zeros([2, 2, 2, 2])})
    with pytest.raises(KeyError, match='No loss term applies'):
        PanopticDeepLabLoss(2, 255, semantic_loss_weight=None,
                            center_loss_weight=1.0)(ground_truth, {})
