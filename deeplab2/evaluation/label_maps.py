"""Checks and segment tables shared by the metrics.

Every check names the image, so one bad prediction in a long evaluation run
can be found.
"""

from typing import Optional

import numpy as np


def image_label(image_name: Optional[str], index: int) -> str:
    """The name used in error messages: the caller's, else the call index."""
    return repr(image_name) if image_name is not None else f'#{index}'


def check_label_map(array, what: str, image: str) -> np.ndarray:
    """A 2-D integer numpy array, or a ValueError naming `what` and `image`."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f'Image {image}: {what} must be a 2-D [height, width] '
                         f'map, got shape {array.shape}.')
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f'Image {image}: {what} must hold integer ids, got '
                         f'dtype {array.dtype}.')
    return array


def check_same_shape(groundtruth: np.ndarray, prediction: np.ndarray,
                     image: str) -> None:
    if groundtruth.shape != prediction.shape:
        raise ValueError(
            f'Image {image}: prediction shape {prediction.shape} differs from '
            f'ground-truth shape {groundtruth.shape}.')


def check_panoptic_ids(panoptic: np.ndarray, what: str, image: str,
                       num_classes: int, ignore_label: int,
                       label_divisor: int) -> None:
    """Every id is `class * label_divisor + instance` with a known class.

    Known classes are [0, num_classes) and ignore_label (void). Checked with
    a min/max pass first, so the common valid case costs two reductions.
    """
    if panoptic.size == 0:
        return
    lowest, highest = int(panoptic.min()), int(panoptic.max())
    if lowest < 0:
        raise ValueError(f'Image {image}: {what} has negative id {lowest}.')
    if highest < num_classes * label_divisor:
        return
    classes = np.unique(panoptic[panoptic >= num_classes * label_divisor]
                        // label_divisor)
    unknown = classes[classes != ignore_label]
    if unknown.size:
        raise ValueError(
            f'Image {image}: {what} has unknown class ids {unknown.tolist()} '
            f'(panoptic id // label_divisor {label_divisor}); known classes '
            f'are 0..{num_classes - 1} and the ignore label {ignore_label}.')


def combine_semantic_instance(semantic, instance, label_divisor: int,
                              image_name: Optional[str] = None) -> np.ndarray:
    """int64 panoptic map `semantic * label_divisor + instance`.

    Instance ids must lie in [0, label_divisor): a larger id would silently
    turn into another class.
    """
    image = image_label(image_name, 0) if image_name else 'unnamed'
    semantic = check_label_map(semantic, 'semantic map', image)
    instance = check_label_map(instance, 'instance map', image)
    check_same_shape(semantic, instance, image)
    if instance.size and (instance.min() < 0
                          or instance.max() >= label_divisor):
        raise ValueError(
            f'Image {image}: instance ids must lie in [0, {label_divisor}) '
            f'(the label divisor), got [{instance.min()}, {instance.max()}].')
    return semantic.astype(np.int64) * label_divisor + instance


def segment_table(panoptic: np.ndarray, id_bound: int,
                  row_scale: int = 1):
    """Segments of a map whose ids lie in [0, id_bound).

    Returns (ids [N] int64, areas [N] int64, index [H * W] intp) where
    `index` maps each pixel (row-major) to its segment's row in `ids`, times
    `row_scale` (which lets a caller build pair keys without another pass
    over the pixels). A dense bincount over the id range avoids sorting.
    """
    flat = panoptic.ravel()
    counts = np.bincount(flat, minlength=id_bound)
    ids = np.flatnonzero(counts)
    lookup = np.zeros(counts.size, np.intp)
    lookup[ids] = np.arange(ids.size, dtype=np.intp) * row_scale
    return ids.astype(np.int64), counts[ids].astype(np.int64), lookup[flat]


def panoptic_segments(panoptic: np.ndarray, what: str, image: str,
                      num_classes: int, ignore_label: int,
                      label_divisor: int, row_scale: int = 1):
    """`segment_table` of a checked panoptic map.

    The ids are range-checked with two reductions and their classes on the
    (short) list of segments, instead of another pass over the pixels.
    """
    bound = max(num_classes, ignore_label + 1) * label_divisor
    try:
        ids, areas, index = segment_table(panoptic, bound, row_scale)
    except ValueError:  # bincount rejects negative ids
        ids = None
    if ids is None or (ids.size and ids[-1] >= bound):
        check_panoptic_ids(panoptic, what, image, num_classes, ignore_label,
                           label_divisor)
    classes = ids // label_divisor
    unknown = np.unique(classes[(classes >= num_classes)
                                & (classes != ignore_label)])
    if unknown.size:
        raise ValueError(
            f'Image {image}: {what} has unknown class ids {unknown.tolist()} '
            f'(panoptic id // label_divisor {label_divisor}); known classes '
            f'are 0..{num_classes - 1} and the ignore label {ignore_label}.')
    return ids, areas, index
