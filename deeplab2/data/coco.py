"""COCO panoptic (raw layout) -> sharded TFRecords, as DeepLab2's converter.

Input, under `coco_root`:
  {train,val,test}2017/*.jpg
  annotations/panoptic_{train,val}2017.json and
  annotations/panoptic_{train,val}2017/*.png (segment id s coloured as
  [s % 256, s // 256 % 256, s // 65536]; the PNG shares its image's name).

Output: `<split>-%05d-of-%05d.tfrecord` shards (DeepLab2 writes 1000 per
split) holding `ceil(N / num_shards)` images each in sorted file order,
with DeepLab2's Example layout (see `tfrecord.py`): the JPEG bytes as they
are (a non-RGB file, e.g. grey, is converted to RGB and saved again as JPEG
at Pillow's default quality, as DeepLab2 does), the file name without
`.jpg`, format 'jpeg', and the panoptic label `label * 256 + instance` as
raw int32 (see `coco_labels.py` for the label space). The test split has no
labels. The records equal DeepLab2's (checked against its own in
tests/data/test_coco_deeplab2_parity.py); what differs is what the user is
told:

* a PNG segment id missing from segments_info becomes void (0) as in
  DeepLab2, but is logged as a warning naming the PNG, ids and pixel counts
  (DeepLab2 is silent);
* only the requested splits are converted (default train and val; DeepLab2
  always adds test), and a split whose `<split>2017/` folder is missing or
  holds no JPEG fails before anything is written (DeepLab2 writes 1000
  empty shards for it).

This module lists each split's jobs; `coco_annotations.py` prepares them in
worker processes, and `conversion.convert_splits` (shared with the
Cityscapes converter) writes and resumes the shards.
"""

import glob
import os
from typing import Iterable, Optional

from deeplab2.data import coco_annotations
from deeplab2.data import coco_labels
from deeplab2.data import conversion

COCO_CATEGORIES = coco_labels.COCO_CATEGORIES
coco_id_to_label = coco_labels.coco_id_to_label
coco_id_to_label_map = coco_labels.coco_id_to_label_map

DEFAULT_NUM_SHARDS = 1000  # DeepLab2's.
_ANNOTATION_FOLDER = 'annotations'
_IMAGE_SUFFIX = '.jpg'
_UNLABELED_SPLITS = ('test',)


def image_folder(coco_root: str, split: str) -> str:
    return os.path.join(coco_root, f'{split}2017')


def panoptic_json_path(coco_root: str, split: str) -> str:
    return os.path.join(coco_root, _ANNOTATION_FOLDER,
                        f'panoptic_{split}2017.json')


def _image_paths(coco_root: str, split: str) -> list[str]:
    folder = image_folder(coco_root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f'COCO image folder not found: {folder} (expected '
            f'{split}2017/*{_IMAGE_SUFFIX} under the COCO root; leave '
            f'{split!r} out of the splits to convert without it).')
    paths = sorted(glob.glob(os.path.join(glob.escape(folder),
                                          '*' + _IMAGE_SUFFIX)))
    if not paths:
        raise FileNotFoundError(f'No *{_IMAGE_SUFFIX} images in {folder}.')
    return paths


def _image_name(image_path: str) -> str:
    return os.path.basename(image_path)[:-len(_IMAGE_SUFFIX)]


def _split_jobs(coco_root: str, split: str,
                treat_crowd_as_ignore: bool) -> list:
    image_paths = _image_paths(coco_root, split)
    if split in _UNLABELED_SPLITS:
        return [conversion.ImageJob(path, _image_name(path))
                for path in image_paths]
    json_path = panoptic_json_path(coco_root, split)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(
            f'COCO panoptic annotations not found: {json_path}.')
    png_folder = json_path[:-len('.json')]
    if not os.path.isdir(png_folder):
        raise FileNotFoundError(
            f'COCO panoptic PNG folder not found: {png_folder}.')
    return conversion.panoptic_jobs(
        image_paths, [_image_name(path) for path in image_paths],
        coco_annotations.read_panoptic_json(json_path), json_path,
        treat_crowd_as_ignore)


def convert_coco(coco_root: str,
                 output_dir: str,
                 splits: Iterable[str] = ('train', 'val'),
                 treat_crowd_as_ignore: bool = True,
                 num_shards: int = DEFAULT_NUM_SHARDS,
                 num_workers: Optional[int] = None,
                 show_progress: bool = True) -> dict[str, list[str]]:
    """Converts COCO panoptic splits to TFRecord shards.

    Returns split -> its shard paths, in order. Every split's folders,
    json and files are checked before anything is written; a bad image or
    PNG is named when its worker reads it (FileNotFoundError, ValueError).
    PNG segments missing from segments_info are void and logged (warning).

    Args:
      coco_root: folder holding <split>2017/ and annotations/.
      output_dir: where the shards go (created if needed).
      splits: split names ('train', 'val', 'test'); 'test' is written
        without labels.
      treat_crowd_as_ignore: crowd regions become void (0) instead of
        `label * 256`; DeepLab2's default.
      num_shards: shards per split (DeepLab2: 1000).
      num_workers, show_progress: see `conversion.convert_splits`.
    """
    return conversion.convert_splits(
        splits, lambda split: _split_jobs(coco_root, split,
                                          treat_crowd_as_ignore),
        coco_annotations.prepare_example, output_dir, num_shards,
        num_workers=num_workers, show_progress=show_progress)
