"""The generated *_pb2 modules against protos/, and the schema against the
DeepLab2 facts configs and checkpoints depend on."""

import importlib
import importlib.util
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / 'protos'


def generate_modules(proto_root: pathlib.Path, out_dir: pathlib.Path):
    """Runs the install-time generator on proto_root into out_dir.

    protoc runs in a child process: grpc_tools links its own protobuf, and
    loading it next to TensorFlow's in one process crashes.
    """
    if importlib.util.find_spec('grpc_tools') is None:
        pytest.skip('grpcio-tools (the dev extra) is not installed')
    files = sorted(str(p.relative_to(proto_root))
                   for p in (proto_root / 'deeplab2').glob('*.proto'))
    out_dir.mkdir()
    result = subprocess.run(
        [sys.executable, '-m', 'grpc_tools.protoc',
         f'--proto_path={proto_root}', f'--python_out={out_dir}', *files],
        capture_output=True, text=True)
    assert result.returncode == 0, f'protoc failed on {files}: {result.stderr}'
    return {p.name: p.read_text()
            for p in (out_dir / 'deeplab2').glob('*_pb2.py')}


def stale_modules(proto_root: pathlib.Path, tmp_path: pathlib.Path):
    """Generated files that differ from, or are missing in, the install."""
    fresh = generate_modules(proto_root, tmp_path / 'generated')
    installed_dir = pathlib.Path(
        importlib.import_module('deeplab2.config_pb2').__file__).parent
    return sorted(name for name, text in fresh.items()
                  if not (installed_dir / name).is_file()
                  or (installed_dir / name).read_text() != text)


def test_generated_modules_are_not_stale(tmp_path):
    stale = stale_modules(PROTO_ROOT, tmp_path)
    assert not stale, (
        f'generated modules are stale against {stale}: re-run '
        '`pip install -e .` to regenerate them')


def test_staleness_check_detects_an_edited_proto(tmp_path):
    edited = tmp_path / 'protos'
    shutil.copytree(PROTO_ROOT, edited)
    evaluator = edited / 'deeplab2' / 'evaluator.proto'
    text = evaluator.read_text()
    assert '[default = 400]' in text
    evaluator.write_text(text.replace('[default = 400]', '[default = 200]'))
    assert stale_modules(edited, tmp_path) == ['evaluator_pb2.py']


def test_staleness_check_detects_a_new_proto(tmp_path):
    edited = tmp_path / 'protos'
    shutil.copytree(PROTO_ROOT, edited)
    (edited / 'deeplab2' / 'extra.proto').write_text(
        'syntax = "proto2";\npackage deeplab2;\nmessage Extra {}\n')
    assert stale_modules(edited, tmp_path) == ['extra_pb2.py']


def test_pb2_modules_import_as_deeplab2_siblings_in_a_fresh_process():
    code = ('import deeplab2.config_pb2 as c; '
            'print(c.ExperimentOptions.DESCRIPTOR.full_name)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True,
                            text=True, check=True, cwd='/')
    assert result.stdout.strip() == 'deeplab2.ExperimentOptions'


# DeepLab2's schema facts (field number, default), transcribed from its
# .proto files at commit 64bc1c1: binary protos and textprotos depend on them.
DEEPLAB2_FIELDS = [
    ('ExperimentOptions', 'model_options', 2, None),
    ('ExperimentOptions', 'eval_dataset_options', 6, None),
    ('DatasetOptions', 'batch_size', 3, 32),
    ('DatasetOptions', 'augmentations', 8, None),
    ('DatasetOptions', 'sigma', 9, 8.0),
    ('DatasetOptions', 'small_instance_threshold', 11, 4096),
    ('DatasetOptions', 'small_instance_weight', 12, 3.0),
    ('DatasetOptions', 'decode_groundtruth_label', 14, True),
    ('DatasetOptions', 'cameras_to_use', 18, None),
    ('DatasetOptions.AugmentationOptions', 'scale_factor_step_size', 3, 0.25),
    ('EvaluatorOptions', 'add_flipped_images', 5, False),
    ('EvaluatorOptions', 'stuff_area_limit', 6, 0),
    ('EvaluatorOptions', 'center_score_threshold', 7, 0.1),
    ('EvaluatorOptions', 'nms_kernel', 8, 3),
    ('EvaluatorOptions', 'keep_k_centers', 9, 400),
    ('EvaluatorOptions', 'eval_scales', 15, None),
    ('EvaluatorOptions', 'merge_semantic_and_instance_with_tf_op', 16, True),
    ('EvaluatorOptions', 'raw_panoptic_format', 17, 'two_channel_png'),
    ('EvaluatorOptions', 'maskwise_postprocessing', 23, None),
    ('SolverOptions', 'use_sync_batchnorm', 1, True),
    ('SolverOptions', 'learning_policy', 2, 'poly'),
    ('SolverOptions', 'base_learning_rate', 3, 1e-3),
    ('SolverOptions', 'poly_learning_power', 4, 0.9),
    ('SolverOptions', 'optimizer', 7, 'adam'),
    ('SolverOptions', 'clip_gradient_norm', 10, 10.0),
    ('SolverOptions', 'training_number_of_steps', 11, 60000),
    ('SolverOptions', 'batchnorm_momentum', 14, 0.99),
    ('SolverOptions', 'batchnorm_epsilon', 15, 0.001),
    ('SolverOptions', 'backbone_learning_rate_multiplier', 16, 1.0),
    ('SolverOptions', 'adamw_weight_decay', 17, 0.0),
    ('LossOptions.SingleLossOptions', 'top_k_percent', 3, 1.0),
    ('LossOptions', 'depth_loss', 9, None),
    ('TrainerOptions', 'num_checkpoints_to_keep', 1, 5),
    ('TrainerOptions', 'steps_per_loop', 4, 1000),
    ('DecoderOptions', 'decoder_channels', 2, 256),
    ('DecoderOptions', 'aspp_channels', 3, 256),
    ('DecoderOptions', 'decoder_conv_type', 5, 'depthwise_separable_conv'),
    ('DecoderOptions', 'aspp_use_only_1x1_proj_conv', 6, False),
    ('HeadOptions', 'head_conv_type', 3, 'depthwise_separable_conv'),
    ('InstanceOptions', 'enable', 1, True),
    ('InstanceOptions', 'instance_decoder_override', 3, None),
    ('ModelOptions.BackboneOptions', 'name', 1, 'resnet50'),
    ('ModelOptions.BackboneOptions', 'output_stride', 2, 32),
    ('ModelOptions.BackboneOptions', 'drop_path_schedule', 6, 'constant'),
    ('ModelOptions.BackboneOptions', 'use_sac_beyond_stride', 10, -1),
    ('ModelOptions', 'panoptic_deeplab', 5, None),
    ('ModelOptions', 'initial_checkpoint', 6, None),
    ('ModelOptions', 'max_deeplab', 10, None),
    ('ModelOptions', 'vip_deeplab', 11, None),
    ('ModelOptions', 'restore_semantic_last_layer_from_initial_checkpoint', 8,
     True),
    ('ModelOptions.MaXDeepLabOptions',
     'instance_discrimination_sample_temperature', 5, 0.6),
]


@pytest.mark.parametrize('message,field,number,default', DEEPLAB2_FIELDS,
                         ids=lambda v: v if isinstance(v, str) else None)
def test_field_numbers_and_defaults_match_deeplab2(message, field, number,
                                                   default):
    from deeplab2 import config_pb2
    descriptor = config_pb2.DESCRIPTOR.pool.FindMessageTypeByName(
        f'deeplab2.{message}')
    field_descriptor = descriptor.fields_by_name[field]
    assert field_descriptor.number == number
    if default is not None:
        assert field_descriptor.default_value == pytest.approx(default)
