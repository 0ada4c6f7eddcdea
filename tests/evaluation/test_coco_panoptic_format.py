"""Panoptic map <-> COCO panoptic PNG + segments_info."""

import numpy as np
import pytest

from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format


def test_segments_round_trip(tmp_path):
    panoptic = np.zeros((20, 30), np.int64)
    panoptic[2:6, 3:9] = 13001
    panoptic[10:12, 20:29] = 13002
    panoptic[15, 1] = 13002
    panoptic[18:, :] = 7000
    panoptic[:, 29] = 255000
    category_ids = np.arange(19) + 7  # e.g. train id -> another id space
    segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
        panoptic, 19, 255, 1000, category_ids=category_ids)
    path = str(tmp_path / 'a.png')
    panoptic_png.write(path, segment_ids)
    read = panoptic_png.read(path)
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
    annotation = coco_panoptic_format.annotation('a_1_2', 'a.png', [])
    coco_panoptic_format.write_panoptic_json(path, [annotation], categories=[])
    assert json.load(open(path)) == {'annotations': [annotation],
                                     'categories': []}


def test_bad_category_ids_named():
    with pytest.raises(ValueError, match='one id per class'):
        coco_panoptic_format.panoptic_to_segments(np.zeros((2, 2), int), 19, 255,
                                               1000, category_ids=[1, 2])


@pytest.mark.parametrize('from_png', [False, True])
@pytest.mark.parametrize('id_offset', [0, 5_000_000])
def test_segments_to_panoptic_reads_back_by_hand(id_offset, from_png,
                                                 tmp_path):
    """Segments listed in any order, with ids a tool chose; an id_offset
    above the dense-table limit takes the sorted-search path. From a PNG,
    read_panoptic maps the ids while decoding (dense table) or after."""
    segment_ids = np.array([[0, 41, 41, 7],
                            [9, 9, 41, 7],
                            [12, 12, 3, 3],
                            [50, 50, 7, 41]]) + id_offset
    segment_ids[0, 0] = 0  # unlisted: void
    segments = [
        {'id': 7 + id_offset, 'category_id': 13, 'iscrowd': 0},
        {'id': 41 + id_offset, 'category_id': 0, 'iscrowd': 0},
        {'id': 9 + id_offset, 'category_id': 13, 'iscrowd': 0},
        {'id': 3 + id_offset, 'category_id': 11, 'iscrowd': 1},
        {'id': 12 + id_offset, 'category_id': 11, 'iscrowd': 0},
    ]
    if from_png:
        path = str(tmp_path / 'segments.png')
        panoptic_png.write(path, segment_ids)
        panoptic = coco_panoptic_format.read_panoptic(
            path, segments, 1000, 255, range(11, 19))
    else:
        panoptic = coco_panoptic_format.segments_to_panoptic(
            segment_ids, segments, 1000, 255, range(11, 19))
    # Things numbered per class in list order; crowd keeps instance 0;
    # unlisted ids (0, and 50 above every listed one) are void.
    assert panoptic.tolist() == [[255000, 0, 0, 13001],
                                 [13002, 13002, 0, 13001],
                                 [11001, 11001, 11000, 11000],
                                 [255000, 255000, 13001, 0]]


def test_segments_to_panoptic_maps_categories_and_names_bad_ones():
    segment_ids = np.array([[26, 26, 7]])
    segments = [{'id': 26, 'category_id': 26}, {'id': 7, 'category_id': 7}]
    panoptic = coco_panoptic_format.segments_to_panoptic(
        segment_ids, segments, 1000, 255, [13],
        category_to_class={26: 13, 7: 0})
    assert panoptic.tolist() == [[13001, 13001, 0]]
    with pytest.raises(ValueError, match=r'x\.png: segment 7 has unknown '
                       r'category_id 7'):
        coco_panoptic_format.segments_to_panoptic(
            segment_ids, segments, 1000, 255, [13],
            category_to_class={26: 13}, source='x.png')
    with pytest.raises(ValueError, match='lists an id twice'):
        coco_panoptic_format.segments_to_panoptic(
            segment_ids, segments + segments[:1], 1000, 255, [13])


def test_read_panoptic_names_the_png(tmp_path):
    path = str(tmp_path / 'pred.png')
    panoptic_png.write(path, np.array([[26, 7]]))
    with pytest.raises(ValueError, match=r'pred\.png: segment 7 has unknown '
                       r'category_id 7'):
        coco_panoptic_format.read_panoptic(
            path, [{'id': 26, 'category_id': 26}, {'id': 7, 'category_id': 7}],
            1000, 255, [13], category_to_class={26: 13})
