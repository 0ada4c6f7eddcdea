"""InstanceAP against pycocotools' COCOeval run directly on the same masks."""

import contextlib
import io

import numpy as np
import pytest
from pycocotools import coco, cocoeval
from pycocotools import mask as mask_api

from deeplab2.data.cityscapes_labels import (IGNORE_LABEL, LABEL_DIVISOR,
                                             NUM_CLASSES, THING_CLASSES)
from deeplab2.evaluation import InstanceAP

STAT_NAMES = ('ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large',
              'ar_1', 'ar_10', 'ar_100', 'ar_small', 'ar_medium', 'ar_large')


def _rle(mask):
    return mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))


def _cocoeval_stats(groundtruths, predictions, score_maps):
    """COCO objects built from scratch: one object per thing id."""
    images, annotations, detections = [], [], []
    for image_id, (gt, pred, scores) in enumerate(
            zip(groundtruths, predictions, score_maps), start=1):
        images.append({'id': image_id, 'height': gt.shape[0],
                       'width': gt.shape[1]})
        for value in np.unique(gt):
            if value // LABEL_DIVISOR not in THING_CLASSES:
                continue
            mask = gt == value
            rle = _rle(mask)
            annotations.append({
                'id': len(annotations) + 1, 'image_id': image_id,
                'category_id': int(value // LABEL_DIVISOR),
                'segmentation': rle, 'area': float(mask.sum()),
                'bbox': list(mask_api.toBbox(rle)),
                'iscrowd': int(value % LABEL_DIVISOR == 0)})
        for value in np.unique(pred):
            if value // LABEL_DIVISOR not in THING_CLASSES:
                continue
            mask = pred == value
            detections.append({
                'image_id': image_id, 'category_id': int(value // LABEL_DIVISOR),
                'segmentation': _rle(mask),
                'score': float(scores[mask][0])})
    ground_truth = coco.COCO()
    ground_truth.dataset = {'images': images, 'annotations': annotations,
                            'categories': [{'id': c} for c in THING_CLASSES]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
        evaluation = cocoeval.COCOeval(ground_truth,
                                       ground_truth.loadRes(detections), 'segm')
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def _score_map(pred, rng):
    """A random score per predicted segment, constant over its pixels."""
    ids, inverse = np.unique(pred, return_inverse=True)
    return rng.random(ids.size)[inverse.reshape(pred.shape)]


@pytest.mark.parametrize('names', [('perfect',), ('shifted', 'split'),
                                   ('extra', 'crowd_and_void', 'noisy')])
def test_equals_cocoeval(groundtruth_split, scenarios, names):
    rng = np.random.default_rng(len(names))
    groundtruths, predictions, score_maps = [], [], []
    for name in names:
        for gt in groundtruth_split.panoptic:
            pred = scenarios[name](gt, rng)
            groundtruths.append(gt)
            predictions.append(pred)
            score_maps.append(_score_map(pred, rng))
    metric = InstanceAP(NUM_CLASSES, IGNORE_LABEL, LABEL_DIVISOR, THING_CLASSES)
    for gt, pred, scores in zip(groundtruths, predictions, score_maps):
        metric.update_state(gt, pred, scores)
    result = metric.result()
    expected = _cocoeval_stats(groundtruths, predictions, score_maps)
    for name, value in zip(STAT_NAMES, expected):
        if value < 0:
            assert np.isnan(result[name]), name
        else:
            assert result[name] == pytest.approx(value, abs=1e-12), name
    if names == ('perfect',):
        assert result['ap'] == pytest.approx(1.0)
    assert np.all(np.isnan(result['per_class_ap'][:11]))


def test_no_detections_gives_zero_ap():
    gt = np.full((8, 8), 13 * LABEL_DIVISOR + 1, np.int64)
    metric = InstanceAP(NUM_CLASSES, IGNORE_LABEL, LABEL_DIVISOR, THING_CLASSES)
    metric.update_state(gt, np.zeros_like(gt), np.zeros(gt.shape))
    result = metric.result()
    assert result['ap'] == 0.0 and result['ap50'] == 0.0
