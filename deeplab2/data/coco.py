"""COCO panoptic (raw layout) -> sharded TFRecords, as DeepLab2's converter.

Input, under `coco_root`:
  {train,val,test}2017/*.jpg
  annotations/panoptic_{train,val}2017.json and
  annotations/panoptic_{train,val}2017/*.png (segment id s coloured as
  [s % 256, s // 256 % 256, s // 65536]; the PNG shares its image's name).

Output: `<split>-%05d-of-%05d.tfrecord` shards (DeepLab2 writes 1000 per
split) holding `ceil(N / num_shards)` images each in sorted file order,
with DeepLab2's Example layout (see `tfrecord.py`): the JPEG bytes as they
are (non-RGB files are converted to RGB JPEG), the file name without
`.jpg`, format 'jpeg', and the panoptic label `label * 256 + instance` as
raw int32 (see `coco_labels.py` for the label space). The test split has no
labels. Shards are written and resumed as in `sharded_writer.py`.
"""

import glob
import os
from typing import Iterable, Optional

from deeplab2.data import coco_labels
from deeplab2.data import sharded_writer
from deeplab2.data import tfrecord

COCO_CATEGORIES = coco_labels.COCO_CATEGORIES
coco_id_to_label = coco_labels.coco_id_to_label
coco_id_to_label_map = coco_labels.coco_id_to_label_map
shard_name = sharded_writer.shard_name

DEFAULT_NUM_SHARDS = 1000  # DeepLab2's.
_ANNOTATION_FOLDER = 'annotations'
_IMAGE_SUFFIX = '.jpg'
_IMAGE_FORMAT = 'jpeg'
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
            f'{split}2017/*{_IMAGE_SUFFIX} under the COCO root).')
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
        return [coco_labels.ImageJob(path, _image_name(path))
                for path in image_paths]
    json_path = panoptic_json_path(coco_root, split)
    if not os.path.isfile(json_path):
        raise FileNotFoundError(
            f'COCO panoptic annotations not found: {json_path}.')
    png_folder = json_path[:-len('.json')]
    if not os.path.isdir(png_folder):
        raise FileNotFoundError(
            f'COCO panoptic PNG folder not found: {png_folder}.')
    segments_by_stem = coco_labels.read_panoptic_json(json_path)
    jobs = []
    for path in image_paths:
        name = _image_name(path)
        if name not in segments_by_stem:
            raise ValueError(f'Image {path} has no annotation in {json_path}.')
        png_name, segments = segments_by_stem[name]
        png_path = os.path.join(png_folder, png_name)
        if not os.path.isfile(png_path):
            raise FileNotFoundError(
                f'Panoptic annotation of {path} not found: {png_path}.')
        jobs.append(coco_labels.ImageJob(
            path, name, png_path, segments,
            treat_crowd_as_ignore=treat_crowd_as_ignore))
    return jobs


def _to_record(prepared: coco_labels.PreparedExample) -> bytes:
    example = tfrecord.encode_example(
        prepared.image_bytes, prepared.image_name, _IMAGE_FORMAT,
        prepared.height, prepared.width, prepared.panoptic_label,
        verify_image=False)
    return example.SerializeToString()


def convert_coco(coco_root: str,
                 output_dir: str,
                 splits: Iterable[str] = ('train', 'val'),
                 treat_crowd_as_ignore: bool = True,
                 num_shards: int = DEFAULT_NUM_SHARDS,
                 num_workers: Optional[int] = None,
                 show_progress: bool = True) -> dict[str, list[str]]:
    """Converts COCO panoptic splits to TFRecord shards; returns their paths.

    Args:
      coco_root: folder holding <split>2017/ and annotations/.
      output_dir: where the shards go (created if needed).
      splits: split names ('train', 'val', 'test'); 'test' is written
        without labels.
      treat_crowd_as_ignore: crowd regions become void (0) instead of
        `label * 256`; DeepLab2's default.
      num_shards: shards per split (DeepLab2: 1000).
      num_workers: processes preparing images; default os.cpu_count().
      show_progress: print a counter to stderr.

    Returns:
      split -> its shard paths, in order.

    Raises:
      FileNotFoundError, ValueError: naming the missing or bad file.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be positive, got {num_shards}.')
    # Every split is listed and its json checked before anything is written.
    jobs_by_split = {split: _split_jobs(coco_root, split,
                                        treat_crowd_as_ignore)
                     for split in splits}
    # Looked up here, not bound at import, so that tests can replace it.
    return sharded_writer.write_splits(
        jobs_by_split, output_dir, num_shards, coco_labels.prepare_example,
        _to_record, num_workers=num_workers, show_progress=show_progress)
