"""The training loop end to end on the demo dataset, tiny: train_and_eval,
checkpoints, summaries, resume after SIGKILL, NaN guard, fine-tuning from a
DeepLab2 checkpoint."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.data import demo
from deeplab2.trainer import runner

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO_CONFIG = (REPO_ROOT / 'configs/demo/'
               'panoptic_deeplab_mobilenet_v3_small_os16.textproto')


@pytest.fixture(scope='module')
def demo_tfrecords(tmp_path_factory):
    cache = tmp_path_factory.mktemp('cache')
    return demo.materialize_demo_dataset(cache_dir=str(cache), num_train=4,
                                         num_val=2)


def _tiny_overrides(shards, steps=4, every=2):
    return [
        f'train_dataset_options.file_pattern={shards}/train-*',
        f'eval_dataset_options.file_pattern={shards}/val-*',
        'train_dataset_options.crop_size=65,129',
        'train_dataset_options.batch_size=2',
        'model_options.backbone.backbone_width_multiplier=0.35',
        f'trainer_options.solver_options.training_number_of_steps={steps}',
        'trainer_options.solver_options.warmup_steps=0',
        'trainer_options.steps_per_loop=1',
        f'trainer_options.save_checkpoints_steps={every}',
        f'trainer_options.save_summaries_steps={every}',
        f'evaluator_options.eval_interval={steps}',
    ]


def _losses(model_dir):
    lines = (pathlib.Path(model_dir) / 'train_log.jsonl').read_text()
    return {entry['step']: entry for entry in map(json.loads,
                                                  lines.splitlines())}


def _counted_lookups(monkeypatch) -> list:
    """The names get_dataset_descriptor is asked for from now on."""
    from deeplab2.data import datasets
    lookups = []
    lookup = datasets.get_dataset_descriptor

    def counted(name):
        lookups.append(name)
        return lookup(name)

    monkeypatch.setattr(datasets, 'get_dataset_descriptor', counted)
    return lookups


def test_train_and_eval_writes_checkpoints_summaries_and_metrics(
        demo_tfrecords, tmp_path, monkeypatch):
    config = config_lib.load_config(DEMO_CONFIG,
                                    _tiny_overrides(demo_tfrecords))
    lookups = _counted_lookups(monkeypatch)
    metrics = runner.run(config, 'train_and_eval', str(tmp_path), seed=1)
    # Each dataset looked up once per run, whatever reads it.
    assert lookups == ['demo', 'demo']
    assert {'pq', 'sq', 'rq', 'miou', 'ap', 'ap50'} <= set(metrics)
    assert 0.0 <= metrics['pq'] <= 1.0
    tags = {value.tag for path in (tmp_path / 'eval').glob('events*')
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert {'pq', 'miou', 'eval/sample_0'} <= tags
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith('ckpt-4')
    # Saved at multiples of save_checkpoints_steps, as DeepLab2 does.
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [path.rsplit('-', 1)[1] for path in
            state.all_model_checkpoint_paths] == ['2', '4']
    assert (tmp_path / 'train').is_dir() and (tmp_path / 'eval').is_dir()
    losses = _losses(tmp_path)
    assert sorted(losses) == [1, 2, 3, 4]
    assert all(np.isfinite(entry['total_loss']) for entry in losses.values())
    # Eval mode on the finished model_dir reads the same checkpoint.
    again = runner.run(config, 'eval', str(tmp_path))
    assert again['pq'] == pytest.approx(metrics['pq'])
    assert lookups == ['demo'] * 3
    # eval_results.json names the classes.
    last = json.loads((tmp_path / 'eval_results.json').read_text()
                      .splitlines()[-1])
    assert last['step'] == 4 and last['pq'] == pytest.approx(metrics['pq'])
    assert set(last['per_class']) <= set(datasets.DEMO.class_names)
    assert all(0.0 <= value <= 1.0 for values in last['per_class'].values()
               for value in values.values())


def test_eval_on_a_spec_dataset_names_its_classes(demo_tfrecords, tmp_path,
                                                  monkeypatch):
    """The demo records described by a spec (classes renamed), read from
    the spec's own val split: one lookup of the spec path, and the per-class
    results under the spec's names. Evaluates the random initial weights:
    no training needed to show the wiring."""
    from deeplab2.data import dataset_spec
    spec = {'name': 'renamed', 'panoptic_label_divisor': 1000,
            'classes': [{'name': f'k{label}', 'thing': label >= 11}
                        for label in range(19)],
            'splits': {'val': {'file_pattern': f'{demo_tfrecords}/val-*',
                               'num_examples': 2}}}
    dataset_spec.write_spec(str(tmp_path / 'dataset.json'), spec)
    monkeypatch.chdir(tmp_path)
    config = config_lib.load_config(DEMO_CONFIG, _tiny_overrides(
        demo_tfrecords) + ['eval_dataset_options.dataset=dataset.json',
                           'eval_dataset_options.file_pattern=[]'])
    model_dir = tmp_path / 'model'
    session = runner._build_session(config, str(model_dir),
                                    tf.distribute.get_strategy(), seed=0)
    session.manager.save(checkpoint_number=0)
    lookups = _counted_lookups(monkeypatch)
    metrics = runner.run(config, 'eval', str(model_dir))
    assert lookups == [str(tmp_path / 'dataset.json')]
    assert 0.0 <= metrics['miou'] <= 1.0
    last = json.loads((model_dir / 'eval_results.json').read_text())
    assert last['per_class'] and set(last['per_class']) <= {
        f'k{label}' for label in range(19)}


def _train_command(model_dir, shards, steps):
    # With AutoAugment: its draws must also continue the seeded stream.
    overrides = [f'--config_override={o}'
                 for o in _tiny_overrides(shards, steps=steps, every=2) + [
                     'train_dataset_options.augmentations.'
                     'autoaugment_policy_name=simple_classification_policy']]
    return [sys.executable, '-m', 'deeplab2.trainer.train',
            f'--config_file={DEMO_CONFIG}', '--mode=train',
            f'--model_dir={model_dir}', '--seed=3', *overrides]


def test_resume_after_sigkill_continues_the_same_run(demo_tfrecords,
                                                     tmp_path):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
    # Enough steps after ckpt-4 that the kill lands mid-run.
    total = 20
    subprocess.run(_train_command(straight, demo_tfrecords, total),
                   check=True, env=env, cwd=REPO_ROOT, capture_output=True)
    process = subprocess.Popen(_train_command(killed, demo_tfrecords, total),
                               env=env, cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / 'ckpt-4.index').exists() and time.time() < deadline:
        assert process.poll() is None, 'training ended before ckpt-4'
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = tf.train.latest_checkpoint(str(killed))
    assert saved is not None and int(saved.rsplit('-', 1)[1]) < total, saved
    subprocess.run(_train_command(killed, demo_tfrecords, total), check=True,
                   env=env, cwd=REPO_ROOT, capture_output=True)
    # Every step's loss, those of the resumed part included, equals the
    # uninterrupted run's: same data stream and same dropout draws.
    expected, resumed = _losses(straight), _losses(killed)
    assert sorted(resumed) == sorted(expected) == list(range(1, total + 1))
    # Once each: the killed run's steps after ckpt-4 were dropped on resume.
    assert [json.loads(line)['step'] for line in
            (killed / 'train_log.jsonl').read_text().splitlines()] == list(
                range(1, total + 1))
    for step in expected:
        assert resumed[step]['total_loss'] == pytest.approx(
            expected[step]['total_loss'], rel=1e-5), step
    assert tf.train.latest_checkpoint(str(killed)).endswith(f'ckpt-{total}')


def test_resume_removes_stale_save_temporaries_and_later_log_lines(
        demo_tfrecords, tmp_path):
    model_dir, elsewhere = tmp_path / 'run', tmp_path / 'other_run'
    # training_number_of_steps = the checkpoint's step: the resumed run only
    # tidies up (cheap); the SIGKILL test above covers replayed steps.
    config = config_lib.load_config(
        DEMO_CONFIG, _tiny_overrides(demo_tfrecords, steps=2, every=2))
    # What a run killed after saving ckpt-2 leaves: ckpt-2, steps 1 to 4
    # logged, a torn last line and the staging folder of an unfinished save
    # (ckpt-2 is written directly: no need to train for it).
    session = runner._build_session(config, str(model_dir),
                                    tf.distribute.get_strategy(), seed=0)
    session.global_step.assign(2)
    session.manager.save(checkpoint_number=2)
    with open(model_dir / runner.TRAIN_LOG, 'a') as log:
        for step in (1, 2, 3, 4):
            log.write(json.dumps({'step': step, 'total_loss': 1.0}) + '\n')
        log.write('{"step": 5, "total_lo')
    stale = [model_dir / 'ckpt-3_temp',
             model_dir / ('checkpoint.tmp' + '0123456789abcdef' * 2)]
    stale[0].mkdir()
    (stale[0] / 'part-00000-of-00001.data-00000-of-00001').write_bytes(b'x')
    stale[1].write_text('partial')
    # Not TensorFlow's temporaries of this model_dir: kept.
    kept = [model_dir / 'notes_temp', elsewhere / 'ckpt-3_temp']
    for folder in kept:
        folder.mkdir(parents=True)
    runner.run(config, 'train', str(model_dir), seed=0)
    assert not any(path.exists() for path in stale)
    assert all(path.is_dir() for path in kept)
    assert (model_dir / runner.TRAIN_LOG).read_text() == ''.join(
        json.dumps({'step': step, 'total_loss': 1.0}) + '\n'
        for step in (1, 2))
    assert tf.train.latest_checkpoint(str(model_dir)).endswith('ckpt-2')


def test_fine_tunes_from_a_deeplab2_checkpoint(demo_tfrecords, tmp_path,
                                               fixtures_dir):
    name = 'mobilenet_v3_small_os16_narrow'
    folder = fixtures_dir / 'deeplab2' / name
    overrides = [o for o in _tiny_overrides(demo_tfrecords, steps=1)
                 if 'width_multiplier' not in o] + [
        f'model_options.initial_checkpoint={folder / "train_ckpt"}']
    config = config_lib.load_config(folder / f'{name}.textproto', overrides)
    config.train_dataset_options.dataset = 'demo'
    config.eval_dataset_options.dataset = 'demo'
    losses = runner.run(config, 'train', str(tmp_path), seed=0)
    assert np.isfinite(losses['total_loss'])


def test_eval_without_checkpoint_names_the_model_dir(tmp_path):
    config = config_lib.load_config(DEMO_CONFIG, [
        'model_options.backbone.backbone_width_multiplier=0.35'])
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        runner.run(config, 'eval', str(tmp_path))


@pytest.mark.parametrize('mode', ['train_and_eval', 'continuous_eval'])
def test_missing_eval_files_fail_before_training(demo_tfrecords, tmp_path,
                                                 mode):
    """DeepLab2 builds its evaluator first; a typo in the eval pattern must
    not surface only after a whole training run (or its first save)."""
    config = config_lib.load_config(DEMO_CONFIG, _tiny_overrides(
        demo_tfrecords) + [
            f'eval_dataset_options.file_pattern={tmp_path}/no-such-*'])
    with pytest.raises(FileNotFoundError,
                       match=r'eval_dataset_options.file_pattern .*no-such-'):
        runner.run(config, mode, str(tmp_path / 'model'))
    assert not (tmp_path / 'model').exists()


def test_continuous_eval_evaluates_checkpoints_until_the_last(
        demo_tfrecords, tmp_path):
    config = config_lib.load_config(
        DEMO_CONFIG, _tiny_overrides(demo_tfrecords, steps=2, every=2) +
        ['evaluator_options.continuous_eval_timeout=1'])
    runner.run(config, 'train', str(tmp_path), seed=0)
    metrics = runner.run(config, 'continuous_eval', str(tmp_path))
    assert 0.0 <= metrics['pq'] <= 1.0
    lines = (tmp_path / 'eval_results.json').read_text().splitlines()
    assert json.loads(lines[-1])['step'] == 2


def test_evaluating_records_missing_a_feature_names_file_and_key(
        demo_tfrecords, tmp_path):
    from deeplab2 import common
    from deeplab2.data import input_pipeline
    bad = tmp_path / 'unlabeled-00000.tfrecord'
    with tf.io.TFRecordWriter(str(bad)) as writer:
        for record in tf.data.TFRecordDataset(
                sorted(pathlib.Path(demo_tfrecords).glob('val-*'))):
            example = tf.train.Example.FromString(record.numpy())
            del example.features.feature[common.KEY_ENCODED_LABEL]
            writer.write(example.SerializeToString())
    config = config_lib.load_config(DEMO_CONFIG, _tiny_overrides(
        demo_tfrecords) + [f'eval_dataset_options.file_pattern={bad}'])
    model_dir = tmp_path / 'run'
    runner._build_session(config, str(model_dir),
                          tf.distribute.get_strategy(), seed=0).manager.save()
    with pytest.raises(input_pipeline.MissingFeatureError) as error:
        runner.run(config, 'eval', str(model_dir))
    assert f'{bad}: record 0' in str(error.value)
    assert common.KEY_ENCODED_LABEL in str(error.value)


def test_damaged_checkpoint_in_model_dir_is_named(demo_tfrecords, tmp_path):
    from deeplab2 import compat
    config = config_lib.load_config(DEMO_CONFIG,
                                    _tiny_overrides(demo_tfrecords))
    session = runner._build_session(config, str(tmp_path), tf.distribute
                                    .get_strategy(), seed=0)
    prefix = session.manager.save(checkpoint_number=2)
    data = pathlib.Path(f'{prefix}.data-00000-of-00001')
    data.write_bytes(data.read_bytes()[:1000])
    for mode in ('eval', 'train'):
        with pytest.raises(compat.CorruptCheckpointError, match=prefix):
            runner.run(config, mode, str(tmp_path))
