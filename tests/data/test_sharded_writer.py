"""sharded_writer: shard names, which jobs go in which shard, what a rerun
keeps, that an interrupted shard never appears under its final name, and
the progress counter, with string jobs worked through by hand (in this
process: worker pools are exercised by the converter tests)."""

import os

import pytest
import tensorflow as tf

from deeplab2.data import sharded_writer

JOBS = ['a', 'b', 'c', 'd', 'e']  # 3 shards: ceil(5 / 3) = 2 jobs each.
TRAIN = [f'train-0000{i}-of-00003.tfrecord' for i in range(3)]


def _records(path):
    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def _write(output_dir, jobs_by_split, prepare=str.upper, **options):
    return sharded_writer.write_splits(
        jobs_by_split, str(output_dir), 3, prepare, str.encode,
        num_workers=1, **options)


def test_shard_name():
    assert sharded_writer.shard_name('val', 3, 10) == (
        'val-00003-of-00010.tfrecord')
    assert sharded_writer.shard_name('train', 12, 1000) == (
        'train-00012-of-01000.tfrecord')


def test_jobs_fill_shards_in_order_and_unused_shards_are_empty(tmp_path):
    paths = _write(tmp_path, {'train': JOBS, 'val': ['x']},
                   show_progress=False)
    assert [os.path.basename(p) for p in paths['train']] == TRAIN
    assert [_records(p) for p in paths['train']] == [
        [b'A', b'B'], [b'C', b'D'], [b'E']]
    assert [_records(p) for p in paths['val']] == [[b'X'], [], []]
    assert sorted(os.listdir(tmp_path)) == sorted(
        TRAIN + [f'val-0000{i}-of-00003.tfrecord' for i in range(3)])


def test_plan_split_keeps_only_shards_with_the_right_count(tmp_path):
    _write(tmp_path, {'train': JOBS}, show_progress=False)
    os.remove(tmp_path / TRAIN[0])  # never finished
    with tf.io.TFRecordWriter(str(tmp_path / TRAIN[1])) as writer:
        writer.write(b'C')  # one record where two belong (other settings)
    (tmp_path / 'train-00002-of-00003.tfrecord.incomplete').write_bytes(b'x')
    (tmp_path / 'val-00000-of-00003.tfrecord.incomplete').write_bytes(b'x')
    paths, todo = sharded_writer.plan_split(JOBS, str(tmp_path), 'train', 3)
    assert paths == [str(tmp_path / name) for name in TRAIN]
    assert todo == [(str(tmp_path / TRAIN[0]), ['a', 'b']),
                    (str(tmp_path / TRAIN[1]), ['c', 'd'])]
    # The stale temporary file of this split is gone; another split's stays.
    assert sorted(os.listdir(tmp_path)) == [
        TRAIN[1], TRAIN[2], 'val-00000-of-00003.tfrecord.incomplete']


def test_interrupted_shard_leaves_no_file_at_its_final_name(tmp_path):
    seen = []

    def crash_on_d(job):
        seen.append(sorted(os.listdir(tmp_path)))
        if job == 'd':
            raise RuntimeError('simulated crash')
        return job.upper()

    with pytest.raises(RuntimeError, match='simulated crash'):
        _write(tmp_path, {'train': JOBS}, prepare=crash_on_d,
               show_progress=False)
    # While 'd' was prepared, shard 1 existed only under its temporary name.
    assert seen[-1] == [TRAIN[0], TRAIN[1] + '.incomplete']
    assert os.listdir(tmp_path) == [TRAIN[0]]
    assert _records(tmp_path / TRAIN[0]) == [b'A', b'B']


def test_progress_counts_from_the_kept_shards(tmp_path, capsys):
    _write(tmp_path, {'train': JOBS})
    first = capsys.readouterr().err
    assert [f'Converting train: {n}/5' in first for n in range(1, 6)] == (
        [True] * 5)
    assert first.endswith('\n') and first.count('\n') == 1
    os.remove(tmp_path / TRAIN[1])
    _write(tmp_path, {'train': JOBS})
    rerun = capsys.readouterr().err
    # Shards 0 and 2 (3 jobs) are kept: the counter goes 4/5, 5/5.
    assert 'Converting train: 3/5' not in rerun
    assert 'Converting train: 4/5' in rerun and 'train: 5/5' in rerun
    _write(tmp_path, {'train': JOBS}, show_progress=False)
    assert capsys.readouterr().err == ''


def test_num_shards_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match='num_shards must be positive'):
        sharded_writer.write_splits({'train': JOBS}, str(tmp_path), 0,
                                    str.upper, str.encode)
