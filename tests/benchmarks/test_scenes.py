"""Benchmark inputs from the synthetic scenes, on hand-worked maps."""

import numpy as np
import pytest

from deeplab2.benchmarks import scenes
from deeplab2.data import synthetic_scene


def test_panoptic_label_encodes_train_ids_instances_crowd_and_void():
    label_ids = np.array([[7, 26, 26], [24, 1, 0]], np.uint8)
    instance_ids = np.array([[7, 26000, 26002], [24, 1, 0]], np.uint16)
    # road 0; car 13 instances k=0, 2 -> 1, 3; a person crowd; void.
    np.testing.assert_array_equal(
        scenes.panoptic_label(label_ids, instance_ids),
        [[0, 13001, 13003], [11000, 255000, 255000]])


def test_scene_is_the_demo_generator_seeded_by_seed():
    rgb, panoptic = scenes.scene(3, 64, 128)
    expected = synthetic_scene.draw_scene(np.random.default_rng(3), 64, 128)
    np.testing.assert_array_equal(rgb, expected[0])
    np.testing.assert_array_equal(
        panoptic, scenes.panoptic_label(*expected[1:]))


def test_more_things_give_more_thing_segments():
    counts = [len(scenes.thing_segments(scenes.scene(0, 129, 257, n)[1]))
              for n in (2, 30)]
    assert counts[0] < 8 < 25 < counts[1]


def _one_car():
    panoptic = np.zeros([9, 9], np.int32)  # road
    panoptic[2:5, 2:5] = 13001  # a car, centroid (3, 3)
    panoptic[8, :] = 255000  # void
    return panoptic


def test_network_outputs_are_right_about_the_scene():
    outputs = scenes.network_outputs(_one_car())
    probs = outputs['semantic_probs']
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    expected = np.zeros([9, 9], np.int64)  # void taken for road
    expected[2:5, 2:5] = 13
    np.testing.assert_array_equal(probs.argmax(-1), expected)
    heatmap = outputs['center_heatmap']
    assert heatmap[3, 3] == 1 and heatmap.argmax() == 3 * 9 + 3
    np.testing.assert_allclose(heatmap[3, 4], np.exp(-1 / 128), rtol=1e-6)
    offsets = outputs['offsets']
    np.testing.assert_array_equal(offsets[2, 2], [1, 1])
    np.testing.assert_array_equal(offsets[4, 3], [-1, 0])
    assert not offsets[_one_car() != 13001].any()


def test_flawed_prediction_misses_merges_and_adds():
    gt = np.zeros([40, 60], np.int32)
    gt[:, 30:] = 2000  # building
    gt[10:20, 5:15] = 13001  # missed
    gt[22:30, 5:15] = 13002  # merged into 13001
    gt[10:20, 35:45] = 13003  # kept, with an extra detection beside it
    gt[36:] = 255000  # void
    prediction = scenes.flawed_prediction(gt)
    assert set(np.unique(prediction)) == {0, 1000, 2000, 13001, 13003,
                                          13502}
    shifted = np.roll(gt, (4, -6), axis=(0, 1))
    np.testing.assert_array_equal(prediction == 13001, shifted == 13002)
    np.testing.assert_array_equal(prediction[shifted == 13001], 1000)
    extra = np.argwhere(prediction == 13502)
    assert extra[:, 1].min() >= 38  # beside the kept car, to its right


def test_tfrecords_hold_the_scenes(tmp_path):
    import tensorflow as tf
    from deeplab2 import common
    pattern = scenes.write_tfrecords(str(tmp_path), num_examples=3,
                                     height=40, width=60, num_shards=2,
                                     seed=5)
    files = sorted(tf.io.gfile.glob(pattern))
    assert [f.rsplit('/', 1)[1] for f in files] == [
        'bench-00000-of-00002.tfrecord', 'bench-00001-of-00002.tfrecord']
    labels = {}
    for record in tf.data.TFRecordDataset(files):
        feature = tf.train.Example.FromString(
            record.numpy()).features.feature
        name = feature[common.KEY_IMAGE_FILENAME].bytes_list.value[0]
        labels[name.decode()] = np.frombuffer(
            feature[common.KEY_ENCODED_LABEL].bytes_list.value[0],
            '<i4').reshape(40, 60)
    assert sorted(labels) == [f'synthetic_{i:06d}' for i in range(3)]
    for index in range(3):
        np.testing.assert_array_equal(labels[f'synthetic_{index:06d}'],
                                      scenes.scene(5 + index, 40, 60)[1])


@pytest.mark.parametrize('count', [1, 7, 60])
def test_crowded_scene_has_exactly_the_instances_asked_for(count):
    panoptic = scenes.crowded_scene(129, 257, count)
    segments = scenes.thing_segments(panoptic)
    assert len(segments) == count
    assert all(segment % scenes.DIVISOR for segment in segments)
    # Each instance is one box (one connected piece): its pixel count is
    # its bounding box's area.
    for segment in segments:
        ys, xs = np.nonzero(panoptic == segment)
        assert len(ys) == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)


def test_crowded_scene_keeps_its_thing_area_whatever_the_count():
    areas = [np.isin(scenes.crowded_scene(257, 513, n) // scenes.DIVISOR,
                     scenes.THING_CLASSES).mean() for n in (10, 100)]
    assert 0.2 < min(areas) and max(areas) < 0.4


def test_crowded_scene_refuses_more_instances_than_fit():
    with pytest.raises(ValueError, match='500 instances do not fit'):
        scenes.crowded_scene(20, 40, 500)
