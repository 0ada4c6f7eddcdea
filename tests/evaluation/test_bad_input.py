"""Bad inputs raise ValueErrors that name the image."""

import numpy as np
import pytest

from deeplab2.evaluation import InstanceAP, MeanIoU, PanopticQuality
from deeplab2.evaluation import coco_panoptic_format
from deeplab2.evaluation.label_maps import combine_semantic_instance

THINGS = range(11, 19)


def _metrics():
    return {
        'pq': lambda gt, pred, **kw: PanopticQuality(
            19, 255, 1000, THINGS).update_state(gt, pred, **kw),
        'ap': lambda gt, pred, **kw: InstanceAP(19, 255, 1000, THINGS)
        .update_state(gt, pred, np.ones(np.shape(pred)), **kw),
    }


@pytest.mark.parametrize('metric', ['pq', 'ap'])
def test_shape_mismatch(metric):
    update = _metrics()[metric]
    with pytest.raises(ValueError, match=r"'frankfurt_1'.*shape \(4, 5\).*\(4, 6\)"):
        update(np.zeros((4, 6), int), np.zeros((4, 5), int),
               image_name='frankfurt_1')


@pytest.mark.parametrize('metric', ['pq', 'ap'])
@pytest.mark.parametrize('where', ['gt', 'pred'])
def test_unknown_class(metric, where):
    update = _metrics()[metric]
    good, bad = np.zeros((3, 3), int), np.zeros((3, 3), int)
    bad[1, 1] = 19 * 1000 + 2  # class 19 of 19
    args = (bad, good) if where == 'gt' else (good, bad)
    with pytest.raises(ValueError, match=r"'lindau_7'.*unknown class ids \[19\]"):
        update(*args, image_name='lindau_7')


def test_negative_and_float_ids():
    metric = PanopticQuality(19, 255, 1000, THINGS)
    with pytest.raises(ValueError, match="'x'.*negative id -1"):
        metric.update_state(np.zeros((2, 2), int), -np.ones((2, 2), int),
                            image_name='x')
    with pytest.raises(ValueError, match="'x'.*integer ids"):
        metric.update_state(np.zeros((2, 2)), np.zeros((2, 2), int),
                            image_name='x')
    with pytest.raises(ValueError, match="'x'.*2-D"):
        metric.update_state(np.zeros((2, 2, 1), int), np.zeros((2, 2), int),
                            image_name='x')


def test_default_name_is_call_index():
    metric = PanopticQuality(19, 255, 1000, THINGS)
    metric.update_state(np.zeros((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match='Image #1'):
        metric.update_state(np.zeros((2, 2), int), np.zeros((3, 2), int))


def test_instance_ids_beyond_divisor():
    with pytest.raises(ValueError, match=r"'bonn_3'.*\[0, 1000\)"):
        combine_semantic_instance(np.full((2, 2), 11), np.full((2, 2), 1000),
                                  1000, image_name='bonn_3')
    combined = combine_semantic_instance(np.full((1, 1), 11), np.full((1, 1), 7),
                                         1000)
    assert combined.tolist() == [[11007]]


def test_mean_iou_errors():
    metric = MeanIoU(19, 255)
    with pytest.raises(ValueError, match=r"'ulm_2'.*unknown class ids \[19, 40\]"):
        metric.update_state(np.zeros((2, 2), int), [[19, 40], [0, 255]],
                            image_name='ulm_2')
    with pytest.raises(ValueError, match=r"'ulm_2'.*shape"):
        metric.update_state(np.zeros((2, 2), int), np.zeros((2, 1), int),
                            image_name='ulm_2')


def test_instance_scores_shape():
    metric = InstanceAP(19, 255, 1000, THINGS)
    with pytest.raises(ValueError, match=r"'aachen_0'.*instance_scores shape"):
        metric.update_state(np.zeros((2, 2), int), np.zeros((2, 2), int),
                            np.zeros((2, 3)), image_name='aachen_0')


def test_segments_writer_names_image():
    with pytest.raises(ValueError, match=r"'koeln_4'.*unknown class"):
        coco_panoptic_format.panoptic_to_segments(np.full((2, 2), 30000), 19, 255,
                                               1000, image_name='koeln_4')


def test_bad_constructor_values():
    with pytest.raises(ValueError, match='thing_class_ids'):
        PanopticQuality(19, 255, 1000, [19])
    with pytest.raises(ValueError, match='offset'):
        PanopticQuality(19, 255, 1000, THINGS, offset=1000)
