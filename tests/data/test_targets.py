"""Panoptic-DeepLab targets on a hand-worked label map, eager and in tf.data."""

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import targets

DIVISOR = 1000
IGNORE = 255
THINGS = (11, 13)
VOID = IGNORE * DIVISOR

# 4 x 10. 11001: a 2x2 square, mean (0.5, 0.5) -> center (0, 0) by
# round-half-to-even (floor(x + .5) would say (1, 1)). 13001: 5 pixels, mean
# (2.4, 0.8) -> (2, 1). 13000 is crowd; 2000 is stuff.
LABEL = np.array([
    [11001, 11001, 2000, 2000, 13000, 13000, 2000, 2000, 2000, 2000],
    [11001, 11001, 2000, 2000, 13000, VOID, 2000, 2000, 2000, 2000],
    [13001, 13001, 13001, 2000, 2000, 2000, 2000, 2000, 2000, 2000],
    [13001, 13001, VOID, 2000, 2000, 2000, 2000, 2000, 2000, 2000],
], np.int32)
CENTERS = {11001: (0, 0), 13001: (2, 1)}
SIGMA = 1.0  # window 9x9: |dy|, |dx| <= 3 sigma + 1 = 4


def _expected_heatmap():
    heatmap = np.zeros(LABEL.shape, np.float32)
    for cy, cx in CENTERS.values():
        for y in range(LABEL.shape[0]):
            for x in range(LABEL.shape[1]):
                if abs(y - cy) <= 4 and abs(x - cx) <= 4:
                    value = np.float32(np.exp(
                        -((y - cy) ** 2 + (x - cx) ** 2) / (2 * SIGMA ** 2)))
                    heatmap[y, x] = max(heatmap[y, x], value)
    return heatmap


def _expected_offsets():
    offsets = np.zeros(LABEL.shape + (2,), np.float32)
    for instance, (cy, cx) in CENTERS.items():
        for y, x in zip(*np.nonzero(LABEL == instance)):
            offsets[y, x] = (cy - y, cx - x)
    return offsets


def _compute(label):
    return targets.panoptic_targets(
        label, label_divisor=DIVISOR, ignore_label=IGNORE, thing_ids=THINGS,
        sigma=SIGMA, small_instance_threshold=5, small_instance_weight=3.0)


def _check(result):
    result = {key: np.asarray(value) for key, value in result.items()}
    np.testing.assert_array_equal(result[common.GT_SEMANTIC_KEY],
                                  LABEL // DIVISOR)
    np.testing.assert_array_equal(result[common.GT_PANOPTIC_KEY], LABEL)
    crowd = LABEL == 13000
    np.testing.assert_array_equal(result[common.GT_IS_CROWD], crowd)
    np.testing.assert_array_equal(result[common.GT_INSTANCE_CENTER_KEY],
                                  _expected_heatmap())
    # Square window truncation: (0, 5) is 4 columns from center (2, 1), so
    # inside; (0, 6) is 5 and 6 columns from both centers, so exactly 0.
    assert result[common.GT_INSTANCE_CENTER_KEY][0, 5] > 0
    assert result[common.GT_INSTANCE_CENTER_KEY][0, 6] == 0
    np.testing.assert_array_equal(result[common.GT_INSTANCE_REGRESSION_KEY],
                                  _expected_offsets())
    # 11001 has 4 < 5 pixels: up-weighted; 13001 has 5: not. Void stays 1.
    np.testing.assert_array_equal(result[common.SEMANTIC_LOSS_WEIGHT_KEY],
                                  np.where(LABEL == 11001, 3.0, 1.0))
    np.testing.assert_array_equal(
        result[common.CENTER_LOSS_WEIGHT_KEY],
        ((~crowd) & (LABEL != VOID)).astype(np.float32))
    np.testing.assert_array_equal(
        result[common.REGRESSION_LOSS_WEIGHT_KEY],
        np.isin(LABEL, list(CENTERS)).astype(np.float32))
    assert result[common.GT_INSTANCE_CENTER_KEY].dtype == np.float32
    assert result[common.GT_SEMANTIC_KEY].dtype == np.int32


def test_hand_worked_eager():
    _check(_compute(tf.constant(LABEL)))


def test_hand_worked_in_tf_data():
    dataset = tf.data.Dataset.from_tensors(LABEL).map(_compute)
    _check(next(iter(dataset)))


def test_no_instances_gives_empty_heatmap_and_unit_weights():
    label = tf.fill([5, 7], 2000)
    result = _compute(label)
    assert float(tf.reduce_sum(result[common.GT_INSTANCE_CENTER_KEY])) == 0
    assert float(tf.reduce_sum(
        tf.abs(result[common.GT_INSTANCE_REGRESSION_KEY]))) == 0
    np.testing.assert_array_equal(result[common.SEMANTIC_LOSS_WEIGHT_KEY],
                                  np.ones([5, 7], np.float32))


def test_gaussian_window_peak_and_size():
    window = targets.gaussian_window(8.0)
    assert window.shape == (51, 51) and window.dtype == np.float32
    assert window[25, 25] == 1.0 and window.argmax() == 25 * 51 + 25
    np.testing.assert_allclose(window[0, 0], np.exp(-(625 + 625) / 128),
                               rtol=1e-6)


def test_raw_eval_labels():
    raw = targets.raw_eval_labels(tf.constant(LABEL), label_divisor=DIVISOR,
                                  thing_ids=THINGS)
    np.testing.assert_array_equal(raw[common.GT_PANOPTIC_RAW], LABEL)
    np.testing.assert_array_equal(raw[common.GT_SEMANTIC_RAW], LABEL // 1000)
    np.testing.assert_array_equal(raw[common.GT_IS_CROWD_RAW], LABEL == 13000)
    np.testing.assert_array_equal(raw[common.GT_SIZE_RAW], [4, 10])


def test_thing_id_mask_and_class_hand_worked_in_tf_data():
    def compute(label):
        return targets.thing_id_mask_and_class(
            label, label_divisor=DIVISOR, ignore_label=IGNORE,
            thing_ids=THINGS, max_thing_id=4)

    mask, classes = next(iter(
        tf.data.Dataset.from_tensors(LABEL).map(compute)))
    # Row-major first appearance: 11001 then 13001; crowd 13000 is skipped.
    expected = np.select([LABEL == 11001, LABEL == 13001], [0, 1], -1)
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(classes, [11.0, 13.0, -1.0, -1.0])
    assert classes.dtype == tf.float32
