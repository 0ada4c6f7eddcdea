"""MeanIoU against an independent per-class computation."""

import numpy as np
import pytest

from deeplab2.evaluation import MeanIoU

NUM_CLASSES, IGNORE = 5, 255


def _random_pair(rng, shape=(24, 40)):
    gt = rng.integers(0, NUM_CLASSES, size=shape)
    gt[rng.random(shape) < 0.15] = IGNORE
    pred = np.where(rng.random(shape) < 0.6, gt, rng.integers(0, NUM_CLASSES, shape))
    pred[rng.random(shape) < 0.05] = IGNORE  # void predictions
    gt[gt == 4] = 3  # class 4 never in the ground truth...
    pred[pred == 4] = 3  # ...nor predicted: excluded from the mean
    return gt, pred


def _expected(pairs):
    gt = np.concatenate([g.ravel() for g, _ in pairs])
    pred = np.concatenate([p.ravel() for _, p in pairs])
    labelled = gt != IGNORE
    gt, pred = gt[labelled], pred[labelled]
    ious = []
    for c in range(NUM_CLASSES):
        union = np.sum((gt == c) | (pred == c))
        ious.append(np.sum((gt == c) & (pred == c)) / union if union else np.nan)
    matrix = np.bincount(gt * (NUM_CLASSES + 1)
                         + np.where(pred == IGNORE, NUM_CLASSES, pred),
                         minlength=NUM_CLASSES * (NUM_CLASSES + 1))
    return np.array(ious), matrix.reshape(NUM_CLASSES, NUM_CLASSES + 1)


def test_equals_independent_computation():
    rng = np.random.default_rng(3)
    pairs = [_random_pair(rng) for _ in range(4)]
    metric = MeanIoU(NUM_CLASSES, IGNORE)
    for gt, pred in pairs:
        metric.update_state(gt, pred.astype(np.uint8))
    result = metric.result()
    ious, matrix = _expected(pairs)
    np.testing.assert_allclose(result['per_class_iou'], ious, rtol=1e-12)
    assert result['miou'] == pytest.approx(np.nanmean(ious), rel=1e-12)
    np.testing.assert_array_equal(result['confusion_matrix'], matrix)
    assert result['per_class_valid'].tolist() == [True] * 4 + [False]


def test_fixture_semantic(groundtruth_split, scenarios):
    rng = np.random.default_rng(0)
    pairs = [(gt // 1000, scenarios['noisy'](gt, rng) // 1000)
             for gt in groundtruth_split.panoptic]
    metric = MeanIoU(19, 255)
    for gt, pred in pairs:
        metric.update_state(gt, pred)
    gt = np.concatenate([g.ravel() for g, _ in pairs])
    pred = np.concatenate([p.ravel() for _, p in pairs])
    keep = gt != 255
    matrix = np.bincount(gt[keep] * 20 + np.minimum(pred[keep], 19),
                         minlength=19 * 20).reshape(19, 20)
    hits = np.diag(matrix)
    union = matrix.sum(1) + matrix[:, :19].sum(0) - hits
    assert metric.result()['miou'] == pytest.approx(
        np.mean(hits[union > 0] / union[union > 0]), rel=1e-12)


def test_hand_worked_and_merge():
    a, b = MeanIoU(2, 255), MeanIoU(2, 255)
    a.update_state([[0, 0], [1, 255]], [[0, 1], [1, 0]])
    b.update_state([[1, 1]], [[1, 255]])
    a.merge_state(b)
    result = a.result()
    # class 0: hit 1, union 2; class 1: hits 2, gt 3 + predicted 3 - 2 = 4
    np.testing.assert_allclose(result['per_class_iou'], [0.5, 0.5])
    assert result['miou'] == pytest.approx(0.5)
    a.reset_state()
    assert a.result()['miou'] == 0.0


def test_run_and_pixel_counting_agree(monkeypatch):
    from deeplab2.evaluation import label_maps
    rng = np.random.default_rng(2)
    gt = np.kron(rng.integers(0, 20, (6, 8)), np.ones((16, 16), int))
    gt[gt == 19] = 255
    prediction = np.roll(gt, 3, axis=1)
    prediction[rng.random(gt.shape) < 0.01] = 7
    assert label_maps.pixel_runs([gt, prediction]) is not None
    fast = MeanIoU(19, 255)
    fast.update_state(gt, prediction)
    monkeypatch.setattr(label_maps, 'pixel_runs', lambda maps: None)
    slow = MeanIoU(19, 255)
    slow.update_state(gt, prediction)
    np.testing.assert_array_equal(fast.confusion_matrix, slow.confusion_matrix)
    assert fast.confusion_matrix.sum() == (gt != 255).sum()


@pytest.mark.parametrize('per_pixel', [False, True])
def test_panoptic_maps_with_label_divisor(groundtruth_split, scenarios,
                                          per_pixel, monkeypatch):
    """Classes of panoptic maps (taken per run, or per pixel for noise)
    count as the maps divided up front; thing crowd regions (class * 1000
    for a thing class, 11-18) and void (255000) included."""
    from deeplab2.evaluation import label_maps
    if per_pixel:
        monkeypatch.setattr(label_maps, 'pixel_runs', lambda maps: None)
    rng = np.random.default_rng(5)
    divided, panoptic = MeanIoU(19, 255), MeanIoU(19, 255)
    for gt in groundtruth_split.panoptic:
        prediction = scenarios['noisy'](gt, rng)
        thing_crowd = (gt // 1000 >= 11) & (gt // 1000 <= 18) & (
            gt % 1000 == 0)
        assert (gt == 255000).any() and thing_crowd.any()
        divided.update_state(gt // 1000, prediction // 1000)
        panoptic.update_state(gt, prediction, label_divisor=1000)
    np.testing.assert_array_equal(panoptic.confusion_matrix,
                                  divided.confusion_matrix)
    with pytest.raises(ValueError, match='label_divisor must be positive'):
        panoptic.update_state(gt, prediction, label_divisor=0)
