"""Cityscapes (raw layout) -> sharded TFRecords, as DeepLab2's converter.

Input, under `cityscapes_root`:
  leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
  gtFine/cityscapes_panoptic_<split>_trainId.json and .../<name>_gtFine_panoptic.png
    (cityscapesscripts' panoptic preparation with train ids; run here when
    the json is missing), or, for semantic data,
  gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png.

Output: `<split>-%05d-of-%05d.tfrecord` shards holding `ceil(N / num_shards)`
images each in sorted path order (unused shards are empty files), with
DeepLab2's Example layout (see `tfrecord.py`). The test split has no labels.

This module lists each split's jobs; `cityscapes_annotations.py` prepares
them in worker processes, and `conversion.convert_splits` (shared with the
COCO converter) writes them. Every shard is written under a temporary name
and renamed once complete, so an interrupted run can be started again:
complete shards are kept, the rest are rewritten.
"""

import contextlib
import glob
import logging
import os
import sys
from typing import Iterable, Optional

from deeplab2.data import cityscapes_annotations
from deeplab2.data import conversion

_IMAGE_FOLDER = 'leftImg8bit'
_LABEL_FOLDER = 'gtFine'
_IMAGE_SUFFIX = '_leftImg8bit.png'
_SEMANTIC_SUFFIX = '_gtFine_labelTrainIds.png'
_UNLABELED_SPLITS = ('test',)
SPLITS = ('train', 'val', 'test')


def _image_paths(cityscapes_root: str, split: str) -> list[str]:
    split_folder = os.path.join(cityscapes_root, _IMAGE_FOLDER, split)
    if not os.path.isdir(split_folder):
        raise FileNotFoundError(
            f'Cityscapes image folder not found: {split_folder} (expected '
            f'{_IMAGE_FOLDER}/{split}/<city>/*{_IMAGE_SUFFIX}).')
    paths = sorted(glob.glob(os.path.join(split_folder, '*',
                                          '*' + _IMAGE_SUFFIX)))
    if not paths:
        raise FileNotFoundError(
            f'No *{_IMAGE_SUFFIX} images in {split_folder}/<city>/.')
    return paths


def resolve_splits(cityscapes_root: str,
                   splits: Optional[Iterable[str]] = None) -> list[str]:
    """The splits to convert: `splits`, each checked to be there, or (None)
    those of train, val, test found under leftImg8bit/.

    Many copies of Cityscapes have no test split, so by default an absent
    split is logged, not an error; a split asked for by name must exist.
    """
    image_root = os.path.join(cityscapes_root, _IMAGE_FOLDER)
    present = [split for split in SPLITS
               if os.path.isdir(os.path.join(image_root, split))]
    if splits is None:
        if not present:
            raise FileNotFoundError(
                f'No Cityscapes split found: {image_root} has none of '
                f'{", ".join(f"{split}/" for split in SPLITS)}.')
        absent = [split for split in SPLITS if split not in present]
        if absent:
            logging.warning('Converting %s: %s has no %s split.',
                            ', '.join(present), image_root,
                            ', '.join(absent))
        return present
    splits = list(splits)
    for split in splits:
        if not os.path.isdir(os.path.join(image_root, split)):
            raise FileNotFoundError(
                f'Split {split!r} was asked for (--splits) but '
                f'{os.path.join(image_root, split)} does not exist; the '
                f'splits found are: {", ".join(present) or "none"}.')
    return splits


def _image_name(image_path: str) -> str:
    return os.path.basename(image_path)[:-len(_IMAGE_SUFFIX)]


def panoptic_json_path(cityscapes_root: str, split: str) -> str:
    return os.path.join(cityscapes_root, _LABEL_FOLDER,
                        f'cityscapes_panoptic_{split}_trainId.json')


def create_panoptic_annotations(cityscapes_root: str, split: str) -> None:
    """Runs cityscapesscripts' panoptic preparation (train ids) for a split."""
    label_root = os.path.join(cityscapes_root, _LABEL_FOLDER)
    pattern = os.path.join(label_root, split, '*', '*_instanceIds.png')
    if not glob.glob(pattern):
        # cityscapesscripts would call sys.exit; say what is missing instead.
        raise FileNotFoundError(
            f'Cannot create {panoptic_json_path(cityscapes_root, split)}: no '
            f'ground truth matches {pattern}.')
    from cityscapesscripts.preparation import createPanopticImgs
    logging.info('Creating panoptic annotations for %s in %s', split,
                 label_root)
    # Its progress prints go to stderr so stdout stays for the caller.
    with contextlib.redirect_stdout(sys.stderr):
        createPanopticImgs.convert2panoptic(
            cityscapesPath=label_root, outputFolder=label_root,
            useTrainId=True, setNames=[split])


def _panoptic_jobs(cityscapes_root, split, image_paths,
                   treat_crowd_as_ignore) -> list:
    json_path = panoptic_json_path(cityscapes_root, split)
    if not os.path.isfile(json_path):
        create_panoptic_annotations(cityscapes_root, split)
    return conversion.panoptic_jobs(
        image_paths, [_image_name(path) for path in image_paths],
        cityscapes_annotations.read_panoptic_segments(json_path), json_path,
        treat_crowd_as_ignore)


def _semantic_jobs(cityscapes_root, split, image_paths) -> list:
    jobs = []
    for path in image_paths:
        name = _image_name(path)
        city = os.path.basename(os.path.dirname(path))
        label_path = os.path.join(cityscapes_root, _LABEL_FOLDER, split, city,
                                  name + _SEMANTIC_SUFFIX)
        if not os.path.isfile(label_path):
            raise FileNotFoundError(
                f'Semantic label for {path} not found: {label_path}.')
        jobs.append(conversion.ImageJob(path, name, semantic_png=label_path))
    return jobs


def _split_jobs(cityscapes_root, split, create_panoptic_data,
                treat_crowd_as_ignore) -> list:
    image_paths = _image_paths(cityscapes_root, split)
    if split in _UNLABELED_SPLITS:
        return [conversion.ImageJob(path, _image_name(path))
                for path in image_paths]
    if create_panoptic_data:
        return _panoptic_jobs(cityscapes_root, split, image_paths,
                              treat_crowd_as_ignore)
    return _semantic_jobs(cityscapes_root, split, image_paths)


def convert_cityscapes(cityscapes_root: str,
                       output_dir: str,
                       splits: Optional[Iterable[str]] = None,
                       create_panoptic_data: bool = True,
                       treat_crowd_as_ignore: bool = True,
                       num_shards: int = 10,
                       num_workers: Optional[int] = None,
                       show_progress: bool = True) -> dict[str, list[str]]:
    """Converts Cityscapes splits to TFRecord shards.

    Returns split -> its shard paths, in order. Raises FileNotFoundError or
    ValueError naming the missing or bad file: a missing file or annotation
    before anything is written, an unreadable image when it is prepared.

    Args:
      cityscapes_root: folder holding leftImg8bit/ and gtFine/.
      output_dir: where the shards go (created if needed).
      splits: split names; 'test' is written without labels. None: those
        of train, val and test present (see `resolve_splits`).
      create_panoptic_data: raw int32 panoptic labels (True) or the
        labelTrainIds PNGs as semantic labels (False).
      treat_crowd_as_ignore: crowd regions become void (255000) instead of
        `class * 1000`; DeepLab2's default.
      num_shards, num_workers, show_progress: see
        `conversion.convert_splits`.
    """
    return conversion.convert_splits(
        resolve_splits(cityscapes_root, splits),
        lambda split: _split_jobs(cityscapes_root, split,
                                  create_panoptic_data, treat_crowd_as_ignore),
        cityscapes_annotations.prepare_example, output_dir, num_shards,
        num_workers=num_workers, show_progress=show_progress)
