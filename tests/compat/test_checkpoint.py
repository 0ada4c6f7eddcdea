"""Loading DeepLab2 checkpoints: output parity with the reference, both
optimizer layouts, full-size name mapping, our format, and every error."""

import json
import os
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2.compat import checkpoint as checkpoint_lib
from deeplab2.compat import last_layers
from deeplab2.compat import naming
from deeplab2.model import builder
from deeplab2.model import inference

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
FLOAT_KEYS = ['semantic_logits', 'semantic_probs', 'center_heatmap',
              'offset_map']
# DeepLab2's README: TF's own eager vs graph differences on these models are
# ~1e-4 (MobileNet) and ~2e-3 (ResNet family); the gates leave headroom.
TOLERANCES = {'mobilenet_v3_small_os16_narrow': 1e-3,
              'resnet50_os32_merge_with_pure_tf_func_narrow': 5e-3,
              'swidernet_sac_1_1_1_os16_narrow': 5e-3}
FULL = ['mobilenet_v3_small_os16', 'mobilenet_v3_large_os16',
        'resnet50_os32_merge_with_pure_tf_func', 'resnet50_beta_os32',
        'wide_resnet41_os16', 'swidernet_sac_1_1_1_os16']


def _narrow(fixtures_dir, name):
    folder = fixtures_dir / 'deeplab2' / name
    return folder, config_lib.load_config(folder / f'{name}.textproto')


def canonical_panoptic(panoptic, label_divisor=1000):
    """Renumbers instances 1, 2, ... per class in raster order of their
    first pixel (the fixtures README's canonicalization); stuff and void
    ids are kept."""
    flat = panoptic.ravel()
    ids, first = np.unique(flat, return_index=True)
    mapping, counts = {}, {}
    for panoptic_id in ids[np.argsort(first)]:
        semantic, instance = divmod(int(panoptic_id), label_divisor)
        if instance:
            counts[semantic] = counts.get(semantic, 0) + 1
            mapping[panoptic_id] = semantic * label_divisor + counts[semantic]
        else:
            mapping[panoptic_id] = panoptic_id
    return np.vectorize(mapping.get)(panoptic)


def _outputs(model, images):
    forward = tf.function(lambda x: model(x, training=False))
    return {key: value.numpy()
            for key, value in forward(tf.constant(images)).items()}


@pytest.mark.parametrize('layout', ['train_ckpt', 'legacy_ckpt'])
@pytest.mark.parametrize('name', sorted(TOLERANCES))
def test_outputs_match_deeplab2(fixtures_dir, name, layout):
    folder, config = _narrow(fixtures_dir, name)
    model = builder.build_model(config)
    summary = compat.restore_checkpoint(model, folder / layout)
    assert summary.source_format == 'deeplab2'
    assert len(summary.restored) == len(model.variables)
    assert not summary.skipped
    assert set(summary.ignored.values()) == {'optimizer state',
                                             'counter or object graph'}
    reference = np.load(folder / 'outputs.npz')
    run = tf.function(inference.build_inference(config, model))
    for suffix in ['', '_b', '_c']:
        ours = {key: value.numpy() for key, value in run(
            tf.constant(reference['input' + suffix])).items()}
        for key in FLOAT_KEYS:
            difference = np.max(np.abs(ours[key] - reference[key + suffix]))
            assert difference <= TOLERANCES[name], (key, suffix, difference)
        # Float noise may flip a few near-tie pixels; at most 10 per image.
        differing = np.sum(canonical_panoptic(ours['panoptic_pred']) !=
                           canonical_panoptic(reference['panoptic_pred' +
                                                        suffix]))
        assert differing <= 10, (suffix, differing)


@pytest.mark.parametrize('layout', ['train', 'legacy'])
@pytest.mark.parametrize('name', FULL)
def test_full_size_mapping_covers_every_variable(fixtures_dir, name, layout):
    """Without weights: the loader's match of model variables to the
    manifest's keys is complete, shape-correct and explains every entry."""
    folder = fixtures_dir / 'deeplab2'
    model = builder.build_model(config_lib.load_config(
        folder / 'full_configs' / f'{name}.textproto'))
    shapes = {}
    for line in open(folder / 'full_manifests' / f'{name}.{layout}.tsv'):
        key, shape, _ = line.rstrip('\n').split('\t')
        shapes[key] = json.loads(shape)
    variables = naming.variable_keys(model.checkpoint_items)
    summary, plan = checkpoint_lib._plan_restore(
        'manifest', shapes, variables, last_layers.from_flags(True, True), '')
    assert len(plan) == len(variables) == len(model.variables)
    assert all(list(shapes[source]) == list(variables[ours].shape)
               for source, ours in plan)
    assert len(plan) + len(summary.ignored) == len(shapes)


def test_variable_keys_are_the_keys_a_save_writes(fixtures_dir, tmp_path):
    _, config = _narrow(fixtures_dir, 'swidernet_sac_1_1_1_os16_narrow')
    model = builder.build_model(config)
    saved = tf.train.Checkpoint(**model.checkpoint_items).write(
        str(tmp_path / 'ckpt'))
    written = {key for key, _ in tf.train.list_variables(saved)
               if key.endswith(naming.VALUE_SUFFIX)}
    assert set(naming.variable_keys(model.checkpoint_items)) == written


@pytest.fixture(scope='module')
def restored_mobilenet(fixtures_dir):
    name = 'mobilenet_v3_small_os16_narrow'
    folder, config = _narrow(fixtures_dir, name)
    model = builder.build_model(config)
    compat.restore_checkpoint(model, folder / 'train_ckpt')
    return folder, config, model


def test_trainer_checkpoint_restores(restored_mobilenet, tmp_path):
    """The trainer saves the model next to a Keras 3 optimizer, which
    tracks the trainable variables: TF then stores them under
    `optimizer/_trainable_variables/N`. They restore by the model's path."""
    import keras
    _, config, model = restored_mobilenet
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(
        global_step=tf.Variable(3, dtype=tf.int64), optimizer=optimizer,
        **model.checkpoint_items)
    prefix = checkpoint.write(str(tmp_path / 'ckpt-3'))
    stored = {key for key, _ in tf.train.list_variables(prefix)}
    assert any(key.startswith('optimizer/_trainable_variables/')
               for key in stored)  # the layout this test is about
    fresh = builder.build_model(config)
    summary = compat.restore_checkpoint(fresh, prefix)
    assert summary.source_format == 'deeplab2_keras3'
    assert len(summary.restored) == len(fresh.variables)
    for ours, theirs in zip(fresh.variables, model.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_converted_checkpoint_loads_with_plain_tf_train_checkpoint(
        restored_mobilenet, tmp_path):
    folder, config, model = restored_mobilenet
    summary = compat.convert_checkpoint(config, folder / 'legacy_ckpt',
                                        tmp_path / 'converted' / 'ckpt')
    assert summary.source_format == 'deeplab2'
    fresh = builder.build_model(config)
    status = tf.train.Checkpoint(**fresh.checkpoint_items).read(
        str(tmp_path / 'converted' / 'ckpt'))
    status.assert_existing_objects_matched().assert_consumed()
    images = np.load(folder / 'outputs.npz')['input_c']
    expected, got = _outputs(model, images), _outputs(fresh, images)
    for key in FLOAT_KEYS:
        np.testing.assert_array_equal(got[key], expected[key])
    # Our own format is detected and restores as well.
    again = builder.build_model(config)
    summary = compat.restore_checkpoint(again, tmp_path / 'converted')
    assert summary.source_format == 'deeplab2_keras3'
    np.testing.assert_array_equal(_outputs(again, images)['offset_map'],
                                  expected['offset_map'])
    assert not list((tmp_path / 'converted').glob('.*tmp*'))


def test_prefix_folder_and_tar_gz_paths(restored_mobilenet, tmp_path):
    folder, config, _ = restored_mobilenet
    archive = tmp_path / 'model.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(folder / 'train_ckpt', arcname='mobilenet_narrow')
    model = builder.build_model(config)
    for path in [folder / 'train_ckpt' / 'ckpt-1', folder / 'train_ckpt',
                 archive]:
        summary = compat.restore_checkpoint(model, path)
        assert summary.checkpoint.endswith('ckpt-1')


def test_missing_paths_are_named(restored_mobilenet, tmp_path):
    _, _, model = restored_mobilenet
    for path in [tmp_path / 'nothing', tmp_path / 'nothing.tar.gz']:
        with pytest.raises(FileNotFoundError, match=str(path)):
            compat.restore_checkpoint(model, path)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='No checkpoint at'):
        compat.restore_checkpoint(model, tmp_path / 'empty')


def test_shape_mismatch_is_listed_with_the_config(restored_mobilenet):
    folder, config, _ = restored_mobilenet
    config = config_lib.load_config(
        folder / f'{folder.name}.textproto',
        ['model_options.panoptic_deeplab.semantic_head.output_channels=7'])
    model = builder.build_model(config)
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_checkpoint(model, folder / 'train_ckpt',
                                  expected='my_config.textproto')
    message = str(error.value)
    assert 'built from my_config.textproto' in message
    assert 'shape mismatches (2)' in message
    assert ('semantic_last_layer/kernel/.ATTRIBUTES/VARIABLE_VALUE: '
            'checkpoint [1, 1, 40, 19], model [1, 1, 40, 7]') in message


def test_restore_semantic_last_layer_false_keeps_other_classes(
        restored_mobilenet):
    folder, config, reference = restored_mobilenet
    config = config_lib.load_config(
        folder / f'{folder.name}.textproto',
        ['model_options.panoptic_deeplab.semantic_head.output_channels=7'])
    model = builder.build_model(config)
    kernel_before = model.decoder._semantic_head.final_conv.kernel.numpy()
    summary = compat.restore_checkpoint(model, folder / 'train_ckpt',
                                        restore_semantic_last_layer=False)
    assert set(summary.skipped.values()) == {
        'restore_semantic_last_layer_from_initial_checkpoint is false'}
    assert len(summary.skipped) == 2
    np.testing.assert_array_equal(
        model.decoder._semantic_head.final_conv.kernel.numpy(), kernel_before)
    np.testing.assert_array_equal(model.encoder.variables[0].numpy(),
                                  reference.encoder.variables[0].numpy())


def test_missing_and_unexpected_variables_are_listed(restored_mobilenet,
                                                     tmp_path):
    folder, config, _ = restored_mobilenet
    # Without the instance branch the model lacks what the checkpoint has.
    semantic_only = builder.build_model(config_lib.load_config(
        folder / f'{folder.name}.textproto',
        ['model_options.panoptic_deeplab.instance.enable=false']))
    with pytest.raises(compat.CheckpointMismatchError,
                       match=r'checkpoint variables the model does not have '
                       r'\(\d+\):\n    instance_center_head'):
        compat.restore_checkpoint(semantic_only, folder / 'train_ckpt')
    # The other way round: the model has variables the checkpoint lacks.
    prefix = compat.save_model_checkpoint(semantic_only, tmp_path / 'sem')
    full = builder.build_model(config)
    with pytest.raises(compat.CheckpointMismatchError,
                       match=r'model variables with no value in the '
                       r'checkpoint \(\d+\):\n    instance_'):
        compat.restore_checkpoint(full, prefix)


def test_backbone_only_checkpoint_restores_the_encoder(restored_mobilenet,
                                                       tmp_path):
    _, config, reference = restored_mobilenet
    prefix = tf.train.Checkpoint(encoder=reference.encoder).write(
        str(tmp_path / 'imagenet'))
    model = builder.build_model(config)
    head_before = model.decoder._semantic_head.final_conv.kernel.numpy()
    summary = compat.restore_checkpoint(model, prefix)
    assert len(summary.restored) == len(reference.encoder.variables)
    assert set(summary.skipped.values()) == {'backbone-only checkpoint'}
    for ours, theirs in zip(model.encoder.variables,
                            reference.encoder.variables):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(
        model.decoder._semantic_head.final_conv.kernel.numpy(), head_before)


def test_initial_checkpoint_from_model_options(restored_mobilenet,
                                              fixtures_dir):
    folder, config, reference = restored_mobilenet
    config = config_lib.load_config(folder / f'{folder.name}.textproto', [
        f'model_options.initial_checkpoint={folder / "train_ckpt"}',
        'model_options.restore_instance_last_layer_from_initial_checkpoint='
        'false'])
    model = builder.build_model(config)
    summary = compat.restore_initial_checkpoint(model, config.model_options)
    assert len(summary.skipped) == 4  # two last layers, kernel + bias each
    assert compat.restore_initial_checkpoint(
        model, config_lib.load_config(
            folder / f'{folder.name}.textproto',
            ['model_options.initial_checkpoint=']).model_options) is None
    placeholder = config_lib.load_config(
        fixtures_dir / 'deeplab2/full_configs/mobilenet_v3_small_os16.textproto')
    with pytest.raises(config_lib.UnresolvedPlaceholderError,
                       match='model_options.initial_checkpoint is still'):
        compat.restore_initial_checkpoint(model, placeholder.model_options)


def test_convert_checkpoint_script(restored_mobilenet, tmp_path):
    folder, _, _ = restored_mobilenet
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'scripts/convert_checkpoint.py'),
         f'--config_file={folder / (folder.name + ".textproto")}',
         f'--input={folder / "legacy_ckpt"}',
         f'--output={tmp_path / "out" / "ckpt"}'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert '362 variables restored' in result.stdout
    assert 'optimizer state' in result.stdout
    assert (tmp_path / 'out' / 'ckpt.index').is_file()


# ------------------------------------------------------ damaged checkpoints


@pytest.fixture(scope='module')
def saved_mobilenet(restored_mobilenet, tmp_path_factory):
    """Our checkpoint of the narrow MobileNet, and a fresh (randomly
    initialized) model of the same config to restore it into."""
    _, config, model = restored_mobilenet
    prefix = compat.save_model_checkpoint(
        model, tmp_path_factory.mktemp('saved') / 'ckpt')
    return prefix, config, builder.build_model(config)


def _damaged_copy(prefix, folder, damage):
    """A copy of checkpoint `prefix` in `folder` with `damage` done."""
    source = pathlib.Path(prefix)
    copy = folder / 'ckpt'
    for file in source.parent.glob(source.name + '.*'):
        (folder / ('ckpt' + file.name[len(source.name):])).write_bytes(
            file.read_bytes())
    data = folder / 'ckpt.data-00000-of-00001'
    if damage == 'truncated_data':
        data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    elif damage == 'flipped_data':
        content = bytearray(data.read_bytes())
        content[len(content) // 2:len(content) // 2 + 64] = b'\xff' * 64
        data.write_bytes(bytes(content))
    elif damage == 'missing_data':
        data.unlink()
    elif damage == 'garbage_index':
        (folder / 'ckpt.index').write_bytes(b'\x07garbage' * 40)
    return str(copy)


DAMAGES = ['truncated_data', 'flipped_data', 'missing_data', 'garbage_index']


@pytest.mark.parametrize('damage', DAMAGES)
def test_damaged_checkpoint_is_one_error_naming_it(saved_mobilenet,
                                                   tmp_path, damage):
    prefix, _, model = saved_mobilenet
    damaged = _damaged_copy(prefix, tmp_path, damage)
    before = [variable.numpy() for variable in model.variables]
    with pytest.raises(compat.CorruptCheckpointError) as error:
        compat.restore_checkpoint(model, damaged)
    assert isinstance(error.value, ValueError)
    assert damaged in str(error.value)
    assert error.value.__cause__ is None and error.value.__suppress_context__
    # Nothing is restored partially: the readable variables were not
    # assigned either.
    for value, variable in zip(before, model.variables):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_damaged_initial_checkpoint_names_it(saved_mobilenet, tmp_path):
    prefix, config, model = saved_mobilenet
    damaged = _damaged_copy(prefix, tmp_path, 'truncated_data')
    options = type(config.model_options)()
    options.CopyFrom(config.model_options)
    options.initial_checkpoint = damaged
    with pytest.raises(compat.CorruptCheckpointError, match=damaged):
        compat.restore_initial_checkpoint(model, options)


def test_truncated_checkpoint_archive_names_it(saved_mobilenet, tmp_path):
    prefix, _, model = saved_mobilenet
    archive = tmp_path / 'model.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        for file in pathlib.Path(prefix).parent.glob('ckpt.*'):
            tar.add(file, arcname=f'model/{file.name}')
    archive.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])
    with pytest.raises(compat.CorruptCheckpointError, match=str(archive)):
        compat.restore_checkpoint(model, archive)


def test_export_and_predict_report_a_damaged_checkpoint(saved_mobilenet,
                                                        tmp_path):
    from deeplab2 import export
    from deeplab2 import predictor
    prefix, config, _ = saved_mobilenet
    damaged = _damaged_copy(prefix, tmp_path, 'truncated_data')
    with pytest.raises(compat.CorruptCheckpointError, match=damaged):
        export.load_model(config, damaged)
    with pytest.raises(compat.CorruptCheckpointError, match=damaged):
        predictor.Predictor.from_checkpoint(config, damaged)


# ------------------------------------------------------ writing checkpoints


class _Items:
    """The one thing save_model_checkpoint reads from a model."""

    def __init__(self):
        self.checkpoint_items = {'encoder': tf.train.Checkpoint(
            kernel=tf.Variable([[1.0, 2.0]]))}


def test_saved_checkpoint_is_all_that_is_left(tmp_path):
    prefix = compat.save_model_checkpoint(_Items(), tmp_path / 'out' / 'ckpt')
    assert prefix == str(tmp_path / 'out' / 'ckpt')
    assert sorted(path.name for path in (tmp_path / 'out').iterdir()) == [
        'ckpt.data-00000-of-00001', 'ckpt.index']
    assert tf.train.load_checkpoint(prefix).get_tensor(
        'encoder/kernel/.ATTRIBUTES/VARIABLE_VALUE').tolist() == [[1.0, 2.0]]


def test_failed_save_leaves_no_checkpoint(tmp_path, monkeypatch):
    def write_data_then_fail(self, file_prefix, **kwargs):
        pathlib.Path(f'{file_prefix}.data-00000-of-00001').write_bytes(b'x')
        raise OSError('disk full')
    monkeypatch.setattr(tf.train.Checkpoint, 'write', write_data_then_fail)
    with pytest.raises(OSError, match='disk full'):
        compat.save_model_checkpoint(_Items(), tmp_path / 'ckpt')
    assert list(tmp_path.iterdir()) == []


def test_files_move_data_before_index(tmp_path, monkeypatch):
    """A reader that sees the .index must find the .data it points to."""
    moved, real_replace = [], os.replace

    def recording_replace(source, target):
        moved.append(pathlib.Path(target).name)
        real_replace(source, target)
    monkeypatch.setattr(checkpoint_lib.os, 'replace', recording_replace)
    compat.save_model_checkpoint(_Items(), tmp_path / 'ckpt')
    assert moved == ['ckpt.data-00000-of-00001', 'ckpt.index']
