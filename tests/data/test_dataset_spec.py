"""Dataset spec files: a good spec gives the descriptor worked out by hand,
every bad one an error naming the file and the key, and write_spec never
leaves a bad or half-written spec."""

import copy
import json
import os

import pytest

from deeplab2.data import dataset_spec
from deeplab2.data import datasets

# Three classes with non-contiguous original ids: road (stuff), car and
# person (things); records in the spec's folder.
GOOD = {
    'name': 'my_streets',
    'classes': [
        {'name': 'road', 'eval_id': 7, 'color': [128, 64, 128]},
        {'name': 'car', 'eval_id': 26, 'thing': True, 'color': [0, 0, 142]},
        {'name': 'person', 'eval_id': 24, 'thing': True,
         'color': [220, 20, 60]},
    ],
    'ignore_label': 255,
    'panoptic_label_divisor': 1000,
    'splits': {
        'train': {'file_pattern': 'train-*.tfrecord', 'num_examples': 12,
                  'max_instances': 17},
        'val': {'file_pattern': 'records/val-*.tfrecord',
                'num_examples': 3},
    },
}


def _write(folder, spec, name=dataset_spec.SPEC_FILE_NAME):
    path = folder / name
    path.write_text(json.dumps(spec) if not isinstance(spec, str) else spec)
    return str(path)


def test_good_spec_gives_the_descriptor_worked_out_by_hand(tmp_path):
    descriptor = dataset_spec.load_spec(_write(tmp_path, GOOD))
    assert descriptor == datasets.DatasetDescriptor(
        name='my_streets',
        splits_to_sizes={'train': 12, 'val': 3},
        num_classes=3,
        ignore_label=255,
        panoptic_label_divisor=1000,
        class_has_instances_list=(1, 2),
        colormap=datasets.SPEC_COLORMAP,
        class_names=('road', 'car', 'person'),
        eval_ids=(7, 26, 24),
        eval_void_id=0,
        class_colors=((128, 64, 128), (0, 0, 142), (220, 20, 60)),
        # Relative patterns resolve against the spec's folder.
        file_patterns={
            'train': str(tmp_path / 'train-*.tfrecord'),
            'val': str(tmp_path / 'records' / 'val-*.tfrecord')},
        has_instances=True)
    assert descriptor.thing_class_ids == (1, 2)
    assert descriptor.stuff_class_ids == (0,)


def test_relative_patterns_resolve_against_the_spec_not_the_cwd(
        tmp_path, monkeypatch):
    (tmp_path / 'data').mkdir()
    (tmp_path / 'elsewhere').mkdir()
    _write(tmp_path / 'data', GOOD)
    monkeypatch.chdir(tmp_path / 'elsewhere')
    descriptor = dataset_spec.load_spec(
        os.path.join('..', 'data', dataset_spec.SPEC_FILE_NAME))
    assert descriptor.file_patterns['train'] == str(
        tmp_path / 'data' / 'train-*.tfrecord')


def test_absolute_pattern_is_kept(tmp_path):
    spec = copy.deepcopy(GOOD)
    spec['splits']['val']['file_pattern'] = '/records/val-*.tfrecord'
    descriptor = dataset_spec.load_spec(_write(tmp_path, spec))
    assert descriptor.file_patterns['val'] == '/records/val-*.tfrecord'


def test_optional_keys_take_their_defaults(tmp_path):
    spec = {'name': 'plain', 'classes': [{'name': 'sky'}, {'name': 'tree'}],
            'splits': {'train': {'file_pattern': 't-*', 'num_examples': 1}}}
    descriptor = dataset_spec.load_spec(_write(tmp_path, spec))
    # eval ids default to the train ids; ignore 255; void 0; no divisor:
    # semantic-only.
    assert descriptor.eval_ids == (0, 1)
    assert descriptor.ignore_label == 255 and descriptor.eval_void_id == 0
    assert descriptor.has_instances is False
    assert descriptor.class_has_instances_list == ()
    assert descriptor.panoptic_label_divisor == 1
    # Colours are made up when absent: valid, distinct for neighbours, and
    # the same on every load.
    colors = descriptor.class_colors
    assert len(colors) == 2 and colors[0] != colors[1]
    assert all(0 <= c <= 255 for color in colors for c in color)
    assert dataset_spec.load_spec(_write(tmp_path, spec)).class_colors == (
        colors)


def _mutated(change):
    spec = copy.deepcopy(GOOD)
    change(spec)
    return spec


def _set(path, value):
    """A change setting the value at `path` (keys and list indexes)."""
    def change(spec):
        target = spec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _delete(path):
    def change(spec):
        target = spec
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


# (case, change to GOOD, the key the error must name)
BAD_SPECS = [
    ('missing name', _delete(['name']), 'name'),
    ('missing classes', _delete(['classes']), 'classes'),
    ('empty classes', _set(['classes'], []), 'classes'),
    ('missing splits', _delete(['splits']), 'splits'),
    ('class without name', _delete(['classes', 1, 'name']),
     'classes[1].name'),
    ('split without pattern', _delete(['splits', 'val', 'file_pattern']),
     'splits.val.file_pattern'),
    ('split without size', _delete(['splits', 'train', 'num_examples']),
     'splits.train.num_examples'),
    ('negative size', _set(['splits', 'train', 'num_examples'], -1),
     'splits.train.num_examples'),
    ('duplicate name', _set(['classes', 2, 'name'], 'road'),
     'classes[2].name'),
    ('duplicate eval id', _set(['classes', 2, 'eval_id'], 26),
     'classes[2].eval_id'),
    ('eval id not an integer', _set(['classes', 0, 'eval_id'], '7'),
     'classes[0].eval_id'),
    ('thing not a bool', _set(['classes', 0, 'thing'], 'yes'),
     'classes[0].thing'),
    ('thing class without instances', _delete(['panoptic_label_divisor']),
     'classes[1].thing'),
    ('max_instances equal to the divisor',
     _set(['splits', 'train', 'max_instances'], 1000),
     'splits.train.max_instances'),
    ('max_instances over the divisor',
     _set(['splits', 'train', 'max_instances'], 4000),
     'splits.train.max_instances'),
    ('divisor 1', _set(['panoptic_label_divisor'], 1),
     'panoptic_label_divisor'),
    # The ignore label's largest panoptic id, 255 * d + d - 1 = 256 d - 1,
    # is 2**31 + 255 > 2**31 - 1 for d = 2**23 + 1.
    ('int32 overflow', _set(['panoptic_label_divisor'], 2 ** 23 + 1),
     'panoptic_label_divisor'),
    ('colour out of range', _set(['classes', 1, 'color'], [0, 0, 256]),
     'classes[1].color'),
    ('colour of two values', _set(['classes', 1, 'color'], [0, 0]),
     'classes[1].color'),
    ('colour by name', _set(['classes', 1, 'color'], 'red'),
     'classes[1].color'),
    ('ignore label is a thing', _set(['ignore_label'], 1), 'ignore_label'),
    ('negative ignore label', _set(['ignore_label'], -1), 'ignore_label'),
    ('split not an object', _set(['splits', 'val'], 'val-*.tfrecord'),
     'splits.val'),
]


@pytest.mark.parametrize('change,key', [case[1:] for case in BAD_SPECS],
                         ids=[case[0] for case in BAD_SPECS])
def test_bad_spec_error_names_the_file_and_the_key(tmp_path, change, key):
    path = _write(tmp_path, _mutated(change))
    with pytest.raises(dataset_spec.DatasetSpecError) as error:
        dataset_spec.load_spec(path)
    assert str(error.value).startswith(f'{path}: {key}:'), str(error.value)


def test_int32_boundary_is_exact(tmp_path):
    """The largest panoptic id is (ignore 255) * divisor + divisor - 1:
    divisor 2**23 gives exactly 2**31 - 1, int32's largest, and fits."""
    spec = _mutated(_set(['panoptic_label_divisor'], 2 ** 23))
    assert dataset_spec.load_spec(_write(tmp_path, spec)
                                  ).panoptic_label_divisor == 2 ** 23


@pytest.mark.parametrize('text', ['{"name": "x",', '', '\xff\xfe'],
                         ids=['truncated', 'empty', 'not utf-8'])
def test_not_json_names_the_file(tmp_path, text):
    path = tmp_path / 'dataset.json'
    path.write_bytes(text.encode('latin-1'))
    with pytest.raises(dataset_spec.DatasetSpecError,
                       match=f'^{path}: not a JSON dataset spec'):
        dataset_spec.load_spec(str(path))


def test_not_an_object_names_the_file(tmp_path):
    path = _write(tmp_path, '[1, 2]')
    with pytest.raises(dataset_spec.DatasetSpecError,
                       match=f'^{path}: must be a JSON object'):
        dataset_spec.load_spec(path)


def test_missing_file_names_it(tmp_path):
    path = str(tmp_path / 'nowhere' / 'dataset.json')
    with pytest.raises(FileNotFoundError, match=path):
        dataset_spec.load_spec(path)
    with pytest.raises(FileNotFoundError, match=path):
        datasets.get_dataset_descriptor(path)


# ------------------------------------------------------------------ writing


def test_write_spec_round_trips(tmp_path):
    path = str(tmp_path / 'dataset.json')
    dataset_spec.write_spec(path, GOOD)
    assert json.loads((tmp_path / 'dataset.json').read_text()) == GOOD
    assert dataset_spec.load_spec(path).class_names == (
        'road', 'car', 'person')
    assert os.listdir(tmp_path) == ['dataset.json']


def test_write_spec_refuses_a_bad_spec_and_leaves_the_old_one(tmp_path):
    path = str(tmp_path / 'dataset.json')
    dataset_spec.write_spec(path, GOOD)
    before = (tmp_path / 'dataset.json').read_bytes()
    bad = _mutated(_set(['classes', 2, 'name'], 'road'))
    with pytest.raises(dataset_spec.DatasetSpecError,
                       match=r'classes\[2\]\.name'):
        dataset_spec.write_spec(path, bad)
    assert (tmp_path / 'dataset.json').read_bytes() == before
    assert os.listdir(tmp_path) == ['dataset.json']


def test_write_spec_never_writes_a_bad_spec_where_none_was(tmp_path):
    with pytest.raises(dataset_spec.DatasetSpecError):
        dataset_spec.write_spec(str(tmp_path / 'dataset.json'),
                                _mutated(_delete(['splits'])))
    assert os.listdir(tmp_path) == []


def test_write_spec_killed_half_way_leaves_the_old_spec(tmp_path,
                                                        monkeypatch):
    path = str(tmp_path / 'dataset.json')
    dataset_spec.write_spec(path, GOOD)
    before = (tmp_path / 'dataset.json').read_bytes()

    def dump_half_then_fail(value, f, **kwargs):
        f.write(json.dumps(value)[:10])
        raise OSError('disk full')

    monkeypatch.setattr(dataset_spec.json, 'dump', dump_half_then_fail)
    updated = dataset_spec.with_split(GOOD, 'test', 'test-*', 5)
    with pytest.raises(OSError, match='disk full'):
        dataset_spec.write_spec(path, updated)
    assert (tmp_path / 'dataset.json').read_bytes() == before
    assert os.listdir(tmp_path) == ['dataset.json']


def test_with_split_adds_or_replaces_one_split_and_copies(tmp_path):
    added = dataset_spec.with_split(GOOD, 'test', 'test-*.tfrecord', 4)
    assert added['splits']['test'] == {'file_pattern': 'test-*.tfrecord',
                                       'num_examples': 4}
    assert set(added['splits']) == {'train', 'val', 'test'}
    replaced = dataset_spec.with_split(GOOD, 'train', 'new-*', 20, 9)
    assert replaced['splits']['train'] == {
        'file_pattern': 'new-*', 'num_examples': 20, 'max_instances': 9}
    # GOOD itself is unchanged.
    assert GOOD['splits']['train']['num_examples'] == 12
    assert 'test' not in GOOD['splits']


# --------------------------------------------------- get_dataset_descriptor


def test_get_dataset_descriptor_reads_a_spec_again_when_it_changes(
        tmp_path):
    path = _write(tmp_path, GOOD)
    assert datasets.get_dataset_descriptor(path).name == 'my_streets'
    _write(tmp_path, {**GOOD, 'name': 'renamed'})
    # A different modification time, whatever the file system's resolution.
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert datasets.get_dataset_descriptor(path).name == 'renamed'
