"""Writes per-split TFRecord shards from jobs prepared in worker processes.

Generic over what a job is: callers (`conversion.convert_splits` for the
dataset converters) give each split's jobs, a `prepare` function run in
worker processes and a `to_record` function run here. This module does the
rest, the same way for every dataset:

* shard `i` of `n` is `<split>-%05d-of-%05d.tfrecord` and holds jobs
  `[i * ceil(N / n), (i + 1) * ceil(N / n))` in the order given (unused
  shards are empty files);
* a shard is written under `<name>.incomplete` and renamed once complete
  (`files.write_atomically`), so a rerun keeps every shard whose record
  count is right and rewrites the others (stale `.incomplete` files are
  removed);
* jobs are prepared by a `spawn` process pool (or in this process when one
  worker is asked for), in order, with a bounded number in flight;
* a one-line counter per split goes to stderr (`progress.Progress`);
* a prepared job's `warnings` (strings, if it has that attribute) are
  logged here, as its record is written.
"""

import collections
import concurrent.futures
import contextlib
import glob
import logging
import math
import multiprocessing
import os
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import tensorflow as tf

from deeplab2 import files
from deeplab2 import progress as progress_lib

INCOMPLETE_SUFFIX = '.incomplete'

PrepareFn = Callable[[Any], Any]
ToRecordFn = Callable[[Any], bytes]


def shard_name(split: str, index: int, num_shards: int) -> str:
    return '%s-%05d-of-%05d.tfrecord' % (split, index, num_shards)


def count_records(path: str) -> Optional[int]:
    """Records in a TFRecord file, or None when it is unreadable."""
    try:
        return sum(1 for _ in tf.data.TFRecordDataset(path))
    except tf.errors.OpError:
        return None


def _is_complete(path: str, num_examples: int) -> bool:
    # Shards appear under their final name only once fully written; the
    # count also catches a shard left by a run with other settings.
    return os.path.isfile(path) and count_records(path) == num_examples


def _ordered_map(executor, prepare: PrepareFn, jobs: Sequence,
                 window: int) -> Iterator:
    """Like executor.map, but with at most `window` results in memory."""
    pending = collections.deque()
    for job in jobs:
        pending.append(executor.submit(prepare, job))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


@contextlib.contextmanager
def preparer(prepare: PrepareFn, num_workers: int):
    """Yields a function mapping a job list to prepared examples, in order.

    With more than one worker, `prepare` runs in spawned processes and must
    be a module-level function of a module that does not load TensorFlow
    on import (spawned workers import it).
    """
    if num_workers <= 1:
        yield lambda jobs: map(prepare, jobs)
        return
    # spawn, not fork: forking a process that runs TensorFlow can deadlock.
    context = multiprocessing.get_context('spawn')
    with concurrent.futures.ProcessPoolExecutor(
            num_workers, mp_context=context) as executor:
        try:
            yield lambda jobs: _ordered_map(executor, prepare, jobs,
                                            4 * num_workers)
        except BaseException:
            executor.shutdown(wait=True, cancel_futures=True)
            raise


def _log_warnings(prepared, progress: progress_lib.Progress) -> None:
    """Logs a prepared job's `warnings` (worker processes return them: their
    own log lines would bypass the logging set up here), each starting at
    the left margin rather than after the live counter. A rerun that keeps
    a complete shard does not repeat its warnings."""
    for warning in getattr(prepared, 'warnings', ()):
        progress.clear()
        logging.warning('%s', warning)


def write_shard(path: str, jobs: Sequence, prepare_jobs, to_record: ToRecordFn,
                progress: progress_lib.Progress) -> None:
    """Writes one shard under a temporary name, renamed when complete."""

    def write(temporary: str) -> None:
        with tf.io.TFRecordWriter(temporary) as writer:
            for prepared in prepare_jobs(jobs):
                _log_warnings(prepared, progress)
                writer.write(to_record(prepared))
                progress.advance()

    files.write_atomically(path, write, temporary=path + INCOMPLETE_SUFFIX)


def plan_split(jobs: Sequence, output_dir: str, split: str,
               num_shards: int) -> tuple[list, list]:
    """Returns (all shard paths, [(path, jobs)] of shards still to write)."""
    per_shard = math.ceil(len(jobs) / num_shards)
    shards = [(os.path.join(output_dir, shard_name(split, i, num_shards)),
               jobs[i * per_shard:(i + 1) * per_shard])
              for i in range(num_shards)]
    todo = [(path, shard_jobs) for path, shard_jobs in shards
            if not _is_complete(path, len(shard_jobs))]
    for path in glob.glob(os.path.join(
            glob.escape(output_dir), f'{glob.escape(split)}-*'
            f'{INCOMPLETE_SUFFIX}')):
        os.remove(path)  # Left by an interrupted run; rewritten below.
    if len(todo) < num_shards:
        logging.info('%s: keeping %d complete shards in %s', split,
                     num_shards - len(todo), output_dir)
    return [path for path, _ in shards], todo


def write_splits(jobs_by_split: Mapping[str, Sequence],
                 output_dir: str,
                 num_shards: int,
                 prepare: PrepareFn,
                 to_record: ToRecordFn,
                 num_workers: Optional[int] = None,
                 show_progress: bool = True) -> dict[str, list[str]]:
    """Writes every split's shards; returns split -> its shard paths.

    Args:
      jobs_by_split: split name -> its jobs, in record order.
      output_dir: where the shards go (created if needed).
      num_shards: shards per split.
      prepare: job -> prepared example; runs in worker processes.
      to_record: prepared example -> serialized record; runs here.
      num_workers: processes running `prepare`; default os.cpu_count().
        Never more than there are jobs left to prepare.
      show_progress: print a counter to stderr.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be positive, got {num_shards}.')
    num_workers = num_workers or os.cpu_count() or 1
    os.makedirs(output_dir, exist_ok=True)
    shard_paths, todo_by_split = {}, {}
    for split, jobs in jobs_by_split.items():
        shard_paths[split], todo_by_split[split] = plan_split(
            jobs, output_dir, split, num_shards)
    remaining = sum(len(shard_jobs) for todo in todo_by_split.values()
                    for _, shard_jobs in todo)
    num_workers = min(num_workers, max(remaining, 1))
    with preparer(prepare, num_workers) as prepare_jobs:
        for split, todo in todo_by_split.items():
            total = len(jobs_by_split[split])
            progress = progress_lib.Progress(
                total, label=f'Converting {split}:', unit='image',
                done=total - sum(len(shard_jobs) for _, shard_jobs in todo),
                live=show_progress)
            for path, shard_jobs in todo:
                write_shard(path, shard_jobs, prepare_jobs, to_record,
                            progress)
    return shard_paths
