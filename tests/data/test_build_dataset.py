"""scripts/build_dataset.py and its formats: small generated datasets
(odd sizes, non-contiguous ids, grey and RGBA images, crowds) whose records
must decode to the labels worked out here from the drawn regions, specs
checked against tables written by hand, and one test per bad input that
checks the error names the file and that no shard and no dataset.json were
left."""

import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab2.data import coco_panoptic_dataset
from deeplab2.data import dataset_conversion
from deeplab2.data import dataset_spec
from deeplab2.data import label_folders
from deeplab2.data import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RUN = dict(num_shards=1, num_workers=1, show_progress=False)


def _decoded(shard_paths, is_panoptic=True):
    """name -> (image uint8 [H, W, 3], label int [H, W]) of every record."""
    records = {}
    for path in shard_paths:
        for example in tfrecord.read_examples(path):
            decoded = tfrecord.decode_example(example.SerializeToString(),
                                              is_panoptic=is_panoptic)
            records[decoded['image_name'].numpy().decode()] = (
                decoded['image'].numpy(), decoded['label'].numpy()[..., 0])
    return records


def _check_image(decoded, path):
    """Grey and RGBA PNGs are stored as RGB without loss; JPEG decoders
    differ by a few levels (TensorFlow's and Pillow's chroma upsampling)."""
    expected = np.asarray(Image.open(path).convert('RGB'), np.int64)
    tolerance = 4 if path.suffix == '.jpg' else 0
    np.testing.assert_allclose(decoded, expected, atol=tolerance, rtol=0)


def _left_behind(output_dir):
    """Files a failed conversion left in `output_dir`."""
    return sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else []


def _random_image(rng, height, width, mode):
    rgba = rng.integers(0, 256, (height, width, 4), np.uint8)
    return Image.fromarray(rgba, 'RGBA').convert(mode)


# --- COCO panoptic --------------------------------------------------------

# Categories in json order (= train ids 0..3), with non-contiguous ids.
CATEGORIES = [
    {'id': 40, 'name': 'grass', 'isthing': 0},
    {'id': 7, 'name': 'robot', 'isthing': 1, 'color': [1, 2, 3]},
    {'id': 23, 'name': 'cone', 'isthing': True},  # bools are read too
    {'id': 91, 'name': 'wall', 'isthing': 0},
]
GRASS, ROBOT, CONE, WALL = 0, 1, 2, 3
VOID = 255 * 256

# Per image: its file, mode, size and segments (id, category id, iscrowd,
# rows, cols); pixels of no segment are void.
COCO_IMAGES = {
    'a.jpg': ('RGB', (17, 23), [
        (5, 7, 0, (0, 8), (0, 10)),        # robot 1
        (9, 7, 0, (0, 8), (10, 23)),       # robot 2
        (300, 23, 1, (8, 12), (0, 12)),    # a crowd of cones
        (65540, 23, 0, (8, 12), (12, 23)),  # cone 1: id in R and B
        (12, 40, 0, (12, 15), (0, 23)),    # grass; rows 15-16 are void
    ]),
    'b.png': ('L', (13, 8), [
        (2, 91, 0, (0, 13), (0, 4)),       # wall
        (1, 23, 0, (0, 6), (4, 8)),        # cone 1
    ]),
    'c.png': ('RGBA', (9, 11), [(4, 40, 0, (0, 9), (0, 11))]),
}


def _expected_coco(segments, size, crowd):
    """The label worked out from the drawn regions: train id * 256 +
    instance, instances numbered per class in listing order."""
    label = np.full(size, VOID, np.int64)
    by_category = {c['id']: index for index, c in enumerate(CATEGORIES)}
    counts = {}
    for _, category_id, iscrowd, rows, cols in segments:
        train_id = by_category[category_id]
        if iscrowd:
            value = crowd(train_id)
        elif CATEGORIES[train_id]['isthing']:
            counts[train_id] = counts.get(train_id, 0) + 1
            value = train_id * 256 + counts[train_id]
        else:
            value = train_id * 256
        label[slice(*rows), slice(*cols)] = value
    return label


@pytest.fixture
def coco_data(tmp_path):
    """(image_dir, panoptic_dir, json path) of COCO_IMAGES, listed out of
    order with arbitrary image ids."""
    rng = np.random.default_rng(0)
    image_dir, png_dir = tmp_path / 'images', tmp_path / 'panoptic'
    image_dir.mkdir()
    png_dir.mkdir()
    images, annotations = [], []
    for image_id, (file_name, (mode, size, segments)) in zip(
            (31, 4, 17), sorted(COCO_IMAGES.items(), reverse=True)):
        _random_image(rng, *size, mode).save(image_dir / file_name)
        ids = np.zeros(size, np.int64)
        for segment_id, _, _, rows, cols in segments:
            ids[slice(*rows), slice(*cols)] = segment_id
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
        png_name = os.path.splitext(file_name)[0] + '_seg.png'
        Image.fromarray(rgb.astype(np.uint8)).save(png_dir / png_name)
        images.append({'id': image_id, 'file_name': file_name})
        annotations.append({'image_id': image_id, 'file_name': png_name,
                            'segments_info': [
                                {'id': s, 'category_id': c, 'iscrowd': crowd,
                                 'area': int((ids == s).sum())}
                                for s, c, crowd, _, _ in segments]})
    # An image of another split in the same folder is left out.
    _random_image(rng, 5, 5, 'RGB').save(image_dir / 'other.jpg')
    json_path = tmp_path / 'panoptic.json'
    json_path.write_text(json.dumps({'images': images,
                                     'annotations': annotations,
                                     'categories': CATEGORIES}))
    return image_dir, png_dir, json_path


def _convert_coco(coco_data, output_dir, split='train', **options):
    image_dir, png_dir, json_path = coco_data
    return coco_panoptic_dataset.convert(
        str(image_dir), str(png_dir), str(json_path), split,
        str(output_dir), **{**RUN, **options})


def test_coco_panoptic_records_and_spec(coco_data, tmp_path):
    output_dir = tmp_path / 'my_robots'
    shard_paths, spec_path = _convert_coco(coco_data, output_dir,
                                           num_shards=2)
    records = _decoded(shard_paths)
    assert sorted(records) == ['a', 'b', 'c']
    for file_name, (mode, size, segments) in COCO_IMAGES.items():
        image, label = records[os.path.splitext(file_name)[0]]
        np.testing.assert_array_equal(
            label, _expected_coco(segments, size, lambda _: VOID))
        _check_image(image, coco_data[0] / file_name)
    a_bytes = tfrecord.read_examples(shard_paths[0])[0].features.feature[
        'image/encoded'].bytes_list.value[0]
    assert a_bytes == (coco_data[0] / 'a.jpg').read_bytes()  # Kept as is.
    assert spec_path == str(output_dir / 'dataset.json')
    assert json.loads(pathlib.Path(spec_path).read_text()) == {
        'name': 'my_robots',
        'classes': [
            {'name': 'grass', 'eval_id': 40, 'thing': False},
            {'name': 'robot', 'eval_id': 7, 'thing': True,
             'color': [1, 2, 3]},
            {'name': 'cone', 'eval_id': 23, 'thing': True},
            {'name': 'wall', 'eval_id': 91, 'thing': False}],
        'ignore_label': 255, 'eval_void_id': 0,
        'panoptic_label_divisor': 256,
        'splits': {'train': {'file_pattern': 'train-?????-of-00002.tfrecord',
                             'num_examples': 3, 'max_instances': 2}}}
    descriptor = dataset_spec.load_spec(spec_path)
    assert descriptor.class_has_instances_list == (ROBOT, CONE)
    assert descriptor.eval_ids == (40, 7, 23, 91)
    assert sorted(glob.glob(descriptor.file_patterns['train'])) == \
        shard_paths


def test_coco_panoptic_crowd_kept_and_second_split_added(coco_data,
                                                         tmp_path):
    output_dir = tmp_path / 'out'
    _convert_coco(coco_data, output_dir, dataset_name='robots')
    shard_paths, spec_path = _convert_coco(
        coco_data, output_dir, split='val', treat_crowd_as_ignore=False)
    mode, size, segments = COCO_IMAGES['a.jpg']
    np.testing.assert_array_equal(
        _decoded(shard_paths)['a'][1],
        _expected_coco(segments, size, lambda train_id: train_id * 256))
    spec = json.loads(pathlib.Path(spec_path).read_text())
    assert spec['name'] == 'robots'  # The existing name is kept.
    assert sorted(spec['splits']) == ['train', 'val']


def test_a_different_class_table_names_both_files(coco_data, tmp_path):
    output_dir = tmp_path / 'out'
    _convert_coco(coco_data, output_dir)
    spec_before = (output_dir / 'dataset.json').read_text()
    json_path = coco_data[2]
    data = json.loads(json_path.read_text())
    data['categories'][3]['name'] = 'fence'
    json_path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as error:
        _convert_coco(coco_data, output_dir, split='val')
    assert str(json_path) in str(error.value)
    assert str(output_dir / 'dataset.json') in str(error.value)
    assert "'fence'" in str(error.value)
    assert _left_behind(output_dir) == ['dataset.json',
                                        'train-00000-of-00001.tfrecord']
    assert (output_dir / 'dataset.json').read_text() == spec_before


def _edit_json(json_path, edit):
    data = json.loads(json_path.read_text())
    edit(data)
    json_path.write_text(json.dumps(data))


def _annotation(data, png_name):
    return next(a for a in data['annotations'] if a['file_name'] == png_name)


def _set(data, png_name, index, **changes):
    _annotation(data, png_name)['segments_info'][index].update(changes)


def _resize_png(path):
    Image.open(path).resize((4, 4)).save(path)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:60])


# (what to break, the file the error must name, a part of the message).
COCO_BAD_INPUTS = {
    'size_mismatch': (
        lambda d: _resize_png(d[1] / 'b_seg.png'), 'panoptic/b_seg.png',
        'differs from that of image'),
    'category_missing_from_json': (
        lambda d: _edit_json(d[2], lambda j: _set(j, 'b_seg.png', 1,
                                                  category_id=8)),
        'panoptic.json', 'category_id: 8 is not the id'),
    'segment_listed_twice': (
        lambda d: _edit_json(d[2], lambda j: _set(j, 'a_seg.png', 1, id=5)),
        'panoptic.json', 'same pixels'),
    'png_id_missing_from_segments_info': (
        lambda d: _edit_json(d[2], lambda j: _annotation(
            j, 'a_seg.png')['segments_info'].pop(4)),
        'panoptic/a_seg.png', r'segment ids \[12\]'),
    'image_without_annotation': (
        lambda d: _edit_json(d[2], lambda j: j['annotations'].pop(0)),
        'images/c.png', 'has no annotation'),
    'annotation_without_image': (
        lambda d: _edit_json(d[2], lambda j: j['images'].pop(0)),
        'panoptic.json', 'image_id: 31 is the id of none'),
    'missing_image': (
        lambda d: (d[0] / 'b.png').unlink(), 'images/b.png', 'not found'),
    'missing_png': (
        lambda d: (d[1] / 'a_seg.png').unlink(), 'panoptic/a_seg.png',
        'not found'),
    'corrupt_image': (
        lambda d: _truncate(d[0] / 'c.png'), 'images/c.png', 'Cannot read'),
    'wrong_area': (
        lambda d: _edit_json(d[2], lambda j: _set(j, 'c_seg.png', 0,
                                                  area=3)),
        'panoptic/c_seg.png', 'covers 99 pixels'),
    'crowd_stuff': (
        lambda d: _edit_json(d[2], lambda j: _set(j, 'c_seg.png', 0,
                                                  iscrowd=1)),
        'panoptic.json', 'cannot be a crowd'),
}


@pytest.mark.parametrize('case', sorted(COCO_BAD_INPUTS))
def test_coco_panoptic_bad_input_names_the_file(coco_data, tmp_path, case):
    _check_bad_input(COCO_BAD_INPUTS[case], coco_data, _convert_coco,
                     tmp_path)


def _check_bad_input(bad_input, data, convert, tmp_path):
    """Breaks `data`, converts it: the error names the broken file and
    no shard or spec is left."""
    breaks, named_file, message = bad_input
    breaks(data)
    output_dir = tmp_path / 'out'
    with pytest.raises((ValueError, FileNotFoundError), match=message) as e:
        convert(data, output_dir)
    assert str(tmp_path / named_file) in str(e.value)
    assert _left_behind(output_dir) == []


# --- label folders --------------------------------------------------------

CLASSES = {'classes': [{'name': 'sky', 'id': 3},
                       {'name': 'boat', 'id': 10, 'thing': True},
                       {'name': 'sea', 'id': 5, 'color': [0, 0, 200]},
                       {'name': 'buoy', 'id': 200, 'thing': True}],
           'ignore_id': 0}
SOURCE_IDS = [3, 10, 5, 200]  # Of train ids 0..3; 0 is void.
SKY, BOAT, SEA, BUOY = 0, 1, 2, 3
# Per image: its file, mode, size, semantic PNG mode and regions (train id
# or None for void, instance id, rows, cols), drawn in order on sky.
FOLDER_IMAGES = {
    'p.jpg': ('RGB', (17, 23), 'L', [
        (SEA, 0, (9, 17), (0, 23)),
        (BOAT, 1, (5, 10), (0, 8)),
        (BOAT, 2, (5, 10), (10, 18)),
        (BUOY, 7, (12, 14), (19, 21)),     # ids as given, not renumbered
        (BOAT, 0, (0, 2), (20, 23)),       # a thing without instance
        (None, 4, (15, 17), (0, 3)),       # void with an instance id
    ]),
    'q.png': ('L', (13, 8), 'I;16', [(BUOY, 1, (0, 5), (0, 8)),
                                     (SEA, 0, (5, 13), (0, 8))]),
    'r.png': ('RGBA', (9, 11), 'P', [(BOAT, 3, (2, 5), (2, 9))]),
}


def _folder_maps(regions, size):
    """(train ids with -1 = void, instance ids) drawn from `regions`."""
    train = np.full(size, SKY, np.int64)
    instance = np.zeros(size, np.int64)
    for train_id, instance_id, rows, cols in regions:
        where = (slice(*rows), slice(*cols))
        train[where] = -1 if train_id is None else train_id
        instance[where] = instance_id
    return train, instance


@pytest.fixture
def folder_data(tmp_path):
    """(image_dir, semantic_dir, instance_dir, classes path)."""
    rng = np.random.default_rng(1)
    folders = [tmp_path / name for name in ('images', 'classes',
                                            'instances')]
    for folder in folders:
        folder.mkdir()
    image_dir, semantic_dir, instance_dir = folders
    lookup = np.array(SOURCE_IDS + [CLASSES['ignore_id']])  # -1: void
    for file_name, (mode, size, label_mode, regions) in FOLDER_IMAGES.items():
        name = os.path.splitext(file_name)[0]
        _random_image(rng, *size, mode).save(image_dir / file_name)
        train, instance = _folder_maps(regions, size)
        source = lookup[train]
        if label_mode == 'I;16':
            semantic = Image.fromarray(source.astype(np.uint16))
        else:
            semantic = Image.fromarray(source.astype(np.uint8), 'L')
            if label_mode == 'P':
                semantic = semantic.convert('P')
        semantic.save(semantic_dir / f'{name}.png')
        Image.fromarray(instance.astype(np.uint8), 'L').save(
            instance_dir / f'{name}.png')
    classes_path = tmp_path / 'classes.json'
    classes_path.write_text(json.dumps(CLASSES))
    return image_dir, semantic_dir, instance_dir, classes_path


def _convert_folders(folder_data, output_dir, split='train',
                     with_instances=True, **options):
    image_dir, semantic_dir, instance_dir, classes_path = folder_data
    return label_folders.convert(
        str(image_dir), str(semantic_dir), str(classes_path), split,
        str(output_dir),
        instance_dir=str(instance_dir) if with_instances else None,
        **{**RUN, **options})


def _expected_panoptic(regions, size, crowd_as_ignore=True):
    train, instance = _folder_maps(regions, size)
    is_thing = (train == BOAT) | (train == BUOY)
    label = np.where(is_thing, train * 256 + instance, train * 256)
    crowd = is_thing & (instance == 0)
    if crowd_as_ignore:
        label[crowd] = 255 * 256
    label[train == -1] = 255 * 256
    return label


EXPECTED_FOLDER_CLASSES = [
    {'name': 'sky', 'eval_id': 3, 'thing': False},
    {'name': 'boat', 'eval_id': 10, 'thing': True},
    {'name': 'sea', 'eval_id': 5, 'thing': False, 'color': [0, 0, 200]},
    {'name': 'buoy', 'eval_id': 200, 'thing': True}]


def test_label_folders_panoptic_records_and_spec(folder_data, tmp_path):
    output_dir = tmp_path / 'harbour'
    shard_paths, spec_path = _convert_folders(folder_data, output_dir,
                                              dataset_name='boats')
    records = _decoded(shard_paths)
    assert sorted(records) == ['p', 'q', 'r']
    for file_name, (_, size, _, regions) in FOLDER_IMAGES.items():
        image, label = records[os.path.splitext(file_name)[0]]
        np.testing.assert_array_equal(label,
                                      _expected_panoptic(regions, size))
        _check_image(image, folder_data[0] / file_name)
    assert json.loads(pathlib.Path(spec_path).read_text()) == {
        'name': 'boats', 'classes': EXPECTED_FOLDER_CLASSES,
        'ignore_label': 255, 'eval_void_id': 0,
        'panoptic_label_divisor': 256,
        'splits': {'train': {'file_pattern': 'train-?????-of-00001.tfrecord',
                             'num_examples': 3, 'max_instances': 7}}}


def test_label_folders_crowd_kept_as_instance_zero(folder_data, tmp_path):
    shard_paths, _ = _convert_folders(folder_data, tmp_path / 'out',
                                      treat_crowd_as_ignore=False)
    _, size, _, regions = FOLDER_IMAGES['p.jpg']
    np.testing.assert_array_equal(
        _decoded(shard_paths)['p'][1],
        _expected_panoptic(regions, size, crowd_as_ignore=False))


def test_label_folders_semantic_only(folder_data, tmp_path):
    shard_paths, spec_path = _convert_folders(
        folder_data, tmp_path / 'out', with_instances=False)
    records = _decoded(shard_paths, is_panoptic=False)
    for file_name, (_, size, _, regions) in FOLDER_IMAGES.items():
        train, _ = _folder_maps(regions, size)
        np.testing.assert_array_equal(
            records[os.path.splitext(file_name)[0]][1],
            np.where(train == -1, 255, train))
    example = tfrecord.read_examples(shard_paths[0])[0]
    assert example.features.feature['image/segmentation/class/format'
                                    ].bytes_list.value == [b'png']
    spec = json.loads(pathlib.Path(spec_path).read_text())
    assert 'panoptic_label_divisor' not in spec
    assert spec['classes'] == [{**entry, 'thing': False}
                               for entry in EXPECTED_FOLDER_CLASSES]
    assert spec['splits']['train'] == {
        'file_pattern': 'train-?????-of-00001.tfrecord', 'num_examples': 3}
    assert not dataset_spec.load_spec(spec_path).has_instances


def _write_label(path, values, mode='L'):
    Image.fromarray(np.asarray(values, np.uint8), mode).save(path)


def _bad_classes(data):
    path = data[3]
    classes = json.loads(path.read_text())
    classes['classes'][2]['id'] = 10
    path.write_text(json.dumps(classes))


# (what to break, the file the error must name, a part of the message).
FOLDER_BAD_INPUTS = {
    'size_mismatch': (
        lambda d: _write_label(d[1] / 'r.png', np.full((9, 10), 3)),
        'classes/r.png', 'differs from that of image'),
    'value_outside_classes': (
        lambda d: _write_label(d[1] / 'q.png', np.full((13, 8), 4)),
        'classes/q.png', r'values \[4\] are neither'),
    'image_without_label': (
        lambda d: (d[1] / 'q.png').unlink(), 'images/q.png',
        'has no semantic label'),
    'label_without_image': (
        lambda d: _write_label(d[1] / 's.png', np.full((2, 2), 3)),
        'classes/s.png', 'has no image'),
    'image_without_instances': (
        lambda d: (d[2] / 'p.png').unlink(), 'images/p.jpg',
        'has no instance label'),
    'instance_on_stuff': (
        lambda d: _write_label(d[2] / 'q.png', np.full((13, 8), 2)),
        'instances/q.png', 'stuff class 2'),
    'colour_label': (
        lambda d: _write_label(d[1] / 'r.png', np.full((9, 11, 3), 3),
                               'RGB'),
        'classes/r.png', 'mode RGB'),
    'repeated_class_id': (
        _bad_classes, 'classes.json', r'classes\[2\]\.id: 10 repeats'),
}


@pytest.mark.parametrize('case', sorted(FOLDER_BAD_INPUTS))
def test_label_folders_bad_input_names_the_file(folder_data, tmp_path, case):
    _check_bad_input(FOLDER_BAD_INPUTS[case], folder_data, _convert_folders,
                     tmp_path)


def test_rerun_after_a_failure_resumes_and_only_then_writes_the_spec(
        folder_data, tmp_path):
    output_dir = tmp_path / 'out'
    label = folder_data[1] / 'r.png'
    good = label.read_bytes()
    _write_label(label, np.full((9, 11), 4))  # r is in the second shard.
    with pytest.raises(ValueError, match=str(label)):
        _convert_folders(folder_data, output_dir, num_shards=2)
    kept = output_dir / 'train-00000-of-00002.tfrecord'
    assert _left_behind(output_dir) == [kept.name]  # No spec yet.
    inode = kept.stat().st_ino
    label.write_bytes(good)
    _, spec_path = _convert_folders(folder_data, output_dir, num_shards=2)
    assert kept.stat().st_ino == inode  # Not written again.
    assert dataset_spec.load_spec(spec_path).splits_to_sizes == {'train': 3}


# --- the label space ------------------------------------------------------

def test_divisor_and_ignore_label_rules():
    choose = dataset_conversion.choose_divisor
    assert [choose(n) for n in (0, 255, 256, 999, 1000, 12345)] == [
        256, 256, 1000, 1000, 10000, 100000]
    assert choose(300, requested=512) == 512
    assert choose(300, existing=1000, spec_path='d.json') == 1000
    with pytest.raises(ValueError, match=re.escape(
            'too many for panoptic_label_divisor 256 of d.json')):
        choose(256, existing=256, spec_path='d.json')
    with pytest.raises(ValueError, match='--label_divisor=256 is too small'):
        choose(256, requested=256)
    assert [dataset_conversion.ignore_label_for(n)
            for n in (4, 255, 256, 300)] == [255, 255, 256, 300]


def test_many_classes_ignore_label_is_the_first_free_id(tmp_path):
    classes = [{'name': f'c{i}', 'eval_id': i + 1, 'thing': i == 0}
               for i in range(300)]
    listing = dataset_conversion.SplitListing(
        source='classes.json', classes=classes, eval_void_id=0, jobs=[],
        has_instances=True, max_instances=3)
    spec, space = dataset_conversion.plan_spec(listing, 'train',
                                               str(tmp_path), 1)
    assert (spec['ignore_label'], space.ignore_label) == (300, 300)
    assert space.divisor == spec['panoptic_label_divisor'] == 256
    semantic_only = dataset_conversion.SplitListing(
        source='classes.json', classes=classes, eval_void_id=0, jobs=[],
        has_instances=False)
    with pytest.raises(ValueError, match='classes.json: 300 classes'):
        dataset_conversion.plan_spec(semantic_only, 'train', str(tmp_path),
                                     1)


# --- the script -----------------------------------------------------------

def test_script_with_worker_processes(folder_data, tmp_path):
    image_dir, semantic_dir, instance_dir, classes_path = folder_data
    output_dir = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'scripts/build_dataset.py'),
         '--format=label_folders', '--split=val', f'--image_dir={image_dir}',
         f'--semantic_dir={semantic_dir}', f'--instance_dir={instance_dir}',
         f'--classes={classes_path}', f'--output_dir={output_dir}',
         '--num_shards=2', '--num_workers=2'],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Converting val: 3/3' in result.stderr
    assert sorted(os.listdir(output_dir)) == [
        'dataset.json', 'val-00000-of-00002.tfrecord',
        'val-00001-of-00002.tfrecord']
    records = _decoded([str(output_dir / name) for name in
                        ('val-00000-of-00002.tfrecord',
                         'val-00001-of-00002.tfrecord')])
    _, size, _, regions = FOLDER_IMAGES['q.png']
    np.testing.assert_array_equal(records['q'][1],
                                  _expected_panoptic(regions, size))
    assert dataset_spec.load_spec(
        str(output_dir / 'dataset.json')).splits_to_sizes == {'val': 3}
