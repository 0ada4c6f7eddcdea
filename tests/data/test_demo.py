"""The demo dataset: deterministic raw scenes, valid converted labels, cache."""

import glob
import hashlib
import inspect
import os
import pathlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import files
from deeplab2.data import datasets
from deeplab2.data import demo
from deeplab2.data import synthetic_cityscapes as raw_tree
from deeplab2.data import synthetic_scene as scenes

_NUM_TRAIN, _NUM_VAL = 4, 2
_SMALL = dict(num_train=_NUM_TRAIN, num_val=_NUM_VAL, seed=0)


def _hashes(root):
    paths = sorted(glob.glob(os.path.join(root, '**', '*.png'),
                             recursive=True))
    return {os.path.relpath(path, root):
            hashlib.sha256(open(path, 'rb').read()).hexdigest()
            for path in paths}


def _read_panoptic_labels(tfrecord_dir, split):
    labels = {}
    for path in sorted(glob.glob(os.path.join(tfrecord_dir,
                                              f'{split}-*.tfrecord'))):
        for record in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(record.numpy())
            feature = example.features.feature
            height = feature[common.KEY_IMAGE_HEIGHT].int64_list.value[0]
            width = feature[common.KEY_IMAGE_WIDTH].int64_list.value[0]
            name = feature[common.KEY_IMAGE_FILENAME].bytes_list.value[0]
            label = np.frombuffer(
                feature[common.KEY_ENCODED_LABEL].bytes_list.value[0],
                '<i4').reshape(height, width)
            labels[name.decode()] = label
    return labels


@pytest.fixture(scope='module')
def materialized(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp('cache'))
    tfrecord_dir = demo.materialize_demo_dataset(cache_dir, num_workers=1,
                                                 **_SMALL)
    return cache_dir, tfrecord_dir


def test_generating_twice_gives_identical_files(tmp_path):
    first = raw_tree.generate_demo_cityscapes(str(tmp_path / 'a'), 3, 2)
    second = raw_tree.generate_demo_cityscapes(str(tmp_path / 'b'), 3, 2)
    hashes = _hashes(first)
    assert len(hashes) == 5 * 3
    assert hashes == _hashes(second)
    raw_tree.generate_demo_cityscapes(first, 3, 2)  # Rewriting in place.
    assert _hashes(first) == hashes


def test_seed_and_index_change_the_scene():
    base = scenes.generate_scene(0, 'train', 0)[0]
    assert not np.array_equal(base, scenes.generate_scene(0, 'train', 1)[0])
    assert not np.array_equal(base, scenes.generate_scene(1, 'train', 0)[0])
    assert not np.array_equal(base, scenes.generate_scene(0, 'val', 0)[0])


def test_raw_layout_and_encodings(tmp_path):
    root = raw_tree.generate_demo_cityscapes(str(tmp_path), 2, 1, height=64,
                                         width=128)
    images = sorted(glob.glob(os.path.join(
        root, 'leftImg8bit', '*', '*', '*_leftImg8bit.png')))
    assert [os.path.relpath(p, root) for p in images] == [
        'leftImg8bit/train/aldenburg/aldenburg_000000_000000_leftImg8bit.png',
        'leftImg8bit/train/brightwater/brightwater_000000_000001_'
        'leftImg8bit.png',
        'leftImg8bit/val/cedarfield/cedarfield_000000_000000_leftImg8bit.png',
    ]
    label_dir = os.path.join(root, 'gtFine', 'train', 'aldenburg')
    image = Image.open(images[0])
    label_ids = Image.open(os.path.join(
        label_dir, 'aldenburg_000000_000000_gtFine_labelIds.png'))
    instance_ids = Image.open(os.path.join(
        label_dir, 'aldenburg_000000_000000_gtFine_instanceIds.png'))
    assert (image.mode, image.size) == ('RGB', (128, 64))
    assert (label_ids.mode, label_ids.size) == ('L', (128, 64))
    assert instance_ids.mode.startswith('I')
    assert np.asarray(instance_ids).max() > 255  # 16-bit ids survive.


def test_raw_labels_are_consistent_and_varied():
    seen_labels, crowd_labels = set(), set()
    instance_sizes = []
    for index in range(12):
        _, label_ids, instance_ids = scenes.generate_scene(0, 'train', index)
        raw_tree.validate_cityscapes_labels(label_ids, instance_ids)
        seen_labels |= set(np.unique(label_ids).tolist())
        things = np.isin(label_ids, scenes.THING_LABEL_IDS)
        crowd_labels |= set(np.unique(
            instance_ids[things & (instance_ids < 1000)]).tolist())
        ids, counts = np.unique(instance_ids[instance_ids >= 1000],
                                return_counts=True)
        instance_sizes += counts.tolist()
        # Instance numbers k are per class, from 0.
        assert all(i % 1000 < 100 for i in ids)
    assert seen_labels == {0, 1, 7, 8, 11, 21, 23, 24, 26, 33}
    assert crowd_labels == {24, 26}
    assert min(instance_sizes) < 300 < 4096 < max(instance_sizes)


def test_instances_of_a_class_differ_in_colour():
    rgb, _, instance_ids = scenes.generate_scene(0, 'train', 2)
    means = [rgb[instance_ids == i].mean(axis=0)
             for i in np.unique(instance_ids) if i // 1000 == scenes.CAR]
    assert len(means) >= 2
    assert np.abs(means[0] - means[1]).max() > 2


def test_raw_label_check_catches_disagreement():
    label_ids = np.full((4, 4), scenes.CAR, np.uint8)
    instance_ids = np.full((4, 4), 26001, np.uint16)
    raw_tree.validate_cityscapes_labels(label_ids, instance_ids)
    label_ids[0, 0] = scenes.PERSON
    with pytest.raises(ValueError, match='disagree'):
        raw_tree.validate_cityscapes_labels(label_ids, instance_ids)
    with pytest.raises(ValueError, match='without instances'):
        raw_tree.validate_cityscapes_labels(
            np.full((1, 1), scenes.ROAD), np.full((1, 1), 7001))


def test_panoptic_label_check():
    descriptor = datasets.DEMO
    label = np.array([[0, 2000, 13001, 13002], [13000, 255000, 11001, 18001]])
    assert raw_tree.validate_panoptic_label(label, descriptor) == {
        'thing_classes': [11, 13, 18], 'num_instances': 4,
        'crowd_classes': [13], 'void_pixels': 1}
    for bad, message in ((2001, 'without instances'),
                         (19000, 'unknown classes'),
                         (255001, 'void ids'), (-1, 'negative')):
        with pytest.raises(ValueError, match=message):
            raw_tree.validate_panoptic_label(np.array([[bad]]), descriptor)


def test_converted_labels_are_valid(materialized):
    _, tfrecord_dir = materialized
    summaries = {}
    for split, count in (('train', _NUM_TRAIN), ('val', _NUM_VAL)):
        labels = _read_panoptic_labels(tfrecord_dir, split)
        assert len(labels) == count
        for name, label in labels.items():
            summaries[name] = raw_tree.validate_panoptic_label(label,
                                                           datasets.DEMO)
    thing_classes = set().union(*(s['thing_classes']
                                  for s in summaries.values()))
    crowd_classes = set().union(*(s['crowd_classes']
                                  for s in summaries.values()))
    # person 11, car 13, bicycle 18 (train ids).
    assert len(thing_classes) >= 2 and thing_classes <= {11, 13, 18}
    assert crowd_classes
    assert any(s['void_pixels'] for s in summaries.values())
    assert all(s['num_instances'] >= 2 for s in summaries.values())


def test_converted_labels_match_raw_labels(materialized):
    cache_dir, tfrecord_dir = materialized
    raw_root = os.path.join(os.path.dirname(tfrecord_dir), 'cityscapes')
    label = _read_panoptic_labels(tfrecord_dir, 'val')[
        'cedarfield_000000_000000']
    label_ids = np.asarray(Image.open(os.path.join(
        raw_root, 'gtFine', 'val', 'cedarfield',
        'cedarfield_000000_000000_gtFine_labelIds.png')))
    train_ids = {7: 0, 8: 1, 11: 2, 21: 8, 23: 10, 24: 11, 26: 13, 33: 18,
                 0: 255, 1: 255}
    expected_semantic = np.vectorize(train_ids.get)(label_ids)
    np.testing.assert_array_equal(label // 1000, expected_semantic)


def test_materialize_reuses_the_cache(materialized, monkeypatch):
    cache_dir, tfrecord_dir = materialized
    shards = sorted(glob.glob(os.path.join(tfrecord_dir, '*.tfrecord')))
    assert [os.path.basename(p) for p in shards[:1]] == [
        'train-00000-of-00010.tfrecord']
    assert len(shards) == 20
    mtimes = [os.stat(p).st_mtime_ns for p in shards]

    def fail(*args, **kwargs):
        raise AssertionError('regenerated a cached dataset')

    monkeypatch.setattr(raw_tree, 'generate_demo_cityscapes', fail)
    assert demo.materialize_demo_dataset(cache_dir, **_SMALL) == tfrecord_dir
    assert [os.stat(p).st_mtime_ns for p in shards] == mtimes
    # Only the finished folder is left, under a versioned name.
    assert os.listdir(cache_dir) == [os.path.basename(
        os.path.dirname(tfrecord_dir))]
    assert f'v{demo.GENERATOR_VERSION}' in tfrecord_dir


def test_cache_env_var_is_honoured(materialized, monkeypatch, tmp_path):
    cache_dir, tfrecord_dir = materialized
    monkeypatch.setenv('DEEPLAB2_CACHE', cache_dir)
    monkeypatch.setattr(raw_tree, 'generate_demo_cityscapes', None)
    assert demo.materialize_demo_dataset(**_SMALL) == tfrecord_dir
    monkeypatch.delenv('DEEPLAB2_CACHE')
    monkeypatch.setenv('HOME', str(tmp_path))
    assert demo.default_cache_dir() == str(tmp_path / '.cache' / 'deeplab2')


def test_interrupted_build_leaves_no_cache(monkeypatch, tmp_path):
    from deeplab2.data import cityscapes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cityscapes, 'convert_cityscapes', interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.materialize_demo_dataset(str(tmp_path), num_train=1, num_val=1)
    assert os.listdir(tmp_path) == []


def test_stale_partial_builds_are_removed(monkeypatch, tmp_path):
    final = pathlib.Path(demo.demo_dataset_dir(str(tmp_path), 1, 1))
    stale = files.sibling_path(final, 'staging')
    fresh = files.sibling_path(final, 'staging')
    other = files.sibling_path(tmp_path / 'unrelated', 'staging')
    for path in (stale, fresh, other):
        path.mkdir()
    os.utime(stale, (0, 0))
    os.utime(other, (0, 0))
    from deeplab2.data import cityscapes
    monkeypatch.setattr(cityscapes, 'convert_cityscapes', None)
    with pytest.raises(TypeError):
        demo.materialize_demo_dataset(str(tmp_path), num_train=1, num_val=1)
    assert sorted(os.listdir(tmp_path)) == sorted([fresh.name, other.name])


def test_losing_the_build_race_returns_the_winners_cache(monkeypatch,
                                                         tmp_path):
    from deeplab2.data import cityscapes
    final = pathlib.Path(demo.demo_dataset_dir(str(tmp_path), 1, 1))

    def another_process_finishes_first(raw_dir, output_dir, **kwargs):
        os.makedirs(final / 'tfrecord')
        (final / 'tfrecord' / 'winner').touch()

    monkeypatch.setattr(cityscapes, 'convert_cityscapes',
                        another_process_finishes_first)
    assert demo.materialize_demo_dataset(
        str(tmp_path), num_train=1, num_val=1) == str(final / 'tfrecord')
    assert os.listdir(final / 'tfrecord') == ['winner']
    assert os.listdir(tmp_path) == [final.name]


def test_demo_descriptor_sizes_match_the_defaults():
    defaults = inspect.signature(demo.materialize_demo_dataset).parameters
    assert datasets.DEMO.splits_to_sizes == {
        'train': defaults['num_train'].default,
        'val': defaults['num_val'].default}
