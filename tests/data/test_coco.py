"""The COCO panoptic converter: DeepLab2's label space and label values
(worked out by hand below), image bytes kept, resumable, and errors that
name the bad file."""

import json
import logging
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab2 import common
from deeplab2.data import coco
from deeplab2.data import coco_labels
from deeplab2.data import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
H, W = 40, 60

# Labels read off DeepLab2's table by position (1-based): person (COCO id 1)
# is 1, car (3) is 3, bottle (44) is 40 (ids 12, 26, 29, 30 are unused),
# toothbrush (90) is 80, the last thing; banner (92) is 81, the first stuff;
# tree-merged (184) is 117; rug-merged (200) is 133.
PERSON, CAR, BOTTLE, BANNER, TREE, RUG = 1, 3, 40, 81, 117, 133


def _color(segment_id):
    return (segment_id % 256, segment_id // 256 % 256, segment_id // 65536)


def _write_image(root, split, name, segments, rects, mode='RGB'):
    """Writes <split>2017/<name>.jpg and its panoptic PNG; returns the
    annotation. `rects` maps segment id -> (row0, row1, col0, col1)."""
    ids = np.zeros((H, W), np.int64)
    for segment_id, (r0, r1, c0, c1) in rects.items():
        ids[r0:r1, c0:c1] = segment_id
    png = np.stack([ids % 256, ids // 256 % 256, ids // 65536],
                   axis=-1).astype(np.uint8)
    png_folder = root / 'annotations' / f'panoptic_{split}2017'
    png_folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(png).save(png_folder / f'{name}.png')
    image_folder = root / f'{split}2017'
    image_folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(rects))
    image = Image.fromarray(rng.integers(0, 255, (H, W, 3), np.uint8))
    image.convert(mode).save(image_folder / f'{name}.jpg')
    infos = []
    for segment_id, category_id, iscrowd in segments:
        infos.append(dict(id=segment_id, category_id=category_id,
                          iscrowd=iscrowd,
                          area=int(np.count_nonzero(ids == segment_id)),
                          bbox=[0, 0, 1, 1]))
    return dict(image_id=int(name), file_name=f'{name}.png',
                segments_info=infos)


def _write_json(root, split, annotations):
    path = root / 'annotations' / f'panoptic_{split}2017.json'
    path.write_text(json.dumps(dict(annotations=annotations,
                                    images=[], categories=[])))
    return path


@pytest.fixture
def coco_root(tmp_path) -> pathlib.Path:
    root = tmp_path / 'coco'
    train = [
        _write_image(root, 'train', '000000000001', [
            (5, 1, 0), (7, 1, 0),  # two persons
            (9, 3, 1),  # a crowd of cars
            (11, 3, 0),  # a car: instance 1, the crowd takes no number
            (300, 92, 0),  # banner (stuff), id in R and G
            (65536 + 3, 200, 0),  # rug-merged (stuff), id in R and B
        ], {5: (0, 10, 0, 10), 7: (0, 10, 10, 20), 9: (10, 20, 0, 20),
            11: (10, 20, 20, 30), 300: (20, 40, 0, 60),
            65536 + 3: (0, 20, 40, 60)}),
        # Segments listed out of id order: numbering follows the json.
        _write_image(root, 'train', '000000000002', [
            (2, 44, 0), (1, 44, 0), (3, 184, 0)],
            {1: (0, 20, 0, 30), 2: (0, 20, 30, 60), 3: (20, 40, 0, 60)},
            mode='L'),
    ]
    _write_json(root, 'train', train)
    val = [_write_image(root, 'val', '000000000003', [(1, 90, 0)],
                        {1: (0, 40, 0, 30)})]
    _write_json(root, 'val', val)
    return root


def _expected_first(crowd):
    label = np.zeros((H, W), np.int64)  # unlabeled pixels are void, 0
    label[0:10, 0:10] = PERSON * 256 + 1
    label[0:10, 10:20] = PERSON * 256 + 2
    label[10:20, 0:20] = crowd
    label[10:20, 20:30] = CAR * 256 + 1
    label[20:40, :] = BANNER * 256
    label[0:20, 40:60] = RUG * 256
    return label


def _decoded(path):
    return [tfrecord.decode_example(example.SerializeToString())
            for example in tfrecord.read_examples(path)]


def test_category_table_and_mapping():
    assert len(coco.COCO_CATEGORIES) == 133
    assert sum(c.isthing for c in coco.COCO_CATEGORIES) == 80
    assert all(c.isthing for c in coco.COCO_CATEGORIES[:80])
    mapping = coco.coco_id_to_label_map()
    assert sorted(mapping.values()) == list(range(1, 134))
    assert coco_labels.THING_LABELS == frozenset(range(1, 81))
    assert (coco.coco_id_to_label(1), coco.coco_id_to_label(44),
            coco.coco_id_to_label(90), coco.coco_id_to_label(92),
            coco.coco_id_to_label(184), coco.coco_id_to_label(200)) == (
                PERSON, BOTTLE, 80, BANNER, TREE, RUG)
    assert coco.COCO_CATEGORIES[0].name == 'person'
    assert tuple(coco.COCO_CATEGORIES[0].color) == (220, 20, 60)
    assert coco_labels.LABEL_TO_COCO_ID[RUG] == 200
    assert coco_labels.COLORMAP.shape == (134, 3)
    with pytest.raises(KeyError, match='12'):
        coco.coco_id_to_label(12)


def test_converts_labels_as_deeplab2(coco_root, tmp_path):
    shard_paths = coco.convert_coco(str(coco_root), str(tmp_path / 'out'),
                                    num_shards=2, num_workers=1,
                                    show_progress=False)
    assert [os.path.basename(p) for p in shard_paths['train']] == [
        'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord']
    first, = _decoded(shard_paths['train'][0])
    second, = _decoded(shard_paths['train'][1])
    assert first['image_name'].numpy() == b'000000000001'
    np.testing.assert_array_equal(first['label'][..., 0], _expected_first(0))
    expected = np.zeros((H, W), np.int64)
    expected[0:20, 30:60] = BOTTLE * 256 + 1  # segment 2 comes first
    expected[0:20, 0:30] = BOTTLE * 256 + 2
    expected[20:40, :] = TREE * 256
    np.testing.assert_array_equal(second['label'][..., 0], expected)
    # RGB JPEGs are stored byte for byte; the grey one becomes RGB JPEG.
    example = tfrecord.read_examples(shard_paths['train'][0])[0]
    feature = example.features.feature
    assert feature[common.KEY_ENCODED_IMAGE].bytes_list.value[0] == (
        coco_root / 'train2017' / '000000000001.jpg').read_bytes()
    assert feature[common.KEY_IMAGE_FORMAT].bytes_list.value[0] == b'jpeg'
    assert feature[common.KEY_LABEL_FORMAT].bytes_list.value[0] == b'raw'
    assert len(feature) == 8
    assert second['image'].shape == (H, W, 3)
    val, = _decoded(shard_paths['val'][0])
    assert np.unique(val['label']).tolist() == [0, 80 * 256 + 1]
    assert not tfrecord.read_examples(shard_paths['val'][1])


def test_crowd_kept_as_class_when_not_ignored(coco_root, tmp_path):
    shard_paths = coco.convert_coco(
        str(coco_root), str(tmp_path / 'out'), splits=('train',),
        treat_crowd_as_ignore=False, num_shards=1, num_workers=1,
        show_progress=False)
    first = _decoded(shard_paths['train'][0])[0]
    np.testing.assert_array_equal(first['label'][..., 0],
                                  _expected_first(CAR * 256))


def test_rerun_after_a_bad_image_keeps_shards(coco_root, tmp_path):
    output_dir = tmp_path / 'out'
    second = coco_root / 'train2017' / '000000000002.jpg'
    good = second.read_bytes()
    second.write_bytes(good[:100])
    with pytest.raises(ValueError, match=str(second)):
        coco.convert_coco(str(coco_root), str(output_dir), num_shards=2,
                          num_workers=1, show_progress=False)
    kept = output_dir / 'train-00000-of-00002.tfrecord'
    assert os.listdir(output_dir) == [kept.name]
    kept_stat = kept.stat()
    (output_dir / 'val-00001-of-00002.tfrecord.incomplete').write_bytes(b'x')
    second.write_bytes(good)
    shard_paths = coco.convert_coco(str(coco_root), str(output_dir),
                                    num_shards=2, num_workers=1,
                                    show_progress=False)
    # The complete shard was not written again; the rest were.
    assert (kept.stat().st_ino, kept.stat().st_mtime_ns) == (
        kept_stat.st_ino, kept_stat.st_mtime_ns)
    assert not list(output_dir.glob('*.incomplete'))
    assert [len(tfrecord.read_examples(p)) for p in shard_paths['train']] == [
        1, 1]
    assert len(tfrecord.read_examples(shard_paths['val'][0])) == 1


def _edit_json(coco_root, edit):
    path = coco_root / 'annotations' / 'panoptic_train2017.json'
    data = json.loads(path.read_text())
    edit(data['annotations'])
    path.write_text(json.dumps(data))


def _convert(coco_root, tmp_path):
    coco.convert_coco(str(coco_root), str(tmp_path / 'out'),
                      splits=('train',), num_shards=1, num_workers=1,
                      show_progress=False)


def test_missing_folders_and_json_are_named(coco_root, tmp_path):
    json_path = coco_root / 'annotations' / 'panoptic_val2017.json'
    json_path.unlink()
    with pytest.raises(FileNotFoundError, match=str(json_path)):
        coco.convert_coco(str(coco_root), str(tmp_path / 'out'),
                          num_workers=1)
    with pytest.raises(FileNotFoundError, match='test2017'):
        coco.convert_coco(str(coco_root), str(tmp_path / 'out'),
                          splits=('test',), num_workers=1)
    assert not (tmp_path / 'out').exists()  # checked before writing
    png_folder = coco_root / 'annotations' / 'panoptic_train2017'
    for png in png_folder.iterdir():
        png.unlink()
    png_folder.rmdir()
    with pytest.raises(FileNotFoundError, match=str(png_folder)):
        _convert(coco_root, tmp_path)


def test_bad_json_is_named(coco_root, tmp_path):
    json_path = coco_root / 'annotations' / 'panoptic_train2017.json'
    json_path.write_text('{"annotations": [')
    with pytest.raises(ValueError, match=str(json_path)):
        _convert(coco_root, tmp_path)


@pytest.mark.parametrize('folder, name', [
    ('train2017', '000000000002.jpg'),
    ('annotations/panoptic_train2017', '000000000002.png'),
])
def test_corrupt_image_or_png_is_named(coco_root, tmp_path, folder, name):
    bad = coco_root / folder / name
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(ValueError, match=str(bad)):
        _convert(coco_root, tmp_path)
    assert not list((tmp_path / 'out').glob('*.incomplete'))


def test_unknown_category_is_named(coco_root, tmp_path):
    def edit(annotations):
        annotations[1]['segments_info'][0]['category_id'] = 12
    _edit_json(coco_root, edit)
    with pytest.raises(ValueError, match='category_id 12') as error:
        _convert(coco_root, tmp_path)
    assert '000000000002.png' in str(error.value)


def test_segment_without_annotation_is_void_and_named(coco_root, tmp_path,
                                                     caplog):
    # As DeepLab2: the unlisted segment's pixels are void; unlike it, the
    # user is told which PNG, segment and how many pixels.
    def edit(annotations):
        del annotations[1]['segments_info'][2]  # segment 3, the tree
    _edit_json(coco_root, edit)
    with caplog.at_level(logging.WARNING):
        _convert(coco_root, tmp_path)
    warnings = [record.getMessage() for record in caplog.records
                if record.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    png = coco_root / 'annotations' / 'panoptic_train2017' / '000000000002.png'
    assert str(png) in warnings[0]
    assert 'segments_info lacks: 3 (1200 pixels);' in warnings[0]
    second = _decoded(str(tmp_path / 'out' /
                          'train-00000-of-00001.tfrecord'))[1]
    expected = np.zeros((H, W), np.int64)
    expected[0:20, 30:60] = BOTTLE * 256 + 1
    expected[0:20, 0:30] = BOTTLE * 256 + 2
    np.testing.assert_array_equal(second['label'][..., 0], expected)


@pytest.mark.parametrize('changes, message', [
    (dict(area=1), 'covers'),
    (dict(category_id=200, iscrowd=1), 'iscrowd'),
])
def test_bad_segment_is_named(coco_root, tmp_path, changes, message):
    def edit(annotations):
        annotations[1]['segments_info'][0].update(changes)
    _edit_json(coco_root, edit)
    with pytest.raises(ValueError, match=message) as error:
        _convert(coco_root, tmp_path)
    assert '000000000002.png' in str(error.value)


def test_image_without_annotation_is_named(coco_root, tmp_path):
    _edit_json(coco_root, lambda annotations: annotations.pop(0))
    with pytest.raises(ValueError, match='000000000001.jpg'):
        _convert(coco_root, tmp_path)


def test_unlabeled_test_split(coco_root, tmp_path):
    test_folder = coco_root / 'test2017'
    test_folder.mkdir()
    source = coco_root / 'val2017' / '000000000003.jpg'
    (test_folder / '000000000004.jpg').write_bytes(source.read_bytes())
    shard_paths = coco.convert_coco(str(coco_root), str(tmp_path / 'out'),
                                    splits=('test',), num_shards=1,
                                    num_workers=1, show_progress=False)
    example, = tfrecord.read_examples(shard_paths['test'][0])
    assert common.KEY_ENCODED_LABEL not in example.features.feature
    assert len(example.features.feature) == 6


def test_cli_with_worker_processes(coco_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'scripts/build_coco_data.py'),
         f'--coco_root={coco_root}', f'--output_dir={tmp_path / "out"}',
         '--splits=train', '--num_shards=1', '--num_workers=2',
         '--notreat_crowd_as_ignore'],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.listdir(tmp_path / 'out') == ['train-00000-of-00001.tfrecord']
    assert 'Converting train: 2/2' in result.stderr
    shard = tmp_path / 'out' / 'train-00000-of-00001.tfrecord'
    first = _decoded(str(shard))[0]
    np.testing.assert_array_equal(first['label'][..., 0],
                                  _expected_first(CAR * 256))
