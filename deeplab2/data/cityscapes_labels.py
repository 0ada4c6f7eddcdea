"""Per-image work of the Cityscapes converter: read, check, build the label.

Kept free of TensorFlow on purpose: the converter runs these functions in
worker processes, and a worker that only imports NumPy and Pillow starts in
a fraction of a second instead of loading TensorFlow.
"""

import collections
import dataclasses
import io
import json
from typing import Optional

import numpy as np

from deeplab2.data import image_files

NUM_CLASSES = 19
IGNORE_LABEL = 255
LABEL_DIVISOR = 1000
THING_CLASSES = frozenset(range(11, 19))
# Train id -> class name (cityscapesscripts' names; a test checks them).
CLASS_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole',
               'traffic light', 'traffic sign', 'vegetation', 'terrain', 'sky',
               'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle',
               'bicycle')
# Train id -> Cityscapes label id, what the official evaluators and the
# benchmark server read (cityscapesscripts' table; a test checks them).
LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31,
             32, 33)
# Label id of void ('unlabeled').
VOID_LABEL_ID = 0


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """Everything one worker needs to prepare one Example."""
    image_path: str
    image_name: str
    panoptic_png: Optional[str] = None
    segments: Optional[tuple] = None
    semantic_png: Optional[str] = None
    treat_crowd_as_ignore: bool = True


@dataclasses.dataclass(frozen=True)
class PreparedExample:
    """A job's result: checked RGB image bytes plus the label payload."""
    image_bytes: bytes
    image_name: str
    height: int
    width: int
    panoptic_label: Optional[np.ndarray] = None
    semantic_png: Optional[bytes] = None


def read_rgb_image(path: str) -> tuple[bytes, int, int]:
    """File bytes (re-encoded as PNG when not RGB), height and width."""
    image = image_files.open_image(path)
    if image.mode == 'RGB':
        with open(path, 'rb') as f:
            image_bytes = f.read()
    else:
        buffer = io.BytesIO()
        image.convert('RGB').save(buffer, format='PNG')
        image_bytes = buffer.getvalue()
    return image_bytes, image.height, image.width


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


def _segment_id_map(panoptic_png: str) -> np.ndarray:
    image = image_files.open_image(panoptic_png)
    if image.mode != 'RGB':
        raise ValueError(
            f'Panoptic annotation {panoptic_png} must be RGB, got mode '
            f'{image.mode}.')
    # cityscapesscripts colours segment id s as [s % 256, s // 256, s // 65536].
    return np.dot(np.asarray(image, dtype=np.int32), [1, 256, 256 * 256])


def _check_segment(segment: dict, mask: np.ndarray, panoptic_png: str) -> None:
    category = segment['category_id']
    if not 0 <= category < NUM_CLASSES:
        raise ValueError(
            f'{panoptic_png}: segment {segment["id"]} has category_id '
            f'{category}, outside the {NUM_CLASSES} train ids [0, '
            f'{NUM_CLASSES - 1}]. Was the json made with train ids?')
    area = int(np.count_nonzero(mask))
    if area != segment['area']:
        raise ValueError(
            f'{panoptic_png}: segment {segment["id"]} covers {area} pixels, '
            f'but the json says {segment["area"]}.')
    if segment['iscrowd'] and category not in THING_CLASSES:
        raise ValueError(f'{panoptic_png}: stuff segment {segment["id"]} '
                         f'(class {category}) is marked iscrowd.')


def panoptic_label_from_annotation(panoptic_png: str, segments,
                                   treat_crowd_as_ignore: bool) -> np.ndarray:
    """int32 [H, W] map `train_id * 1000 + instance`, as DeepLab2 builds it.

    Pixels outside every segment are void (255000). Thing instances are
    numbered 1, 2, ... per class in `segments` order; stuff has instance 0;
    crowd keeps instance 0 of its class, or becomes void when
    `treat_crowd_as_ignore`.
    """
    segment_ids = _segment_id_map(panoptic_png)
    semantic = np.full(segment_ids.shape, IGNORE_LABEL, np.int32)
    instance = np.zeros(segment_ids.shape, np.int32)
    instances_per_class = collections.Counter()
    for segment in segments:
        mask = segment_ids == segment['id']
        _check_segment(segment, mask, panoptic_png)
        category = segment['category_id']
        is_crowd_thing = segment['iscrowd'] and category in THING_CLASSES
        semantic[mask] = (IGNORE_LABEL if is_crowd_thing
                          and treat_crowd_as_ignore else category)
        if category in THING_CLASSES and not is_crowd_thing:
            instances_per_class[category] += 1
            if instances_per_class[category] >= LABEL_DIVISOR:
                raise ValueError(f'{panoptic_png}: more than '
                                 f'{LABEL_DIVISOR - 1} instances of class '
                                 f'{category}.')
            instance[mask] = instances_per_class[category]
    return semantic * LABEL_DIVISOR + instance


def prepare_example(job: ImageJob) -> PreparedExample:
    """Reads and checks one image and builds its label (worker entry)."""
    image_bytes, height, width = read_rgb_image(job.image_path)
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
    return PreparedExample(image_bytes, job.image_name, height, width,
                           panoptic_label, semantic_png)
