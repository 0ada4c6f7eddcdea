"""The evaluator on a hand-made 2x2 image padded to 3x3, with a fake model
whose predictions are fixed maps: which metric reads which map, the crop
back to the raw size, the result keys and the metric plug-in table."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import datasets
from deeplab2.trainer import evaluator as evaluator_lib

# Class 0 is stuff, class 1 a thing; panoptic = class * 1000 + instance.
_DESCRIPTOR = datasets.DatasetDescriptor(
    name='two_classes', splits_to_sizes={'val': 1}, num_classes=2,
    ignore_label=255, panoptic_label_divisor=1000,
    class_has_instances_list=(1,), colormap='cityscapes')

# The image is 2x2 (top: stuff, bottom: one thing instance), padded to 3x3
# as the eval pipeline pads at the bottom/right.
_GT_SEMANTIC = np.array([[0, 0], [1, 1]], np.int32)
_GT_PANOPTIC = np.array([[0, 0], [1001, 1001]], np.int32)


def _padded(values, fill):
    padded = np.full((3, 3), fill, values.dtype)
    padded[:2, :2] = values
    return padded


def _batch():
    return {
        common.IMAGE: np.zeros((1, 3, 3, 3), np.float32),
        common.IMAGE_NAME: np.array([b'frame_0']),
        common.GT_SIZE_RAW: np.array([[2, 2]], np.int32),
        common.GT_SEMANTIC_RAW: _GT_SEMANTIC[None],
        common.GT_PANOPTIC_RAW: _GT_PANOPTIC[None],
    }


# Semantic: all class 0 inside the image (IoU 2/4 for class 0, 0 for class
# 1: mIoU 0.25); panoptic: exactly the ground truth (PQ 1, AP 1). The
# padding holds class 1 / a second instance: counted, they would change
# every number.
_PREDICTIONS = {
    common.PRED_SEMANTIC_KEY: _padded(np.zeros((2, 2), np.int32), 1),
    common.PRED_PANOPTIC_KEY: _padded(_GT_PANOPTIC, 1002),
    common.PRED_INSTANCE_SCORES_KEY: _padded(
        np.array([[0., 0.], [0.9, 0.9]], np.float32), 0.9),
}


def _evaluate(prediction_keys, batch=None, **kwargs):
    def inference(images):
        batch = tf.shape(images)[0]
        return {key: tf.repeat(tf.constant(_PREDICTIONS[key])[None], batch,
                               axis=0)
                for key in prediction_keys}

    evaluator = evaluator_lib.Evaluator(tf.distribute.get_strategy(),
                                        inference, _DESCRIPTOR)
    return evaluator.evaluate(
        tf.data.Dataset.from_tensors(batch or _batch()), **kwargs)


def test_panoptic_model_gets_every_metric_fed_its_own_maps():
    images = []
    results = _evaluate(list(_PREDICTIONS),
                        on_image=lambda *args: images.append(args))
    assert results['miou'] == pytest.approx(0.25)
    np.testing.assert_allclose(results['per_class_iou'], [0.5, 0.0])
    assert results['pq'] == pytest.approx(1.0)
    assert results['ap50'] == pytest.approx(1.0)
    # on_image sees the maps cropped to the raw 2x2 image.
    [(name, image, predictions, labels)] = images
    assert name == 'frame_0' and image.shape == (2, 2, 3)
    np.testing.assert_array_equal(predictions[common.PRED_PANOPTIC_KEY],
                                  _GT_PANOPTIC)
    np.testing.assert_array_equal(labels[common.GT_SEMANTIC_RAW],
                                  _GT_SEMANTIC)


def test_result_keys_are_those_of_each_metric_in_table_order():
    # What train_and_eval logs and writes to eval_results.json.
    assert list(_evaluate(list(_PREDICTIONS))) == [
        'miou', 'per_class_iou', 'per_class_valid', 'pixel_accuracy',
        'confusion_matrix',
        'pq', 'sq', 'rq', 'num_classes', 'pq_thing', 'sq_thing', 'rq_thing',
        'num_classes_thing', 'pq_stuff', 'sq_stuff', 'rq_stuff',
        'num_classes_stuff', 'per_class_pq', 'per_class_sq', 'per_class_rq',
        'per_class_tp', 'per_class_fp', 'per_class_fn', 'per_class_iou_sum',
        'ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large', 'ar_1',
        'ar_10', 'ar_100', 'ar_small', 'ar_medium', 'ar_large',
        'per_class_ap']


def test_semantic_only_model_gets_miou_alone():
    results = _evaluate([common.PRED_SEMANTIC_KEY])
    assert results['miou'] == pytest.approx(0.25)
    assert 'pq' not in results and 'ap' not in results


def test_semantic_only_dataset_gets_miou_alone_from_a_panoptic_model():
    """Ground truth without panoptic labels (a semantic-only dataset's
    eval samples): PQ and AP, which read them, are not built, whatever the
    model predicts."""
    batch = _batch()
    del batch[common.GT_PANOPTIC_RAW]
    results = _evaluate(list(_PREDICTIONS), batch=batch)
    assert results['miou'] == pytest.approx(0.25)
    assert 'pq' not in results and 'ap' not in results
    assert set(evaluator_lib.build_metrics(
        _DESCRIPTOR, list(_PREDICTIONS), [common.GT_SEMANTIC_RAW])) == {
            'miou'}


def test_metrics_are_plugins_in_the_table(monkeypatch):
    assert list(evaluator_lib.METRICS) == ['miou', 'pq', 'ap']
    assert set(evaluator_lib.build_metrics(
        _DESCRIPTOR, [common.PRED_SEMANTIC_KEY])) == {'miou'}

    class PixelCount:
        """Counts the ground-truth pixels it is fed."""

        def __init__(self):
            self.pixels = 0

        def update_state(self, groundtruth, prediction, image_name=None):
            assert groundtruth.shape == prediction.shape
            self.pixels += groundtruth.size

        def result(self):
            return {'pixels': self.pixels}

    # Adding a metric is adding an entry.
    monkeypatch.setitem(evaluator_lib.METRICS, 'pixels',
                        evaluator_lib.MetricPlugin(
                            lambda descriptor: PixelCount(),
                            common.GT_SEMANTIC_RAW,
                            (common.PRED_SEMANTIC_KEY,)))
    results = _evaluate([common.PRED_SEMANTIC_KEY])
    assert results['pixels'] == 4  # The 2x2 image, not the 3x3 padding.
    assert results['miou'] == pytest.approx(0.25)


def test_restore_size_crops_the_padding_then_resizes_to_the_raw_size():
    padded = np.arange(9).reshape(3, 3)
    np.testing.assert_array_equal(
        evaluator_lib.restore_size(padded, (2, 2), (2, 2)), [[0, 1], [3, 4]])
    # A 2x2 resize of a 4x4 raw image maps back by nearest neighbour.
    np.testing.assert_array_equal(
        evaluator_lib.restore_size(padded, (2, 2), (4, 4)),
        [[0, 0, 1, 1], [0, 0, 1, 1], [3, 3, 4, 4], [3, 3, 4, 4]])


def test_per_class_values_are_keyed_by_class_name():
    """The hand-worked case above: road (stuff) IoU 2/4, car (thing) IoU 0;
    both PQ/SQ/RQ 1; AP 1 for the car, none for stuff."""
    import dataclasses
    named = dataclasses.replace(_DESCRIPTOR, class_names=('road', 'car'))
    by_name = evaluator_lib.per_class_by_name(_evaluate(list(_PREDICTIONS)),
                                              named)
    # COCO's 101-point precision average: 1 up to rounding.
    assert by_name['car'].pop('ap') == pytest.approx(1.0)
    assert by_name == {
        'road': {'iou': 0.5, 'pq': 1.0, 'sq': 1.0, 'rq': 1.0},
        'car': {'iou': 0.0, 'pq': 1.0, 'sq': 1.0, 'rq': 1.0}}


def test_per_class_of_a_semantic_only_model_is_iou_alone():
    by_name = evaluator_lib.per_class_by_name(
        _evaluate([common.PRED_SEMANTIC_KEY]), _DESCRIPTOR)
    # No class names: the labels as text.
    assert by_name == {'0': {'iou': 0.5}, '1': {'iou': 0.0}}


def test_per_class_leaves_out_classes_no_metric_scored():
    results = {'per_class_iou': np.array([0.25, np.nan]),
               'per_class_pq': np.array([np.nan, np.nan])}
    named = datasets.DatasetDescriptor(
        name='n', splits_to_sizes={}, num_classes=2, ignore_label=255,
        panoptic_label_divisor=1000, class_has_instances_list=(),
        colormap='cityscapes', class_names=('sky', 'sea'))
    assert evaluator_lib.per_class_by_name(results, named) == {
        'sky': {'iou': 0.25}}
