"""The Cityscapes converter writes what DeepLab2's converter writes (parity
with the fixture shards), resumes after an interruption, and names the bad
file when input is wrong."""

import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab2 import common
from deeplab2.data import cityscapes
from deeplab2.data import cityscapes_annotations
from deeplab2.data import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def mini_root(fixtures_dir, tmp_path) -> pathlib.Path:
    """A writable copy of the mini dataset (never write into fixtures)."""
    root = tmp_path / 'cityscapes'
    shutil.copytree(fixtures_dir / 'data' / 'cityscapes_mini', root)
    for path in root.rglob('*'):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def _reference_folder(fixtures_dir, treat_crowd_as_ignore):
    return (fixtures_dir / 'data' / 'tfrecord' /
            f'cityscapes_mini_crowd_as_ignore_{str(treat_crowd_as_ignore).lower()}')


def _assert_same_as_deeplab2(shard_paths, reference_folder):
    for split in ('train', 'val'):
        assert len(shard_paths[split]) == 10
        for path in shard_paths[split]:
            reference = reference_folder / os.path.basename(path)
            assert tfrecord.read_examples(path) == tfrecord.read_examples(
                str(reference)), path


@pytest.mark.parametrize('treat_crowd_as_ignore', [True, False])
def test_matches_deeplab2_shards(fixtures_dir, mini_root, tmp_path,
                                 treat_crowd_as_ignore):
    shard_paths = cityscapes.convert_cityscapes(
        str(mini_root), str(tmp_path / 'out'),
        treat_crowd_as_ignore=treat_crowd_as_ignore, num_workers=1,
        show_progress=False)
    assert [os.path.basename(p) for p in shard_paths['val']][:2] == [
        'val-00000-of-00010.tfrecord', 'val-00001-of-00010.tfrecord']
    _assert_same_as_deeplab2(
        shard_paths, _reference_folder(fixtures_dir, treat_crowd_as_ignore))


def test_worker_processes_and_panoptic_preparation(fixtures_dir, mini_root,
                                                   tmp_path, capsys):
    # Without the json, cityscapesscripts' preparation is run first.
    gtfine = mini_root / 'gtFine'
    for split in ('train', 'val'):
        (gtfine / f'cityscapes_panoptic_{split}_trainId.json').unlink()
        shutil.rmtree(gtfine / f'cityscapes_panoptic_{split}_trainId')
    shard_paths = cityscapes.convert_cityscapes(
        str(mini_root), str(tmp_path / 'out'), num_workers=2)
    assert (gtfine / 'cityscapes_panoptic_val_trainId.json').is_file()
    _assert_same_as_deeplab2(shard_paths, _reference_folder(fixtures_dir,
                                                            True))
    assert 'Converting val: 2/2' in capsys.readouterr().err


def test_shard_sizes_and_unlabeled_test_split(mini_root, tmp_path):
    test_folder = mini_root / 'leftImg8bit' / 'test' / 'gamma'
    test_folder.mkdir(parents=True)
    for index, source in enumerate(sorted(
            (mini_root / 'leftImg8bit' / 'val').rglob('*.png'))):
        shutil.copy(source, test_folder / f'gamma_000000_{index:06d}'
                    '_leftImg8bit.png')
    shard_paths = cityscapes.convert_cityscapes(
        str(mini_root), str(tmp_path / 'out'), splits=('train', 'test'),
        num_shards=3, num_workers=1, show_progress=False)
    for split in ('train', 'test'):
        counts = [len(tfrecord.read_examples(p)) for p in shard_paths[split]]
        assert counts == [1, 1, 0]  # ceil(2 / 3) per shard
    examples = tfrecord.read_examples(shard_paths['test'][0])
    assert common.KEY_ENCODED_LABEL not in examples[0].features.feature
    assert len(examples[0].features.feature) == 6


def test_semantic_data_stores_label_train_id_pngs(mini_root, tmp_path):
    for image in (mini_root / 'leftImg8bit' / 'val').rglob('*.png'):
        label = np.full((256, 512), 7, np.uint8)
        name = image.name.replace('_leftImg8bit', '_gtFine_labelTrainIds')
        Image.fromarray(label).save(mini_root / 'gtFine' / 'val' /
                                    image.parent.name / name)
    shard_paths = cityscapes.convert_cityscapes(
        str(mini_root), str(tmp_path / 'out'), splits=('val',),
        create_panoptic_data=False, num_workers=1, show_progress=False)
    example = tfrecord.read_examples(shard_paths['val'][0])[0]
    decoded = tfrecord.decode_example(example.SerializeToString(),
                                      is_panoptic=False)
    assert example.features.feature[
        common.KEY_LABEL_FORMAT].bytes_list.value[0] == b'png'
    assert np.unique(decoded['label']).tolist() == [7]


def test_rerun_after_interruption_keeps_shards_and_loses_nothing(
        fixtures_dir, mini_root, tmp_path, monkeypatch):
    output_dir = tmp_path / 'out'
    prepare = cityscapes_annotations.prepare_example
    calls, crash = [], [True]

    def failing_on_second(job):
        calls.append(job.image_name)
        if crash[0] and len(calls) == 2:
            raise RuntimeError('simulated crash')
        return prepare(job)

    monkeypatch.setattr(cityscapes_annotations, 'prepare_example',
                        failing_on_second)
    with pytest.raises(RuntimeError, match='simulated crash'):
        cityscapes.convert_cityscapes(str(mini_root), str(output_dir),
                                      num_workers=1, show_progress=False)
    assert sorted(os.listdir(output_dir)) == ['train-00000-of-00010.tfrecord']
    # A partial temp file and a truncated shard, as a killed run leaves them.
    (output_dir / 'val-00003-of-00010.tfrecord.incomplete').write_bytes(b'x')
    (output_dir / 'val-00000-of-00010.tfrecord').write_bytes(b'\0' * 20)
    calls.clear()
    crash[0] = False
    shard_paths = cityscapes.convert_cityscapes(
        str(mini_root), str(output_dir), num_workers=1, show_progress=False)
    assert calls == ['beta_000000_000002', 'alpha_000000_000003',
                     'beta_000000_000004']  # train shard 0 was kept
    assert not list(output_dir.glob('*.incomplete'))
    _assert_same_as_deeplab2(shard_paths, _reference_folder(fixtures_dir,
                                                            True))


def test_missing_image_folder_is_named(mini_root, tmp_path):
    shutil.rmtree(mini_root / 'leftImg8bit' / 'val')
    with pytest.raises(FileNotFoundError, match='leftImg8bit/val'):
        cityscapes.convert_cityscapes(str(mini_root), str(tmp_path / 'out'),
                                      splits=('train', 'val'), num_workers=1)


def test_default_splits_are_those_present_and_absent_ones_are_logged(
        mini_root, tmp_path, caplog):
    shutil.rmtree(mini_root / 'leftImg8bit' / 'val')  # the fixture has no test
    with caplog.at_level(logging.WARNING):
        shard_paths = cityscapes.convert_cityscapes(
            str(mini_root), str(tmp_path / 'out'), num_shards=1,
            num_workers=1, show_progress=False)
    assert sorted(shard_paths) == ['train']
    assert f'{mini_root / "leftImg8bit"} has no val, test split' in (
        caplog.text)


def test_a_requested_missing_split_names_it_and_the_flag(fixtures_dir,
                                                         tmp_path):
    # Fails before writing anything, so the fixture is read in place.
    root = fixtures_dir / 'data' / 'cityscapes_mini'
    with pytest.raises(FileNotFoundError, match=re.escape(
            "Split 'test' was asked for (--splits) but "
            f"{root / 'leftImg8bit' / 'test'} does not exist; the splits "
            'found are: train, val.')):
        cityscapes.convert_cityscapes(str(root), str(tmp_path / 'out'),
                                      splits=('train', 'test'))
    assert not (tmp_path / 'out').exists()


def test_corrupt_png_is_named(mini_root, tmp_path):
    bad = next((mini_root / 'leftImg8bit' / 'val').rglob('*.png'))
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match=str(bad)):
        cityscapes.convert_cityscapes(str(mini_root), str(tmp_path / 'out'),
                                      splits=('val',), num_workers=1)
    assert not list((tmp_path / 'out').glob('*.incomplete'))


def _edit_first_segment(mini_root, **changes) -> str:
    json_path = mini_root / 'gtFine' / 'cityscapes_panoptic_val_trainId.json'
    panoptic = json.loads(json_path.read_text())
    panoptic['annotations'][0]['segments_info'][0].update(changes)
    json_path.write_text(json.dumps(panoptic))
    return panoptic['annotations'][0]['file_name']


@pytest.mark.parametrize('changes, message', [
    (dict(category_id=33), 'category_id 33'),
    (dict(area=1), 'covers'),
])
def test_bad_segment_names_the_annotation(mini_root, tmp_path, changes,
                                          message):
    png_name = _edit_first_segment(mini_root, **changes)
    with pytest.raises(ValueError, match=message) as error:
        cityscapes.convert_cityscapes(str(mini_root), str(tmp_path / 'out'),
                                      splits=('val',), num_workers=1)
    assert png_name in str(error.value)


def test_image_without_annotation_is_named(mini_root, tmp_path):
    json_path = mini_root / 'gtFine' / 'cityscapes_panoptic_val_trainId.json'
    panoptic = json.loads(json_path.read_text())
    del panoptic['annotations'][0]
    json_path.write_text(json.dumps(panoptic))
    with pytest.raises(ValueError, match='alpha_000000_000003_leftImg8bit'):
        cityscapes.convert_cityscapes(str(mini_root), str(tmp_path / 'out'),
                                      splits=('val',), num_workers=1)


def test_cli_writes_shards(mini_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'scripts/build_cityscapes_data.py'),
         f'--cityscapes_root={mini_root}', f'--output_dir={tmp_path / "out"}',
         '--splits=val', '--num_shards=2', '--num_workers=1',
         '--notreat_crowd_as_ignore'],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / 'out')) == [
        'val-00000-of-00002.tfrecord', 'val-00001-of-00002.tfrecord']
