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

Images are prepared in worker processes. Every shard is written under a
temporary name and renamed once complete, so an interrupted run can be
started again: complete shards are kept, the rest are rewritten.
"""

import collections
import concurrent.futures
import contextlib
import glob
import logging
import math
import multiprocessing
import os
import sys
from typing import Iterable, Iterator, Optional, Sequence

import tensorflow as tf

from deeplab2.data import cityscapes_labels
from deeplab2.data import tfrecord

_IMAGE_FOLDER = 'leftImg8bit'
_LABEL_FOLDER = 'gtFine'
_IMAGE_SUFFIX = '_leftImg8bit.png'
_SEMANTIC_SUFFIX = '_gtFine_labelTrainIds.png'
_UNLABELED_SPLITS = ('test',)
_INCOMPLETE_SUFFIX = '.incomplete'


def shard_name(split: str, index: int, num_shards: int) -> str:
    return '%s-%05d-of-%05d.tfrecord' % (split, index, num_shards)


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
    segments_by_image = cityscapes_labels.read_panoptic_segments(json_path)
    png_folder = json_path[:-len('.json')]
    jobs = []
    for path in image_paths:
        name = _image_name(path)
        if name not in segments_by_image:
            raise ValueError(f'Image {path} has no annotation in {json_path}.')
        png_name, segments = segments_by_image[name]
        jobs.append(cityscapes_labels.ImageJob(
            path, name, os.path.join(png_folder, png_name), segments,
            treat_crowd_as_ignore=treat_crowd_as_ignore))
    return jobs


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
        jobs.append(cityscapes_labels.ImageJob(path, name,
                                               semantic_png=label_path))
    return jobs


def _split_jobs(cityscapes_root, split, create_panoptic_data,
                treat_crowd_as_ignore) -> list:
    image_paths = _image_paths(cityscapes_root, split)
    if split in _UNLABELED_SPLITS:
        return [cityscapes_labels.ImageJob(path, _image_name(path))
                for path in image_paths]
    if create_panoptic_data:
        return _panoptic_jobs(cityscapes_root, split, image_paths,
                              treat_crowd_as_ignore)
    return _semantic_jobs(cityscapes_root, split, image_paths)


def _to_example(prepared: cityscapes_labels.PreparedExample) -> bytes:
    example = tfrecord.encode_example(
        prepared.image_bytes, prepared.image_name, 'png', prepared.height,
        prepared.width, prepared.panoptic_label,
        semantic_label_png=prepared.semantic_png, verify_image=False)
    return example.SerializeToString()


def _count_records(path: str) -> Optional[int]:
    """Records in a TFRecord file, or None when it is unreadable."""
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path))
    except tf.errors.OpError:
        return None


def _is_complete(path: str, num_examples: int) -> bool:
    # Shards appear under their final name only once fully written; the
    # count also catches a shard left by a run with other settings.
    return (os.path.isfile(path)
            and _count_records(path) == num_examples)


def _ordered_map(executor, jobs: Sequence, window: int) -> Iterator:
    """Like executor.map, but with at most `window` results in memory."""
    pending = collections.deque()
    for job in jobs:
        pending.append(executor.submit(cityscapes_labels.prepare_example,
                                       job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextlib.contextmanager
def _preparer(num_workers: int):
    """Yields a function mapping jobs to prepared examples, in order."""
    if num_workers <= 1:
        yield lambda jobs: map(cityscapes_labels.prepare_example, jobs)
        return
    # spawn, not fork: forking a process that runs TensorFlow can deadlock.
    # The workers import only NumPy and Pillow, so they start quickly.
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=context) as executor:
        try:
            yield lambda jobs: _ordered_map(executor, jobs, 4 * num_workers)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise


class _Progress:
    """A one-line stderr counter."""

    def __init__(self, split: str, total: int, done: int, enabled: bool):
        self.split, self.total, self.done = split, total, done
        self.enabled = enabled

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self.enabled:
            print(f'\rConverting {self.split}: {self.done}/{self.total}',
                  end='' if self.done < self.total else '\n',
                  file=sys.stderr, flush=True)


def _write_shard(path: str, jobs: Sequence, prepare, progress) -> None:
    temp_path = path + _INCOMPLETE_SUFFIX
    try:
        with tf.io.TFRecordWriter(temp_path) as writer:
            for prepared in prepare(jobs):
                writer.write(_to_example(prepared))
                progress.advance()
    except BaseException:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        raise
    os.replace(temp_path, path)


def _plan_split(jobs: list, output_dir: str, split: str,
                num_shards: int) -> tuple[list, list]:
    """Returns (all shard paths, [(path, jobs)] of shards still to write)."""
    per_shard = math.ceil(len(jobs) / num_shards)
    shards = [(os.path.join(output_dir, shard_name(split, i, num_shards)),
               jobs[i * per_shard:(i + 1) * per_shard])
              for i in range(num_shards)]
    todo = [(path, shard_jobs) for path, shard_jobs in shards
            if not _is_complete(path, len(shard_jobs))]
    for path in glob.glob(os.path.join(
            output_dir, f'{split}-*{_INCOMPLETE_SUFFIX}')):
        os.remove(path)  # Left by an interrupted run; rewritten below.
    if len(todo) < num_shards:
        logging.info('%s: keeping %d complete shards in %s', split,
                     num_shards - len(todo), output_dir)
    return [path for path, _ in shards], todo


def convert_cityscapes(cityscapes_root: str,
                       output_dir: str,
                       splits: Iterable[str] = ('train', 'val'),
                       create_panoptic_data: bool = True,
                       treat_crowd_as_ignore: bool = True,
                       num_shards: int = 10,
                       num_workers: Optional[int] = None,
                       show_progress: bool = True) -> dict[str, list[str]]:
    """Converts Cityscapes splits to TFRecord shards; returns their paths.

    Args:
      cityscapes_root: folder holding leftImg8bit/ and gtFine/.
      output_dir: where the shards go (created if needed).
      splits: split names; 'test' is written without labels.
      create_panoptic_data: raw int32 panoptic labels (True) or the
        labelTrainIds PNGs as semantic labels (False).
      treat_crowd_as_ignore: crowd regions become void (255000) instead of
        `class * 1000`; DeepLab2's default.
      num_shards: shards per split.
      num_workers: processes preparing images; default os.cpu_count().
      show_progress: print a counter to stderr.

    Returns:
      split -> its shard paths, in order.

    Raises:
      FileNotFoundError, ValueError: naming the missing or bad file.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be positive, got {num_shards}.')
    num_workers = num_workers or os.cpu_count() or 1
    os.makedirs(output_dir, exist_ok=True)
    # Every split is checked before anything is written.
    jobs_by_split = {split: _split_jobs(cityscapes_root, split,
                                        create_panoptic_data,
                                        treat_crowd_as_ignore)
                     for split in splits}
    shard_paths, todo_by_split = {}, {}
    for split, jobs in jobs_by_split.items():
        shard_paths[split], todo_by_split[split] = _plan_split(
            jobs, output_dir, split, num_shards)
    remaining = sum(len(shard_jobs) for todo in todo_by_split.values()
                    for _, shard_jobs in todo)
    with _preparer(min(num_workers, max(remaining, 1))) as prepare:
        for split, todo in todo_by_split.items():
            total = len(jobs_by_split[split])
            progress = _Progress(split, total, total - sum(
                len(shard_jobs) for _, shard_jobs in todo), show_progress)
            for path, shard_jobs in todo:
                _write_shard(path, shard_jobs, prepare, progress)
    return shard_paths
