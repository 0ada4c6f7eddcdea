"""Your own COCO-panoptic data -> records (`build_dataset.py
--format=coco_panoptic`).

Input: `--panoptic_json` with COCO's panoptic keys (other keys ignored):

    {"images": [{"id": 7, "file_name": "a.jpg"}, ...],
     "annotations": [{"image_id": 7, "file_name": "a.png",
                      "segments_info": [{"id": 3, "category_id": 12,
                                         "iscrowd": 0, "area": 51}, ...]}],
     "categories": [{"id": 12, "name": "car", "isthing": 1,
                     "color": [0, 0, 142]}, ...]}     # color optional

`--image_dir` holds the images the json's `images` name (JPEG or PNG, any
mode: non-RGB ones are stored as RGB PNG); files the json does not name are
left out, so several splits' jsons may share one image folder.
`--panoptic_dir` holds the annotations' PNGs: segment id `s` coloured
`(s % 256, s // 256 % 256, s // 65536)`, 0 = void (`panoptic_png.py`).

Labels: categories may have any ids, in any order (`isthing` and
`iscrowd` are 0/1 or false/true): train id = position in
`categories`, the category id is kept as the spec's eval_id (void's is 0,
or one above the largest id when a category uses 0). Pixels of no segment
are void. Thing instances are numbered 1, 2, ... per category in
`segments_info` order; crowd segments (`iscrowd`, things only) become void
with `treat_crowd_as_ignore`, else instance 0 of their class (the COCO
converter's rule). Records are named by the image file name without its
extension, in file name order.

Errors name the file and the json key, and the listing ones come before
anything is written: an image with no annotation or an annotation of no
image, a missing file, a category id missing from `categories`, a segment
id listed twice in one `segments_info` (two segments claiming the same
pixels); and, when its image is converted, a PNG holding an id that its
`segments_info` lacks, a segment whose pixel count is not its `area` (when
given), or a PNG whose size is not its image's.
"""

import collections
import os
from typing import Any

import numpy as np

from deeplab2 import files
from deeplab2 import panoptic_png
from deeplab2.data import conversion
from deeplab2.data import dataset_conversion


class _Json:
    """Reads keys of the panoptic json, raising ValueError naming the file
    and the key path."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, problem: str):
        raise ValueError(f'{self.path}: {key}: {problem}.')

    def get(self, mapping: Any, name: str, key: str, kind,
            default: Any = KeyError):
        full = f'{key}.{name}' if key else name
        if not isinstance(mapping, dict):
            self.fail(key, 'must be a JSON object')
        if name not in mapping:
            if default is KeyError:
                self.fail(full, 'missing')
            return default
        value = mapping[name]
        if kind is int and (not isinstance(value, int) or
                            isinstance(value, bool)):
            self.fail(full, f'must be an integer, got {value!r}')
        if kind is not int and not isinstance(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            names = ' or '.join(k.__name__ for k in kinds)
            self.fail(full, f'must be of type {names}, got {value!r}')
        return value

    def flag(self, mapping: dict, name: str, key: str,
             required: bool = False) -> bool:
        """A 0/1 (or false/true) field; absent is 0 unless required."""
        value = self.get(mapping, name, key, (int, bool),
                         KeyError if required else 0)
        if value not in (0, 1):
            self.fail(f'{key}.{name}', f'must be 0 or 1, got {value!r}')
        return bool(value)




def _classes(reader: _Json, data: dict) -> list[dict]:
    """The spec's class entries, in `categories` order."""
    categories = reader.get(data, 'categories', '', list)
    if not categories:
        reader.fail('categories', 'must list at least one category')
    classes, ids, names = [], {}, {}
    for index, category in enumerate(categories):
        key = f'categories[{index}]'
        category_id = reader.get(category, 'id', key, int)
        name = reader.get(category, 'name', key, str)
        isthing = reader.flag(category, 'isthing', key, required=True)
        for value, seen, field in ((category_id, ids, 'id'),
                                   (name, names, 'name')):
            if value in seen:
                reader.fail(f'{key}.{field}', f'{value!r} repeats '
                            f'categories[{seen[value]}].{field}')
            seen[value] = index
        entry = {'name': name, 'eval_id': category_id,
                 'thing': bool(isthing)}
        color = category.get('color')
        if color is not None:
            if not (isinstance(color, list) and len(color) == 3 and all(
                    isinstance(c, int) and 0 <= c <= 255 for c in color)):
                reader.fail(f'{key}.color', 'must be [r, g, b] with 0..255')
            entry['color'] = list(color)
        classes.append(entry)
    return classes


def _images(reader: _Json, data: dict, image_dir: str) -> dict[int, str]:
    """image id -> image path, each checked to exist."""
    images, names = {}, {}
    for index, image in enumerate(reader.get(data, 'images', '', list)):
        key = f'images[{index}]'
        image_id = reader.get(image, 'id', key, int)
        file_name = reader.get(image, 'file_name', key, str)
        if image_id in images:
            reader.fail(f'{key}.id', f'image id {image_id} appears twice')
        name = _record_name(file_name)
        if name in names:
            reader.fail(f'{key}.file_name',
                        f'{file_name!r} and {names[name]!r} would both be '
                        f'named {name!r} in the records')
        names[name] = file_name
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'Image {path} ({reader.path}: {key}) '
                                    'not found.')
        images[image_id] = path
    if not images:
        reader.fail('images', 'lists no image')
    return images


def _record_name(file_name: str) -> str:
    return os.path.splitext(os.path.basename(file_name))[0]


def _segments(reader: _Json, annotation: dict, key: str, things: dict,
              png_path: str) -> tuple[tuple, int]:
    """((id, category_id, iscrowd, area or None), ...) and the largest
    instance number it gives one category."""
    segments, seen, instances = [], set(), collections.Counter()
    for index, segment in enumerate(
            reader.get(annotation, 'segments_info', key, list)):
        segment_key = f'{key}.segments_info[{index}]'
        segment_id = reader.get(segment, 'id', segment_key, int)
        category_id = reader.get(segment, 'category_id', segment_key, int)
        iscrowd = reader.flag(segment, 'iscrowd', segment_key)
        area = reader.get(segment, 'area', segment_key, (int, float), None)
        if not 0 < segment_id <= panoptic_png.MAX_SEGMENT_ID:
            reader.fail(f'{segment_key}.id', f'{segment_id} is not a '
                        f'segment id (1..{panoptic_png.MAX_SEGMENT_ID}; 0 is '
                        'void)')
        if segment_id in seen:
            reader.fail(f'{segment_key}.id',
                        f'segment {segment_id} of {png_path} is listed twice: '
                        'two segments would claim the same pixels')
        seen.add(segment_id)
        if category_id not in things:
            reader.fail(f'{segment_key}.category_id',
                        f'{category_id} is not the id of any of the '
                        'categories')
        if iscrowd and not things[category_id]:
            reader.fail(f'{segment_key}.iscrowd', f'stuff category '
                        f'{category_id} cannot be a crowd')
        if things[category_id] and not iscrowd:
            instances[category_id] += 1
        segments.append((segment_id, category_id, iscrowd,
                         None if area is None else int(area)))
    return tuple(segments), max(instances.values(), default=0)


def list_split(image_dir: str, panoptic_dir: str, panoptic_json: str,
               treat_crowd_as_ignore: bool = True
               ) -> dataset_conversion.SplitListing:
    """Reads and checks the json and lists one job per image (file name
    order). Raises ValueError or FileNotFoundError naming the file (and
    json key)."""
    reader = _Json(panoptic_json)
    data = files.read_json_object(panoptic_json, 'Panoptic json')
    classes = _classes(reader, data)
    things = {entry['eval_id']: entry['thing'] for entry in classes}
    images = _images(reader, data, image_dir)
    annotated, max_instances = {}, 0
    for index, annotation in enumerate(
            reader.get(data, 'annotations', '', list)):
        key = f'annotations[{index}]'
        image_id = reader.get(annotation, 'image_id', key, int)
        png_name = reader.get(annotation, 'file_name', key, str)
        if image_id not in images:
            reader.fail(f'{key}.image_id', f'{image_id} is the id of none of '
                        'the images')
        if image_id in annotated:
            reader.fail(f'{key}.image_id', f'image {image_id} is annotated '
                        'twice')
        png_path = os.path.join(panoptic_dir, png_name)
        segments, most = _segments(reader, annotation, key, things, png_path)
        if not os.path.isfile(png_path):
            raise FileNotFoundError(f'Panoptic PNG {png_path} ({reader.path}:'
                                    f' {key}.file_name) not found.')
        max_instances = max(max_instances, most)
        annotated[image_id] = (png_path, segments)
    jobs = []
    for image_id, image_path in images.items():
        if image_id not in annotated:
            raise ValueError(f'Image {image_path} (id {image_id}) has no '
                             f'annotation in {panoptic_json}.')
        png_path, segments = annotated[image_id]
        jobs.append(conversion.ImageJob(
            image_path, _record_name(image_path), png_path, segments,
            treat_crowd_as_ignore=treat_crowd_as_ignore))
    jobs.sort(key=lambda job: job.image_name)
    eval_ids = set(things)
    return dataset_conversion.SplitListing(
        source=panoptic_json, classes=classes,
        eval_void_id=0 if 0 not in eval_ids else max(eval_ids) + 1,
        jobs=jobs, has_instances=True, max_instances=max_instances)


def panoptic_label(space: dataset_conversion.LabelSpace,
                   job: conversion.ImageJob,
                   segment_ids: np.ndarray) -> np.ndarray:
    """int32 [H, W] `train_id * divisor + instance` of the segment ids of
    a job's PNG (see the module docstring)."""
    ids, inverse, counts = np.unique(segment_ids, return_inverse=True,
                                     return_counts=True)
    listed = {segment[0]: segment for segment in job.segments}
    unlisted = [int(i) for i in ids if i != 0 and i not in listed]
    if unlisted:
        raise ValueError(
            f'{job.panoptic_png}: segment ids {unlisted[:10]} appear in the '
            'PNG but not in its segments_info.')
    areas = dict(zip(ids.tolist(), counts.tolist()))
    void = space.ignore_label * space.divisor
    label_of_id = {0: void}
    instances = collections.Counter()
    for segment_id, category_id, iscrowd, area in job.segments:
        pixels = areas.get(segment_id, 0)
        if area is not None and area != pixels:
            raise ValueError(f'{job.panoptic_png}: segment {segment_id} '
                             f'covers {pixels} pixels, but the json says '
                             f'{area}.')
        train_id = space.train_ids[category_id]
        instance = 0
        if train_id in space.thing_train_ids:
            if iscrowd and job.treat_crowd_as_ignore:
                label_of_id[segment_id] = void
                continue
            if not iscrowd:
                instances[train_id] += 1
                instance = instances[train_id]
        label_of_id[segment_id] = train_id * space.divisor + instance
    labels = np.array([label_of_id.get(int(i), void) for i in ids], np.int64)
    return labels[inverse.reshape(segment_ids.shape)].astype(np.int32)


def prepare_example(space: dataset_conversion.LabelSpace,
                    job: conversion.ImageJob) -> conversion.PreparedExample:
    """Reads and checks one image and builds its label (worker entry)."""
    image_bytes, image_format, height, width = conversion.read_rgb_image(
        job.image_path)
    segment_ids = panoptic_png.read(job.panoptic_png)
    if segment_ids.shape != (height, width):
        raise ValueError(
            f'{job.panoptic_png}: size {segment_ids.shape[1]}x'
            f'{segment_ids.shape[0]} differs from that of image '
            f'{job.image_path} ({width}x{height}).')
    label = panoptic_label(space, job, segment_ids)
    return conversion.PreparedExample(image_bytes, job.image_name,
                                      image_format, height, width,
                                      panoptic_label=label)


def convert(image_dir: str, panoptic_dir: str, panoptic_json: str,
            split: str, output_dir: str,
            treat_crowd_as_ignore: bool = True,
            **options) -> tuple[list[str], str]:
    """Converts one split; returns (shard paths, dataset.json path).
    `options`: those of `dataset_conversion.convert_split`."""
    listing = list_split(image_dir, panoptic_dir, panoptic_json,
                         treat_crowd_as_ignore)
    return dataset_conversion.convert_split(listing, prepare_example, split,
                                            output_dir, **options)
