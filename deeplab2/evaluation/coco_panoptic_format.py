"""Panoptic maps <-> the COCO panoptic format Cityscapes' evaluator reads.

A prediction is a PNG whose RGB colour encodes a segment id
(`R + 256 * G + 65536 * B`, 0 = void; `panoptic_png.py`) plus a json entry
listing the segments (`id`, `category_id`, `iscrowd`, `area`, `bbox`). The
category ids must be those of the ground-truth json: train ids for
DeepLab2's `*_trainId.json`, Cityscapes label ids for the benchmark server;
pass `category_ids` to map train ids to the latter.

Segment ids written here are `category_id * label_divisor + instance + 1`:
unique, never 0, and readable back to the panoptic id.
"""

import json
from typing import Optional, Sequence

import numpy as np

from deeplab2 import files
from deeplab2 import panoptic_png
from deeplab2.evaluation import label_maps

# Largest id range mapped through a dense table (32 MiB of int64).
_DENSE_LOOKUP_LIMIT = 1 << 22




def _bounding_boxes(index: np.ndarray, count: int) -> np.ndarray:
    """[count, 4] COCO boxes (x, y, width, height) of segments 0..count-1.

    Presence tables of (segment, row) and (segment, column) replace a
    per-segment scan of the image.
    """
    height, width = index.shape
    rows = np.bincount((index * height + np.arange(height)[:, None]).ravel(),
                       minlength=count * height).reshape(count, height) > 0
    cols = np.bincount((index * width + np.arange(width)[None, :]).ravel(),
                       minlength=count * width).reshape(count, width) > 0
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom = height - rows[:, ::-1].argmax(axis=1)
    right = width - cols[:, ::-1].argmax(axis=1)
    return np.stack([left, top, right - left, bottom - top], axis=1)


def panoptic_to_segments(panoptic, num_classes: int, ignore_label: int,
                         label_divisor: int,
                         category_ids: Optional[Sequence[int]] = None,
                         image_name: Optional[str] = None,
                         scores: Optional[np.ndarray] = None):
    """Segment-id map and segments_info of one panoptic prediction.

    Args:
      panoptic: [H, W] int `class * label_divisor + instance`; class
        `ignore_label` is void.
      category_ids: category id of each class (default: the class id).
      scores: optional [H, W] per-pixel scores; each segment then gets
        `score`, their mean over it.
    Returns:
      (segment_ids [H, W] int64, 0 on void; list of segment dicts).
    """
    image = label_maps.image_label(image_name, 0) if image_name else 'unnamed'
    panoptic = label_maps.check_label_map(panoptic, 'panoptic map', image)
    label_maps.check_panoptic_ids(panoptic, 'panoptic map', image,
                                  num_classes, ignore_label, label_divisor)
    categories = np.arange(num_classes) if category_ids is None else (
        np.asarray(category_ids, np.int64))
    if categories.shape != (num_classes,):
        raise ValueError(f'category_ids needs one id per class ({num_classes}),'
                         f' got {categories.shape[0]}.')
    ids, areas, index = label_maps.segment_table(
        panoptic, label_maps.id_bound(num_classes, ignore_label,
                                      label_divisor))
    classes, instances = ids // label_divisor, ids % label_divisor
    void = classes == ignore_label
    segment_of_row = np.zeros(ids.size, np.int64)
    segment_of_row[~void] = (categories[classes[~void]] * label_divisor
                             + instances[~void] + 1)
    if (segment_of_row.size
            and segment_of_row.max() > panoptic_png.MAX_SEGMENT_ID):
        raise ValueError(f'Image {image}: segment id {segment_of_row.max()} '
                         'does not fit a 24-bit PNG colour.')
    index = index.reshape(panoptic.shape)
    boxes = _bounding_boxes(index, ids.size)
    segments = [{
        'id': int(segment_of_row[row]),
        'category_id': int(categories[classes[row]]),
        'iscrowd': 0,
        'area': int(areas[row]),
        'bbox': [int(v) for v in boxes[row]],
    } for row in np.flatnonzero(~void)]
    if scores is not None:
        sums = np.bincount(index.ravel(), weights=np.ravel(scores),
                           minlength=ids.size)
        for segment, row in zip(segments, np.flatnonzero(~void)):
            segment['score'] = float(sums[row] / areas[row])
    return segment_of_row[index], segments


def annotation(image_id, file_name: str, segments: list) -> dict:
    """One image's entry of the json's `annotations` list (image_id: a
    string, or an int for COCO)."""
    return {'image_id': image_id, 'file_name': file_name,
            'segments_info': segments}


def write_panoptic_json(path: str, annotations: list,
                        categories: Optional[list] = None) -> None:
    """Writes `{"annotations": ..., "categories": ...}`, via a temporary name."""
    content = {'annotations': annotations}
    if categories is not None:
        content['categories'] = categories

    def write(temporary):
        with open(temporary, 'w') as f:
            json.dump(content, f)

    files.write_atomically(path, write)


def _panoptic_of_segments(segments: list, label_divisor: int,
                          ignore_label: int, thing_class_ids,
                          category_to_class, source: str):
    """(listed segment ids, their panoptic ids, void id) as int64 arrays
    and an int: what `segments_to_panoptic` maps."""
    thing = set(int(c) for c in thing_class_ids)
    listed = np.array([s['id'] for s in segments], np.int64)
    panoptic_of_segment = np.empty(len(segments), np.int64)
    per_class = {}
    for row, segment in enumerate(segments):
        category = segment['category_id']
        class_id = (category if category_to_class is None
                    else category_to_class.get(category))
        if class_id is None:
            raise ValueError(f'{source}: segment {segment["id"]} has unknown '
                             f'category_id {category}.')
        instance = 0
        if class_id in thing and not segment.get('iscrowd', 0):
            instance = per_class[class_id] = per_class.get(class_id, 0) + 1
            if instance >= label_divisor:
                raise ValueError(f'{source}: more than {label_divisor - 1} '
                                 f'instances of class {class_id}.')
        panoptic_of_segment[row] = class_id * label_divisor + instance
    if np.unique(listed).size != listed.size:
        raise ValueError(f'{source}: segments_info lists an id twice.')
    return listed, panoptic_of_segment, ignore_label * label_divisor


def _dense_table(listed, panoptic_of_segment, void):
    """Segment id -> panoptic id over 0..max(listed) + 1, the last entry void
    (ids above every listed one clip to it); None when the ids are too
    spread out for one table, or negative, or none are listed."""
    if (listed.size == 0 or listed.min() < 0
            or listed.max() >= _DENSE_LOOKUP_LIMIT):
        return None
    # int32 where the values fit: half the memory traffic of int64.
    fits = max(int(panoptic_of_segment.max()), void) < 2 ** 31
    table = np.full(int(listed.max()) + 2, void,
                    np.int32 if fits else np.int64)
    table[listed] = panoptic_of_segment
    return table


def segments_to_panoptic(segment_ids: np.ndarray, segments: list,
                         label_divisor: int, ignore_label: int,
                         thing_class_ids, category_to_class=None,
                         source: str = 'segments') -> np.ndarray:
    """[H, W] panoptic map of a segment-id map and its segments_info: int32
    when every value fits, else int64.

    The inverse of `panoptic_to_segments` for any COCO-panoptic file:
    pixels outside every listed segment are void; thing segments are
    numbered 1, 2, ... per class in list order (crowd segments keep
    instance 0, the crowd region); stuff has instance 0.

    Args:
      category_to_class: dict category id -> class id (default: identity).
      source: named in errors (e.g. the PNG path).
    """
    return _map_segment_ids(segment_ids, *_panoptic_of_segments(
        segments, label_divisor, ignore_label, thing_class_ids,
        category_to_class, source))


def _map_segment_ids(segment_ids, listed, panoptic_of_segment, void):
    """Each segment id's panoptic id; void where none is listed."""
    if listed.size == 0:
        return np.full(segment_ids.shape, void, np.int64)
    # A lookup table over the listed id range (or a sorted search when the
    # ids are too spread out for one) instead of one mask per segment.
    table = _dense_table(listed, panoptic_of_segment, void)
    if table is not None and (segment_ids.dtype.kind == 'u'
                              or segment_ids.min(initial=0) >= 0):
        return np.take(table, segment_ids, mode='clip')
    order = np.argsort(listed)
    position = np.minimum(np.searchsorted(listed[order], segment_ids),
                          listed.size - 1)
    found = listed[order][position] == segment_ids
    return np.where(found, panoptic_of_segment[order][position], void)


def read_panoptic(png_path: str, segments: list, label_divisor: int,
                  ignore_label: int, thing_class_ids,
                  category_to_class=None) -> np.ndarray:
    """`segments_to_panoptic` of the panoptic PNG at `png_path` (errors name
    it), the ids mapped while the PNG decodes where one table holds them."""
    mapping = _panoptic_of_segments(segments, label_divisor, ignore_label,
                                    thing_class_ids, category_to_class,
                                    png_path)
    table = _dense_table(*mapping)
    if table is not None:
        return panoptic_png.read(png_path, lookup=table)
    return _map_segment_ids(panoptic_png.read(png_path), *mapping)
