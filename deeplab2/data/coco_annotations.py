"""Per-image work of the COCO panoptic converter: read, check, build the
label in DeepLab2's label space (see `coco_labels.py`).

Where DeepLab2 silently drops data, the records stay equal to its own and
the user is warned instead: a PNG segment id missing from segments_info
becomes void (0), and its image, PNG, ids and pixel counts are logged.

Kept free of TensorFlow, like `cityscapes_annotations.py`: the converter
runs `prepare_example` in worker processes that import only NumPy and
Pillow.
"""

import collections
import json
import os

import numpy as np

from deeplab2 import panoptic_png
from deeplab2.data import conversion
from deeplab2.data import image_files
from deeplab2.data.coco_labels import (IGNORE_LABEL, LABEL_DIVISOR,
                                       THING_LABELS, coco_id_to_label)

# The JPEG bytes are stored as they are; non-RGB files are converted to RGB
# JPEG when the Example is encoded.
IMAGE_FORMAT = 'jpeg'
# Unlisted segment ids named at most in one warning.
_MAX_LISTED_SEGMENTS = 10


def read_panoptic_json(json_path: str) -> dict[str, tuple[str, tuple]]:
    """Maps PNG name without suffix -> (PNG name, segments_info).

    COCO names a panoptic PNG as its image (`000000000139.png` for
    `000000000139.jpg`); that shared stem is how images find their
    annotation, as in DeepLab2.
    """
    try:
        with open(json_path) as f:
            annotations = json.load(f)['annotations']
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f'Cannot read panoptic annotations {json_path}: {error!r}'
        ) from error
    segments_by_stem, image_ids = {}, set()
    for annotation in annotations:
        try:
            image_id = annotation['image_id']
            png_name = annotation['file_name']
            segments = tuple(annotation['segments_info'])
        except (KeyError, TypeError) as error:
            raise ValueError(f'{json_path}: malformed annotation '
                             f'{str(annotation)[:200]}: {error!r}') from error
        if image_id in image_ids:
            raise ValueError(
                f'{json_path}: image id {image_id} appears twice.')
        image_ids.add(image_id)
        segments_by_stem[os.path.splitext(png_name)[0]] = (png_name, segments)
    return segments_by_stem


def _segment_label(segment: dict, png_path: str) -> int:
    try:
        return coco_id_to_label(segment['category_id'])
    except KeyError:
        raise ValueError(
            f'{png_path}: segment {segment["id"]} has category_id '
            f'{segment["category_id"]}, not a COCO panoptic category.'
        ) from None


def panoptic_label_from_annotation(
        png_path: str, segments,
        treat_crowd_as_ignore: bool) -> tuple[np.ndarray, dict[int, int]]:
    """int32 [H, W] map `label * 256 + instance`, as DeepLab2 builds it.

    Returns:
      (label, unlisted): `unlisted` maps each non-zero segment id of the PNG
      that `segments` does not describe to its pixel count. Those pixels are
      void (0) in the label, as DeepLab2 leaves them; the caller warns.

    Raises:
      ValueError: naming `png_path`, for an unreadable or non-RGB PNG,
        an unknown category, a segment whose pixel count is not its `area`,
        a crowd stuff segment, or too many instances.
    """
    segment_ids = panoptic_png.read(png_path)
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, np.int32)
    instance = np.zeros(segment_ids.shape, np.int32)
    instances_per_label = collections.Counter()
    for segment in segments:
        label = _segment_label(segment, png_path)
        mask = segment_ids == segment['id']
        area = int(np.count_nonzero(mask))
        if area != segment['area']:
            raise ValueError(
                f'{png_path}: segment {segment["id"]} covers {area} '
                f'pixels, but the json says {segment["area"]}.')
        is_crowd = bool(segment.get('iscrowd', 0))
        if label not in THING_LABELS:
            if is_crowd:
                raise ValueError(
                    f'{png_path}: stuff segment {segment["id"]} '
                    f'(category_id {segment["category_id"]}) is marked '
                    'iscrowd.')
            semantic[mask] = label
        elif is_crowd:
            semantic[mask] = IGNORE_LABEL if treat_crowd_as_ignore else label
        else:
            semantic[mask] = label
            instances_per_label[label] += 1
            if instances_per_label[label] >= LABEL_DIVISOR:
                raise ValueError(
                    f'{png_path}: more than {LABEL_DIVISOR - 1} '
                    f'instances of category_id {segment["category_id"]}.')
            instance[mask] = instances_per_label[label]
    # DeepLab2 labels only the segments listed in the json, so any other id
    # stays void: kept so the records equal DeepLab2's, counted so the
    # caller can warn.
    ids, counts = np.unique(segment_ids, return_counts=True)
    described = np.array([0] + [s['id'] for s in segments], np.int64)
    unlisted = ~np.isin(ids, described)
    return semantic * LABEL_DIVISOR + instance, dict(
        zip(ids[unlisted].tolist(), counts[unlisted].tolist()))


def _unlisted_segments_warning(image_path: str, png_path: str,
                               unlisted: dict[int, int]) -> str:
    """The warning for PNG segments that segments_info does not describe."""
    listed = ', '.join(f'{segment_id} ({count} pixels)' for segment_id, count
                       in list(unlisted.items())[:_MAX_LISTED_SEGMENTS])
    if len(unlisted) > _MAX_LISTED_SEGMENTS:
        listed += f' and {len(unlisted) - _MAX_LISTED_SEGMENTS} more'
    return (f'{png_path} (image {image_path}) holds segment ids that its '
            f'segments_info lacks: {listed}; their pixels are stored as '
            'void (0), as DeepLab2 does.')


def prepare_example(job: conversion.ImageJob) -> conversion.PreparedExample:
    """Reads and checks one image and builds its label (worker entry)."""
    image = image_files.open_image(job.image_path)
    with open(job.image_path, 'rb') as f:
        image_bytes = f.read()  # Kept as is; non-RGB is converted on encoding.
    panoptic_label, warnings = None, ()
    if job.panoptic_png is not None:
        panoptic_label, unlisted = panoptic_label_from_annotation(
            job.panoptic_png, job.segments, job.treat_crowd_as_ignore)
        if unlisted:
            # Returned, not logged: this runs in a worker process, and the
            # writing process logs it where the user's logging is set up.
            warnings = (_unlisted_segments_warning(
                job.image_path, job.panoptic_png, unlisted),)
        if panoptic_label.shape != (image.height, image.width):
            raise ValueError(
                f'{job.panoptic_png}: size {panoptic_label.shape} differs '
                f'from image {job.image_path} '
                f'({image.height}, {image.width}).')
    return conversion.PreparedExample(image_bytes, job.image_name,
                                      IMAGE_FORMAT, image.height,
                                      image.width, panoptic_label,
                                      warnings=warnings)
