"""PanopticQuality against cityscapesscripts' panoptic evaluator and by hand."""

import numpy as np
import pytest
from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs_pq

from deeplab2.evaluation import PanopticQuality
from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format

from deeplab2.data.cityscapes_labels import (IGNORE_LABEL, LABEL_DIVISOR,
                                             NUM_CLASSES, THING_CLASSES)

VOID = IGNORE_LABEL * LABEL_DIVISOR


def _metric():
    return PanopticQuality(NUM_CLASSES, IGNORE_LABEL, LABEL_DIVISOR,
                           THING_CLASSES)


def _cityscapes_pq(split, predictions, folder, monkeypatch):
    """Writes predictions in COCO panoptic format, runs the official tool."""
    folder.mkdir()
    annotations = []
    for image_id, prediction in zip(split.image_ids, predictions):
        segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
            prediction, NUM_CLASSES, IGNORE_LABEL, LABEL_DIVISOR,
            image_name=image_id)
        file_name = f'{image_id}_panoptic.png'
        panoptic_png.write(str(folder / file_name),
                                             segment_ids)
        annotations.append(coco_panoptic_format.annotation(image_id, file_name,
                                                        segments))
    json_path = folder.parent / (folder.name + '.json')
    coco_panoptic_format.write_panoptic_json(str(json_path), annotations)
    # One process: the same per-image rules without a worker pool.
    monkeypatch.setattr(
        cs_pq, 'pq_compute_multi_core',
        lambda pairs, gt, pred, cats: cs_pq.pq_compute_single_core(
            0, pairs, gt, pred, cats))
    return cs_pq.evaluatePanoptic(str(split.json_path), str(split.folder),
                                  str(json_path), str(folder),
                                  str(folder.parent / 'result.json'))


def test_equals_cityscapes_evaluator(groundtruth_split, scenario, scenarios,
                                     tmp_path, monkeypatch):
    rng = np.random.default_rng(sorted(scenarios).index(scenario))
    predictions = [scenarios[scenario](gt, rng)
                   for gt in groundtruth_split.panoptic]
    expected = _cityscapes_pq(groundtruth_split, predictions,
                              tmp_path / 'pred', monkeypatch)

    metric = _metric()
    for image_id, gt, prediction in zip(groundtruth_split.image_ids,
                                        groundtruth_split.panoptic,
                                        predictions):
        metric.update_state(gt, prediction, image_name=image_id)
    result = metric.result()

    for suffix, name in (('', 'All'), ('_thing', 'Things'),
                         ('_stuff', 'Stuff')):
        for key in ('pq', 'sq', 'rq'):
            assert result[key + suffix] == pytest.approx(
                expected[name][key], abs=1e-6), (key + suffix)
        assert result['num_classes' + suffix] == expected[name]['n']
    for class_id in range(NUM_CLASSES):
        official = expected['per_class'][class_id]
        for key in ('pq', 'sq', 'rq'):
            ours = result['per_class_' + key][class_id]
            if result['per_class_valid'][class_id]:
                assert ours == pytest.approx(official[key], abs=1e-6)
            else:
                assert np.isnan(ours) and official[key] == 0.0
    if scenario == 'perfect':
        assert result['pq'] == pytest.approx(1.0)


def test_hand_worked_image():
    """2 stuff + 3 thing segments with known tp/fp/fn and IoUs."""
    sky, car, person = 10 * LABEL_DIVISOR, 13 * LABEL_DIVISOR, 11 * LABEL_DIVISOR
    gt = np.full((4, 10), sky, np.int64)
    gt[2:, 0:4] = car + 1        # 8 px
    gt[2:, 4:6] = person          # person crowd, 4 px
    gt[2:, 6:10] = VOID           # 8 px void
    pred = gt.copy()
    pred[2:, 0:3] = car + 1       # car: iou 6/8 -> tp
    pred[2:, 3] = sky             # sky grows by 2: iou 20/22 -> tp
    pred[2:, 4:6] = person + 5    # on crowd, same class -> ignored
    pred[2:, 6:9] = car + 2       # on void -> ignored
    pred[0, 0] = person + 9       # 1 px person: fp; sky loses a pixel
    metric = _metric()
    metric.update_state(gt, pred)
    result = metric.result()
    assert result['per_class_tp'][[10, 11, 13]].tolist() == [1, 0, 1]
    assert result['per_class_fp'][[10, 11, 13]].tolist() == [0, 1, 0]
    assert result['per_class_fn'].sum() == 0
    sky_iou, car_iou = 19 / 22, 6 / 8
    assert result['per_class_pq'][10] == pytest.approx(sky_iou)
    assert result['per_class_pq'][13] == pytest.approx(car_iou)
    assert result['per_class_pq'][11] == 0.0
    assert result['pq'] == pytest.approx((sky_iou + car_iou) / 3)
    assert result['pq_stuff'] == pytest.approx(sky_iou)
    assert result['sq_thing'] == pytest.approx(car_iou / 2)
    assert result['rq_thing'] == pytest.approx(0.5)
    assert result['num_classes'] == 3
    assert np.isnan(result['per_class_pq'][0])


def test_streaming_merge_and_reset(groundtruth_split, scenarios):
    rng = np.random.default_rng(0)
    predictions = [scenarios['noisy'](gt, rng) for gt in groundtruth_split.panoptic]
    whole, parts = _metric(), [_metric(), _metric()]
    for k, (gt, pred) in enumerate(zip(groundtruth_split.panoptic, predictions)):
        whole.update_state(gt, pred)
        parts[k % 2].update_state(gt, pred)
    parts[0].merge_state(parts[1])
    assert parts[0].result()['pq'] == pytest.approx(whole.result()['pq'])
    assert parts[0].num_images == len(predictions)
    whole.reset_state()
    assert whole.num_images == 0 and whole.result()['pq'] == 0.0


def test_accepts_other_integer_dtypes():
    gt = np.full((3, 3), 11001, np.int32)
    metric = _metric()
    metric.update_state(gt, gt.astype(np.uint32))
    assert metric.result()['pq_thing'] == 1.0


@pytest.mark.parametrize('on_void, is_false_positive', [(2, True), (3, False)])
def test_more_than_half_on_void_is_not_a_false_positive(on_void,
                                                        is_false_positive):
    gt = np.full((1, 8), 0, np.int64)  # road
    gt[0, :on_void] = VOID
    pred = gt.copy()
    pred[0, :4] = 13 * LABEL_DIVISOR + 1  # 4-pixel car, `on_void` on void
    metric = _metric()
    metric.update_state(gt, pred)
    assert metric.result()['per_class_fp'][13] == int(is_false_positive)


def test_run_and_pixel_counting_agree(groundtruth_split, scenarios,
                                      monkeypatch):
    """Counting per run of constant pixels (the fast path) and per pixel
    (taken for noise-like maps) give the same counts."""
    from deeplab2.evaluation import label_maps
    rng = np.random.default_rng(5)
    pairs = [(gt, scenarios[name](gt, rng)) for gt in groundtruth_split.panoptic
             for name in ('shifted', 'noisy', 'crowd_and_void')]
    assert label_maps.pixel_runs(list(pairs[0])) is not None
    by_runs = _metric()
    for gt, prediction in pairs:
        by_runs.update_state(gt, prediction)
    monkeypatch.setattr(label_maps, 'pixel_runs', lambda maps: None)
    by_pixels = _metric()
    for gt, prediction in pairs:
        by_pixels.update_state(gt, prediction)
    for name in ('tp', 'fp', 'fn'):
        np.testing.assert_array_equal(getattr(by_runs, name),
                                      getattr(by_pixels, name))
    np.testing.assert_allclose(by_runs.iou_sum, by_pixels.iou_sum, rtol=1e-12)

