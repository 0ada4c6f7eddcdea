"""Every CLI prints a user error as one line without a traceback (unless
verbose) and keeps TensorFlow's start-up noise out of stderr."""

import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from deeplab2 import cli

DEMO_CONFIG = 'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto'
NOISE = re.compile(r'cuda|onednn|absl::InitializeLog|cpu_feature_guard',
                   re.IGNORECASE)


def _environment(**extra):
    """os.environ without the switches under test, so defaults apply."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ('TF_CPP_MIN_LOG_LEVEL',
                                  cli.VERBOSE_ENVIRONMENT_VARIABLE)}
    return {**environment, **extra}


def _run(repo_root, command, **extra_environment):
    program = (['-m', command[0]] if command[0].startswith('deeplab2.')
               else [str(repo_root / command[0])])
    return subprocess.run([sys.executable, *program, *command[1:]],
                          capture_output=True, text=True, cwd=repo_root,
                          env=_environment(**extra_environment), timeout=300)


@pytest.fixture
def bad_config(tmp_path):
    path = tmp_path / 'bad.textproto'
    path.write_text('model_options {\n  bakbone { name: "resnet50" }\n}\n')
    return path


def _cases(tmp_path, bad_config, fixtures_dir):
    """(command, what stderr must say) for each CLI, each with bad input."""
    missing = tmp_path / 'missing'
    cityscapes_mini = fixtures_dir / 'data' / 'cityscapes_mini'
    return {
        'train': (['deeplab2.trainer.train', f'--config_file={bad_config}',
                   f'--model_dir={tmp_path / "model"}'],
                  f"{bad_config}:2:3: unknown field 'bakbone'"),
        'build_cityscapes_data': (
            ['scripts/build_cityscapes_data.py',
             f'--cityscapes_root={cityscapes_mini}',
             f'--output_dir={tmp_path / "out"}', '--splits=train,test'],
            "Split 'test' was asked for (--splits)"),
        'build_coco_data': (
            ['scripts/build_coco_data.py', f'--coco_root={missing}',
             f'--output_dir={tmp_path / "out"}'],
            f'COCO image folder not found: {missing}/train2017'),
        'export_model': (
            ['scripts/export_model.py', f'--config_file={missing}.textproto',
             f'--checkpoint_path={missing}',
             f'--output_path={tmp_path / "export"}'],
            f'Config file not found: {missing}.textproto'),
        'predict': (
            ['scripts/predict.py', f'--config_file={missing}.textproto',
             f'--checkpoint_path={missing}', f'--input={tmp_path}',
             f'--output_dir={tmp_path / "out"}'],
            f'Config file not found: {missing}.textproto'),
        'convert_checkpoint': (
            ['scripts/convert_checkpoint.py', f'--config_file={DEMO_CONFIG}',
             f'--input={missing}', f'--output={tmp_path / "ckpt"}'],
            f'No checkpoint at {missing}'),
    }


@pytest.mark.parametrize('name', ['train', 'build_cityscapes_data',
                                  'build_coco_data', 'export_model',
                                  'predict', 'convert_checkpoint'])
def test_user_error_is_one_line_without_traceback_or_noise(
        name, repo_root, tmp_path, bad_config, fixtures_dir):
    command, expected = _cases(tmp_path, bad_config, fixtures_dir)[name]
    result = _run(repo_root, command)
    assert result.returncode == cli.USER_ERROR_EXIT_CODE, result.stderr
    assert f'error: {expected}' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not NOISE.search(result.stderr), result.stderr


def test_verbose_shows_the_traceback(repo_root, tmp_path, bad_config):
    result = _run(repo_root, ['deeplab2.trainer.train',
                              f'--config_file={bad_config}',
                              f'--model_dir={tmp_path / "model"}',
                              '--verbose'])
    assert result.returncode != 0
    assert 'Traceback' in result.stderr
    assert "ConfigError: " in result.stderr and 'bakbone' in result.stderr


def test_verbose_environment_variable(monkeypatch):
    for value, expected in [('1', True), ('0', False), ('', False)]:
        monkeypatch.setenv(cli.VERBOSE_ENVIRONMENT_VARIABLE, value)
        assert cli.verbose() is expected, value


def test_user_errors_print_one_line_and_bugs_raise(monkeypatch, capsys):
    monkeypatch.delenv(cli.VERBOSE_ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(cli, 'start_tensorflow_quietly', lambda: None)

    def failing(error):
        def main(argv):
            raise error
        return main

    corrupt = tf.errors.DataLossError(None, None, 'corrupted record at 12')
    assert cli._run_reporting_errors(failing(corrupt), []) == 2
    assert capsys.readouterr().err.startswith(
        'error: corrupted record at 12\n')
    with pytest.raises(KeyError):
        cli._run_reporting_errors(failing(KeyError('semantic_logits')), [])


def test_start_up_filter_keeps_real_lines():
    noise = [
        b'WARNING: All log messages before absl::InitializeLog() is called '
        b'are written to STDERR\n',
        b'I0000 00:00:1796041229.686442    5074 port.cc:153] oneDNN custom '
        b'operations are on.\n',
        b'E0000 00:00:1796041232.473061    5074 cuda_platform.cc:52] failed '
        b'call to cuInit: INTERNAL: CUDA error\n',
        b'2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/'
        b'cudart_stub.cc:32] Could not find cuda drivers on your machine.\n',
    ]
    kept = [
        b'E0000 00:00:1796041232.473061    5074 some_op.cc:52] a real error\n',
        b'/site-packages/x.py:3: DeprecationWarning: something\n',
    ]
    assert [line for line in noise + kept if not cli._is_noise(line)] == kept


def test_export_formats_come_from_the_serving_contract(repo_root):
    """--format offers exactly serving.FORMATS, and --help answers without
    loading TensorFlow (the flags are defined before it loads)."""
    from deeplab2 import serving
    code = ('import runpy, sys\n'
            f"sys.argv = ['export_model.py', '--help']\n"
            'try:\n'
            f"    runpy.run_path({str(repo_root / 'scripts/export_model.py')!r},"
            " run_name='__main__')\n"
            'except SystemExit:\n'
            '    pass\n'
            "print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, '-c', code], cwd=repo_root,
                            capture_output=True, text=True, timeout=120,
                            env=_environment())
    assert f'--format: <{"|".join(serving.FORMATS)}>' in result.stdout
    assert 'tensorflow loaded: False' in result.stdout
