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


def id_bound(num_classes: int, ignore_label: int, label_divisor: int) -> int:
    """Exclusive upper bound on the panoptic ids of every known class (the
    ignore label included)."""
    return max(num_classes, ignore_label + 1) * label_divisor


def _check_known_classes(classes: np.ndarray, what: str, image: str,
                         num_classes: int, ignore_label: int,
                         label_divisor: int) -> None:
    unknown = np.unique(classes[(classes >= num_classes)
                                & (classes != ignore_label)])
    if unknown.size:
        raise ValueError(
            f'Image {image}: {what} has unknown class ids {unknown.tolist()} '
            f'(panoptic id // label_divisor {label_divisor}); known classes '
            f'are 0..{num_classes - 1} and the ignore label {ignore_label}.')


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
    _check_known_classes(
        panoptic[panoptic >= num_classes * label_divisor] // label_divisor,
        what, image, num_classes, ignore_label, label_divisor)


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


def pixel_runs(maps, worthwhile: float = 0.25):
    """Row-major runs of pixels on which every map of `maps` is constant.

    Label maps are piecewise constant, so counting per run instead of per
    pixel does the heavy work on a much shorter array. Returns (starts,
    lengths), or None when the runs would number more than `worthwhile`
    times the pixels (noise-like maps, where per-pixel counting is cheaper).
    """
    flats = [np.asarray(m).ravel() for m in maps]
    size = flats[0].size
    if size == 0:
        return None
    change = np.empty(size, bool)
    change[0] = True
    np.not_equal(flats[0][1:], flats[0][:-1], out=change[1:])
    for flat in flats[1:]:
        change[1:] |= flat[1:] != flat[:-1]
    starts = np.flatnonzero(change)
    if starts.size > worthwhile * size:
        return None
    return starts, np.diff(starts, append=size)


def run_values(array: np.ndarray, runs) -> np.ndarray:
    """The value of `array` on each run of `pixel_runs` (or every pixel)."""
    flat = np.asarray(array).ravel()
    return flat if runs is None else np.take(flat, runs[0])


def segment_table(panoptic: np.ndarray, id_bound: int,
                  row_scale: int = 1, weights=None):
    """Segments of a map whose ids lie in [0, id_bound).

    Returns (ids [N] int64, areas [N] int64, index [size] intp) where
    `index` maps each element (row-major) to its segment's row in `ids`,
    times `row_scale` (which lets a caller build pair keys without another
    pass). `weights` gives each element's pixel count (run lengths); by
    default every element is one pixel. A dense bincount over the id range
    avoids sorting.
    """
    flat = panoptic.ravel()
    counts = np.bincount(flat, weights=weights, minlength=id_bound)
    ids = np.flatnonzero(counts)
    lookup = np.zeros(counts.size, np.intp)
    lookup[ids] = np.arange(ids.size, dtype=np.intp) * row_scale
    areas = counts[ids] if weights is None else np.rint(counts[ids])
    # np.take: a third of the time of fancy indexing on large arrays.
    return (ids.astype(np.int64), areas.astype(np.int64),
            np.take(lookup, flat))


def panoptic_segments(panoptic: np.ndarray, what: str, image: str,
                      num_classes: int, ignore_label: int,
                      label_divisor: int, row_scale: int = 1,
                      weights=None):
    """`segment_table` of a checked panoptic map (or of its run values).

    The classes are checked on the (short) list of segments instead of
    another pass over the pixels; ids at or above the bound have unknown
    classes, so that check covers them too.
    """
    try:
        ids, areas, index = segment_table(
            panoptic, id_bound(num_classes, ignore_label, label_divisor),
            row_scale, weights)
    except ValueError:  # bincount rejects negative ids: name them
        check_panoptic_ids(panoptic, what, image, num_classes, ignore_label,
                           label_divisor)
        raise
    _check_known_classes(ids // label_divisor, what, image, num_classes,
                         ignore_label, label_divisor)
    return ids, areas, index
