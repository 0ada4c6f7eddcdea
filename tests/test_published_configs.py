"""Every published config trains as published.

Our configs under configs/cityscapes and configs/coco (and DeepLab2's own
files of the same models, from the fixtures' full_configs/) train 2 steps
with only the data paths, the crop, the batch size and the step count
overridden: the real widths, the real augmentations (AutoAugment included),
DeepLab2-written records. COCO configs resize to 641 and DeepLab2 refuses a
max_resize_value above the crop size, so their resize follows the crop.

Each trains through `python -m deeplab2.trainer.train`, in a process of its
own. Training all of them takes tens of minutes (SWideRNet-(1,1,4.5) alone:
536M parameters, a 6 GB checkpoint): they are in the `slow` group, run with
`pytest -m slow`. The default run checks that every config is
DeepLab2's (where DeepLab2's file is in the fixtures) and loads cleanly,
and trains DeepLab2's own MobileNetV3 file through the CLI.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.data import sample_generator

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLISHED = sorted(
    path.relative_to(REPO_ROOT).as_posix()
    for folder in ('configs/cityscapes', 'configs/coco')
    for path in (REPO_ROOT / folder).rglob('*.textproto'))
# DeepLab2's name for our resnet50_os32.
_DEEPLAB2_NAMES = {'resnet50_os32_merge_with_pure_tf_func': 'resnet50_os32'}
_CITYSCAPES_RECORDS = 'data/tfrecord/cityscapes_mini_crowd_as_ignore_true'
_COCO_RECORDS = 'data/tfrecord/coco_mini/crowd_as_ignore_true'
_CROP = {'cityscapes_panoptic': (65, 129), 'coco_panoptic': (65, 65)}


def _fixture_configs(fixtures_dir):
    return sorted((fixtures_dir / 'deeplab2' / 'full_configs').glob(
        '*.textproto'))


def _ours_for(deeplab2_file: pathlib.Path) -> pathlib.Path:
    name = _DEEPLAB2_NAMES.get(deeplab2_file.stem, deeplab2_file.stem)
    return REPO_ROOT / 'configs/cityscapes/panoptic_deeplab' / (
        name + '.textproto')


def _small_run_overrides(config, fixtures_dir, batch_size=1, steps=2):
    """Data paths, crop, batch size and step count: nothing else."""
    dataset = config.train_dataset_options.dataset
    records = fixtures_dir / (_COCO_RECORDS if dataset == 'coco_panoptic'
                              else _CITYSCAPES_RECORDS)
    height, width = _CROP[dataset]
    overrides = [
        f'train_dataset_options.file_pattern={records}/train-*',
        f'eval_dataset_options.file_pattern={records}/val-*',
        f'train_dataset_options.crop_size={height},{width}',
        f'train_dataset_options.batch_size={batch_size}',
        f'trainer_options.solver_options.training_number_of_steps={steps}',
        'model_options.initial_checkpoint=',
    ]
    if list(config.train_dataset_options.max_resize_value) not in ([], [0]):
        # DeepLab2 refuses a max_resize_value above the crop size.
        overrides += [f'train_dataset_options.min_resize_value={height}',
                      f'train_dataset_options.max_resize_value={height}']
    return overrides


def test_configs_are_deeplab2s_where_its_files_are_in_the_fixtures(
        fixtures_dir):
    files = _fixture_configs(fixtures_dir)
    assert len(files) == 6
    for deeplab2_file in files:
        theirs = config_lib.load_config(deeplab2_file)
        ours = config_lib.load_config(_ours_for(deeplab2_file))
        # Only the run's name differs: DeepLab2 leaves it a placeholder.
        assert theirs.experiment_name == '${EXPERIMENT_NAME}'
        theirs.experiment_name = ours.experiment_name
        assert ours == theirs, deeplab2_file.name


@pytest.mark.parametrize('path', PUBLISHED)
def test_every_published_config_loads_and_reads_its_data_options(
        path, fixtures_dir):
    published = config_lib.load_config(REPO_ROOT / path)
    assert published.train_dataset_options.file_pattern == ['${TRAIN_SET}']
    config = config_lib.load_config(
        REPO_ROOT / path, _small_run_overrides(published, fixtures_dir))
    for field in ('train_dataset_options', 'eval_dataset_options'):
        options = getattr(config, field)
        descriptor = datasets.get_dataset_descriptor(options.dataset)
        sample_options = sample_generator.SampleOptions.from_dataset_options(
            options, descriptor)
        assert sample_options.autoaugment_policy == (
            options.augmentations.autoaugment_policy_name)


def test_configs_cover_deeplab2s_panoptic_deeplab_family():
    names = {pathlib.Path(path).stem for path in PUBLISHED}
    assert len(PUBLISHED) == 15
    assert {'mobilenet_v3_large_os32', 'mobilenet_v3_small_os32',
            'resnet50_os32_semseg', 'resnet50_beta_os16',
            'resnet50_beta_os32'} <= names


def _train_two_steps(path, fixtures_dir, model_dir, batch_size=1):
    """`python -m deeplab2.trainer.train --mode=train` on `path`, 2 steps.

    A process per config, as a user runs them; it also frees each full-size
    model's memory (one process training them in turn grew past 20 GB).
    """
    overrides = _small_run_overrides(config_lib.load_config(path),
                                     fixtures_dir, batch_size=batch_size)
    result = subprocess.run(
        [sys.executable, '-m', 'deeplab2.trainer.train',
         f'--config_file={path}', '--mode=train', f'--model_dir={model_dir}',
         '--seed=0', *[f'--config_override={o}' for o in overrides]],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in
           (model_dir / 'train_log.jsonl').read_text().splitlines()]
    assert [entry['step'] for entry in log] == [2], path
    assert np.isfinite(log[-1]['total_loss']), path
    assert (model_dir / 'ckpt-2.index').is_file()


@pytest.mark.slow
@pytest.mark.parametrize('path', PUBLISHED)
def test_every_published_config_trains(path, fixtures_dir, tmp_path):
    _train_two_steps(REPO_ROOT / path, fixtures_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('name', [
    'mobilenet_v3_large_os16', 'resnet50_beta_os32',
    'resnet50_os32_merge_with_pure_tf_func', 'swidernet_sac_1_1_1_os16',
    'wide_resnet41_os16'])
def test_deeplab2s_own_config_files_train(name, fixtures_dir, tmp_path):
    path = fixtures_dir / 'deeplab2' / 'full_configs' / f'{name}.textproto'
    _train_two_steps(path, fixtures_dir, tmp_path)


def test_deeplab2s_own_config_file_trains_through_the_cli(fixtures_dir,
                                                          tmp_path):
    """DeepLab2's MobileNetV3-Small file, unedited (AutoAugment on), on
    DeepLab2-written records."""
    path = (fixtures_dir / 'deeplab2' / 'full_configs' /
            'mobilenet_v3_small_os16.textproto')
    _train_two_steps(path, fixtures_dir, tmp_path, batch_size=2)
