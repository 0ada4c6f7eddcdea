"""Panoptic map <-> COCO panoptic PNG + segments_info."""

import numpy as np
import pytest

from deeplab2.evaluation import cityscapes_format


def test_segments_round_trip(tmp_path):
    panoptic = np.zeros((20, 30), np.int64)
    panoptic[2:6, 3:9] = 13001
    panoptic[10:12, 20:29] = 13002
    panoptic[15, 1] = 13002
    panoptic[18:, :] = 7000
    panoptic[:, 29] = 255000
    category_ids = np.arange(19) + 7  # e.g. train id -> another id space
    segment_ids, segments = cityscapes_format.panoptic_to_segments(
        panoptic, 19, 255, 1000, category_ids=category_ids)
    path = str(tmp_path / 'a.png')
    cityscapes_format.write_panoptic_png(path, segment_ids)
    read = cityscapes_format.read_panoptic_png(path)
    np.testing.assert_array_equal(read, segment_ids)
    assert (read == 0).tolist() == (panoptic == 255000).tolist()
    assert len(segments) == 4
    for segment in segments:
        mask = read == segment['id']
        rows, cols = np.nonzero(mask)
        assert segment['area'] == mask.sum()
        assert segment['bbox'] == [cols.min(), rows.min(),
                                   np.ptp(cols) + 1, np.ptp(rows) + 1]
        source = np.unique(panoptic[mask])
        assert source.size == 1
        assert segment['category_id'] == source[0] // 1000 + 7
        assert segment['id'] == segment['category_id'] * 1000 + source[0] % 1000 + 1


def test_json_written(tmp_path):
    import json
    path = str(tmp_path / 'p.json')
    annotation = cityscapes_format.annotation('a_1_2', 'a.png', [])
    cityscapes_format.write_panoptic_json(path, [annotation], categories=[])
    assert json.load(open(path)) == {'annotations': [annotation],
                                     'categories': []}


def test_rgb_encoding():
    ids = np.array([[0, 1, 256, 65536 + 2]])
    rgb = cityscapes_format.segment_ids_to_rgb(ids)
    assert rgb.tolist() == [[[0, 0, 0], [1, 0, 0], [0, 1, 0], [2, 0, 1]]]
    np.testing.assert_array_equal(cityscapes_format.rgb_to_segment_ids(rgb), ids)


def test_bad_category_ids_named():
    with pytest.raises(ValueError, match='one id per class'):
        cityscapes_format.panoptic_to_segments(np.zeros((2, 2), int), 19, 255,
                                               1000, category_ids=[1, 2])
