"""Per-image work of the Cityscapes converter: read, check, build the label.

Kept free of TensorFlow on purpose: the converter runs `prepare_example` in
worker processes, and a worker that only imports NumPy and Pillow starts in
a fraction of a second instead of loading TensorFlow.
"""

import collections
import json

import numpy as np

from deeplab2 import panoptic_png
from deeplab2.data import conversion
from deeplab2.data import image_files
from deeplab2.data.cityscapes_labels import (IGNORE_LABEL, LABEL_DIVISOR,
                                             NUM_CLASSES, THING_CLASSES)

def read_panoptic_segments(json_path: str) -> dict[str, tuple[str, tuple]]:
    """Maps image id -> (panoptic PNG name, segments_info) from the json."""
    try:
        with open(json_path) as f:
            annotations = json.load(f)['annotations']
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f'Cannot read panoptic annotations {json_path}: {error}') from error
    segments_by_image = {}
    for annotation in annotations:
        image_id = annotation['image_id']
        if image_id in segments_by_image:
            raise ValueError(f'{json_path}: image id {image_id} appears twice.')
        segments_by_image[image_id] = (annotation['file_name'],
                                       tuple(annotation['segments_info']))
    return segments_by_image


def _check_segment(segment: dict, mask: np.ndarray, png_path: str) -> None:
    category = segment['category_id']
    if not 0 <= category < NUM_CLASSES:
        raise ValueError(
            f'{png_path}: segment {segment["id"]} has category_id '
            f'{category}, outside the {NUM_CLASSES} train ids [0, '
            f'{NUM_CLASSES - 1}]. Was the json made with train ids?')
    area = int(np.count_nonzero(mask))
    if area != segment['area']:
        raise ValueError(
            f'{png_path}: segment {segment["id"]} covers {area} pixels, '
            f'but the json says {segment["area"]}.')
    if segment['iscrowd'] and category not in THING_CLASSES:
        raise ValueError(f'{png_path}: stuff segment {segment["id"]} '
                         f'(class {category}) is marked iscrowd.')


def panoptic_label_from_annotation(png_path: str, segments,
                                   treat_crowd_as_ignore: bool) -> np.ndarray:
    """int32 [H, W] map `train_id * 1000 + instance`, as DeepLab2 builds it.

    Pixels outside every segment are void (255000). Thing instances are
    numbered 1, 2, ... per class in `segments` order; stuff has instance 0;
    crowd keeps instance 0 of its class, or becomes void when
    `treat_crowd_as_ignore`.
    """
    segment_ids = panoptic_png.read(png_path)
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, np.int32)
    instance = np.zeros(segment_ids.shape, np.int32)
    instances_per_class = collections.Counter()
    for segment in segments:
        mask = segment_ids == segment['id']
        _check_segment(segment, mask, png_path)
        category = segment['category_id']
        is_crowd_thing = segment['iscrowd'] and category in THING_CLASSES
        semantic[mask] = (IGNORE_LABEL if is_crowd_thing
                          and treat_crowd_as_ignore else category)
        if category in THING_CLASSES and not is_crowd_thing:
            instances_per_class[category] += 1
            if instances_per_class[category] >= LABEL_DIVISOR:
                raise ValueError(f'{png_path}: more than '
                                 f'{LABEL_DIVISOR - 1} instances of class '
                                 f'{category}.')
            instance[mask] = instances_per_class[category]
    return semantic * LABEL_DIVISOR + instance


def prepare_example(job: conversion.ImageJob) -> conversion.PreparedExample:
    """Reads and checks one image and builds its label (worker entry)."""
    image_bytes, image_format, height, width = conversion.read_rgb_image(
        job.image_path)
    panoptic_label = semantic_png = None
    if job.panoptic_png is not None:
        panoptic_label = panoptic_label_from_annotation(
            job.panoptic_png, job.segments, job.treat_crowd_as_ignore)
        if panoptic_label.shape != (height, width):
            raise ValueError(
                f'{job.panoptic_png}: size {panoptic_label.shape} differs '
                f'from image {job.image_path} ({height}, {width}).')
    elif job.semantic_png is not None:
        label = image_files.open_image(job.semantic_png)
        if (label.height, label.width) != (height, width):
            raise ValueError(f'{job.semantic_png}: size differs from image '
                             f'{job.image_path}.')
        with open(job.semantic_png, 'rb') as f:
            semantic_png = f.read()
    return conversion.PreparedExample(image_bytes, job.image_name,
                                      image_format, height, width,
                                      panoptic_label, semantic_png)
