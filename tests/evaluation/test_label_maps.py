"""The checks, pixel runs and segment tables the metrics share, on
hand-worked maps."""

import numpy as np
import pytest

from deeplab2.evaluation import label_maps


def test_image_label_names_the_image_or_the_call():
    assert label_maps.image_label('bonn_3', 7) == "'bonn_3'"
    assert label_maps.image_label(None, 7) == '#7'


def test_check_label_map_accepts_2d_integer_maps_only():
    checked = label_maps.check_label_map([[1, 2], [3, 4]], 'semantic map',
                                         "'a'")
    assert isinstance(checked, np.ndarray) and checked.shape == (2, 2)
    with pytest.raises(ValueError, match=r"Image 'a': semantic map must be a "
                                         r'2-D .* shape \(1, 2, 2\)'):
        label_maps.check_label_map(np.zeros((1, 2, 2), int), 'semantic map',
                                   "'a'")
    with pytest.raises(ValueError, match='integer ids, got dtype float32'):
        label_maps.check_label_map(np.zeros((2, 2), np.float32), 'map', "'a'")


def test_check_same_shape_names_both_shapes():
    label_maps.check_same_shape(np.zeros((2, 3)), np.zeros((2, 3)), '#0')
    with pytest.raises(ValueError, match=r'prediction shape \(3, 2\) differs '
                                         r'from ground-truth shape \(2, 3\)'):
        label_maps.check_same_shape(np.zeros((2, 3)), np.zeros((3, 2)), '#0')


@pytest.mark.parametrize('num_classes,ignore_label,expected', [
    (19, 255, 256 * 1000),  # the ignore label lies above the classes
    (19, 0, 19 * 1000),     # ... or among them
])
def test_id_bound(num_classes, ignore_label, expected):
    assert label_maps.id_bound(num_classes, ignore_label, 1000) == expected


def test_check_panoptic_ids():
    # 3 classes, divisor 10, ignore 9: ids 0..29 and 90..99 are known.
    valid = np.array([[0, 12], [29, 95]])
    label_maps.check_panoptic_ids(valid, 'prediction', '#0', 3, 9, 10)
    label_maps.check_panoptic_ids(np.zeros((0, 0), int), 'prediction', '#0',
                                  3, 9, 10)
    with pytest.raises(ValueError, match='negative id -1'):
        label_maps.check_panoptic_ids(np.array([[-1, 0]]), 'prediction', '#0',
                                      3, 9, 10)
    # 31 // 10 = 3 and 45 // 10 = 4: neither a class nor the ignore label.
    with pytest.raises(ValueError, match=r'unknown class ids \[3, 4\]'):
        label_maps.check_panoptic_ids(np.array([[31, 45], [95, 0]]),
                                      'prediction', '#0', 3, 9, 10)


def test_combine_semantic_instance():
    combined = label_maps.combine_semantic_instance(
        [[1, 2], [0, 2]], [[0, 3], [0, 999]], 1000)
    assert combined.dtype == np.int64
    assert combined.tolist() == [[1000, 2003], [0, 2999]]
    with pytest.raises(ValueError, match=r'\[0, 1000\).* got \[-1, 0\]'):
        label_maps.combine_semantic_instance([[1, 1]], [[-1, 0]], 1000)
    with pytest.raises(ValueError, match="Image 'x'.*differs"):
        label_maps.combine_semantic_instance([[1, 1]], [[0]], 1000,
                                             image_name='x')


def test_segment_table_by_hand():
    panoptic = np.array([[5, 5, 0], [7, 5, 0]])
    ids, areas, index = label_maps.segment_table(panoptic, 10, row_scale=3)
    assert ids.tolist() == [0, 5, 7]
    assert areas.tolist() == [2, 3, 1]
    # Row of each pixel's segment (0 -> 0, 5 -> 1, 7 -> 2), times 3.
    assert index.tolist() == [3, 3, 0, 6, 3, 0]


def test_segment_table_weights_are_run_lengths():
    """Runs of `pixel_runs`: the values 5, 0, 7 over 4, 1 and 2 pixels."""
    ids, areas, index = label_maps.segment_table(
        np.array([5, 0, 7]), 10, weights=np.array([4, 1, 2]))
    assert ids.tolist() == [0, 5, 7] and areas.tolist() == [1, 4, 2]
    assert index.tolist() == [1, 0, 2]


def test_run_values_takes_each_run_start():
    array = np.array([[4, 4, 8], [8, 8, 1]])
    runs = (np.array([0, 2, 5]), np.array([2, 3, 1]))
    assert label_maps.run_values(array, runs).tolist() == [4, 8, 1]
    assert label_maps.run_values(array, None).tolist() == [4, 4, 8, 8, 8, 1]


def test_panoptic_segments_checks_the_classes():
    # 3 classes, divisor 10, ignore 9 (id bound 100).
    ids, areas, _ = label_maps.panoptic_segments(
        np.array([[12, 12], [90, 0]]), 'prediction', '#0', 3, 9, 10)
    assert ids.tolist() == [0, 12, 90] and areas.tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match=r'unknown class ids \[5\]'):
        label_maps.panoptic_segments(np.array([[52, 0]]), 'prediction', '#0',
                                     3, 9, 10)
    # At or above the bound: bincount would grow, the class check names it.
    with pytest.raises(ValueError, match=r'unknown class ids \[12\]'):
        label_maps.panoptic_segments(np.array([[120, 0]]), 'prediction',
                                     '#0', 3, 9, 10)
    with pytest.raises(ValueError, match='negative id -3'):
        label_maps.panoptic_segments(np.array([[-3, 0]]), 'prediction', '#0',
                                     3, 9, 10)


def test_pixel_runs_by_hand():
    a = np.array([[1, 1, 2], [2, 2, 2]])
    b = np.array([[0, 0, 0], [0, 5, 5]])
    starts, lengths = label_maps.pixel_runs([a, b], worthwhile=1.0)
    # Flattened: a = 1 1 2 2 2 2, b = 0 0 0 0 5 5 -> runs [0,2) [2,4) [4,6).
    assert starts.tolist() == [0, 2, 4] and lengths.tolist() == [2, 2, 2]
    assert label_maps.pixel_runs([a, b], worthwhile=0.25) is None
