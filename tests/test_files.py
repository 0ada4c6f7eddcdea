"""files: write-then-rename for files and folders, worked out by hand."""

import os
import pathlib

import pytest

from deeplab2 import files


def test_write_atomically_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / 'a.png'
    target.write_text('old')

    def fail(temporary):
        pathlib.Path(temporary).write_text('half')
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError):
        files.write_atomically(str(target), fail)
    assert target.read_text() == 'old'
    assert sorted(os.listdir(tmp_path)) == ['a.png']
    files.write_atomically(str(target),
                           lambda t: pathlib.Path(t).write_text('new'),
                           temporary=str(target) + '.incomplete')
    assert target.read_text() == 'new'
    assert sorted(os.listdir(tmp_path)) == ['a.png']


def test_staged_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / 'out'
    with pytest.raises(RuntimeError):
        with files.staged_folder(target) as staging:
            (staging / 'x').write_text('1')
            raise RuntimeError('killed')
    assert os.listdir(tmp_path) == []
    with files.staged_folder(target) as staging:
        (staging / 'x').write_text('1')
        assert not target.exists()
    assert (target / 'x').read_text() == '1'
    assert os.listdir(tmp_path) == ['out']


def test_staged_folder_replaces_only_when_asked(tmp_path):
    target = tmp_path / 'out'
    target.mkdir()
    (target / 'old').write_text('0')
    with pytest.raises(FileExistsError):
        with files.staged_folder(target) as staging:
            (staging / 'new').write_text('1')
    assert os.listdir(target) == ['old']
    with files.staged_folder(target, replace=True) as staging:
        (staging / 'new').write_text('1')
    assert os.listdir(target) == ['new']
    assert os.listdir(tmp_path) == ['out']


def test_remove_stale_siblings_spares_young_and_foreign(tmp_path):
    target = tmp_path / 'out'
    stale = files.sibling_path(target, 'staging')
    stale.mkdir()
    os.utime(stale, (0, 0))
    young = files.sibling_path(target, 'old')
    young.mkdir()
    foreign = tmp_path / '.other.staging-' / 'x'
    foreign.parent.mkdir()
    assert files.remove_stale_siblings(target, older_than_s=3600) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [young.name, '.other.staging-'])


def test_read_json_object_names_the_file(tmp_path):
    path = tmp_path / 'spec.json'
    with pytest.raises(FileNotFoundError, match=f'Spec not found: {path}'):
        files.read_json_object(str(path), 'Spec')
    path.write_text('{"a": 1,')
    class SpecError(ValueError):
        pass

    with pytest.raises(SpecError, match=f'{path}: not a JSON spec'):
        files.read_json_object(str(path), 'Spec', SpecError)
    path.write_text('[1, 2]')
    with pytest.raises(ValueError, match=f'{path}: must be a JSON object'):
        files.read_json_object(str(path), 'Spec')
    path.write_text('{"a": [1, 2]}')
    assert files.read_json_object(str(path), 'Spec') == {'a': [1, 2]}
