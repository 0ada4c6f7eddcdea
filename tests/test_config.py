"""Config loading: every config parses, overrides of every kind, and each
error names the file/line/field it is about."""

import pathlib
import re
import subprocess
import sys

import pytest
from google.protobuf import text_format

from deeplab2 import config as config_lib
from deeplab2.data import datasets

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
OUR_CONFIGS = sorted((REPO_ROOT / 'configs').rglob('*.textproto'))
RESNET50 = REPO_ROOT / 'configs/cityscapes/panoptic_deeplab/resnet50_os32.textproto'

# Our configs that DeepLab2 also publishes, by the name DeepLab2 gives them
# in ../shared/fixtures/deeplab2/full_configs.
DEEPLAB2_NAMES = {
    'mobilenet_v3_small_os16': 'mobilenet_v3_small_os16',
    'mobilenet_v3_large_os16': 'mobilenet_v3_large_os16',
    'resnet50_os32': 'resnet50_os32_merge_with_pure_tf_func',
    'resnet50_beta_os32': 'resnet50_beta_os32',
    'wide_resnet41_os16': 'wide_resnet41_os16',
    'swidernet_sac_1_1_1_os16': 'swidernet_sac_1_1_1_os16',
}


def _write(tmp_path, text, name='exp.textproto'):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- parsing


def test_configs_folder_has_the_promised_configs():
    names = {str(p.relative_to(REPO_ROOT / 'configs')) for p in OUR_CONFIGS}
    for expected in [
            'cityscapes/panoptic_deeplab/mobilenet_v3_small_os16.textproto',
            'cityscapes/panoptic_deeplab/mobilenet_v3_large_os16.textproto',
            'cityscapes/panoptic_deeplab/resnet50_os32.textproto',
            'cityscapes/panoptic_deeplab/resnet50_beta_os32.textproto',
            'cityscapes/panoptic_deeplab/wide_resnet41_os16.textproto',
            'cityscapes/panoptic_deeplab/swidernet_sac_1_1_1_os16.textproto',
            'cityscapes/panoptic_deeplab/swidernet_sac_1_1_3_os16.textproto',
            'cityscapes/panoptic_deeplab/swidernet_sac_1_1_4.5_os16.textproto',
            'coco/panoptic_deeplab/resnet50_os16.textproto',
            'coco/panoptic_deeplab/resnet50_os32.textproto',
    ]:
        assert expected in names


@pytest.mark.parametrize('path', OUR_CONFIGS, ids=lambda p: p.stem)
def test_every_config_in_configs_parses_and_is_consistent(path):
    config = config_lib.load_config(path)
    assert config_lib.meta_architecture(config.model_options) == (
        'panoptic_deeplab')
    descriptor = datasets.get_dataset_descriptor(
        config.train_dataset_options.dataset)
    assert config.eval_dataset_options.dataset == descriptor.name
    head = config.model_options.panoptic_deeplab.semantic_head
    assert head.output_channels == descriptor.num_classes
    assert len(config.train_dataset_options.crop_size) == 2
    assert config.experiment_name and '${' not in config.experiment_name


def test_swidernet_variants_differ_only_in_depth_and_rate():
    folder = REPO_ROOT / 'configs/cityscapes/panoptic_deeplab'
    layer_multipliers = {}
    for name in ['1_1_1', '1_1_3', '1_1_4.5']:
        backbone = config_lib.load_config(
            folder / f'swidernet_sac_{name}_os16.textproto'
        ).model_options.backbone
        assert backbone.name == 'swidernet'
        assert backbone.stem_width_multiplier == 1.0
        assert backbone.backbone_width_multiplier == 1.0
        assert backbone.use_sac_beyond_stride == 32
        layer_multipliers[name] = backbone.backbone_layer_multiplier
    assert layer_multipliers == {'1_1_1': 1.0, '1_1_3': 3.0, '1_1_4.5': 4.5}


@pytest.mark.parametrize('ours,theirs', sorted(DEEPLAB2_NAMES.items()))
def test_our_configs_keep_deeplab2_hyperparameters(fixtures_dir, ours, theirs):
    """Ours differ from DeepLab2's published config only in the name."""
    folder = 'cityscapes/panoptic_deeplab'
    mine = config_lib.load_config(REPO_ROOT / 'configs' / folder /
                                  f'{ours}.textproto')
    reference = config_lib.load_config(
        fixtures_dir / 'deeplab2/full_configs' / f'{theirs}.textproto')
    reference.experiment_name = mine.experiment_name
    assert text_format.MessageToString(mine) == text_format.MessageToString(
        reference)


def test_deeplab2_full_configs_parse_with_placeholders(fixtures_dir):
    paths = sorted((fixtures_dir / 'deeplab2/full_configs').glob('*.textproto'))
    assert len(paths) == 6
    for path in paths:
        config = config_lib.load_config(path)
        found = dict(config_lib.find_placeholders(config))
        assert found == {
            'experiment_name': '${EXPERIMENT_NAME}',
            'model_options.initial_checkpoint': '${INIT_CHECKPOINT}',
            'train_dataset_options.file_pattern[0]': '${TRAIN_SET}',
            'eval_dataset_options.file_pattern[0]': '${VAL_SET}',
        }, path.name


NARROW_FIXTURES = ['mobilenet_v3_small_os16_narrow',
                   'resnet50_os32_merge_with_pure_tf_func_narrow',
                   'swidernet_sac_1_1_1_os16_narrow']


@pytest.mark.parametrize('fixture', NARROW_FIXTURES)
def test_values_and_defaults_match_what_deeplab2_read(fixtures_dir, fixture):
    """DeepLab2 recorded the evaluator and batch norm settings it used
    (defaults included) in info.json; our parse must give the same."""
    import json
    folder = fixtures_dir / 'deeplab2' / fixture
    info = json.loads((folder / 'info.json').read_text())
    config = config_lib.load_config(folder / f'{fixture}.textproto')
    evaluator = config.evaluator_options
    expected = info['evaluator_options']
    assert evaluator.center_score_threshold == pytest.approx(
        expected['center_score_threshold'])
    assert evaluator.nms_kernel == expected['nms_kernel']
    assert evaluator.stuff_area_limit == expected['stuff_area_limit']
    assert evaluator.keep_k_centers == expected['keep_k_centers']  # default
    assert evaluator.merge_semantic_and_instance_with_tf_op == expected[
        'merge_semantic_and_instance_with_tf_op']
    assert evaluator.add_flipped_images == expected['add_flipped_images']
    solver = config.trainer_options.solver_options
    assert solver.batchnorm_epsilon == pytest.approx(
        info['bn']['config_batchnorm_epsilon'])
    assert solver.batchnorm_momentum == pytest.approx(
        info['bn']['config_batchnorm_momentum'])  # default
    assert config.model_options.backbone.drop_path_keep_prob == pytest.approx(
        info['textproto_drop_path_keep_prob'])


def test_proto_message_header_of_a_fragment_is_reported(tmp_path):
    path = _write(tmp_path, '# proto-file: deeplab2/model.proto\n'
                  '# proto-message: ModelOptions\n\nbackbone { name: "x" }\n')
    with pytest.raises(config_lib.ConfigError,
                       match=rf'{re.escape(str(path))}:2: .*ModelOptions'):
        config_lib.load_config(path)


# -------------------------------------------------------------- overrides


def test_override_scalars_of_each_type():
    config = config_lib.load_config(RESNET50, [
        'trainer_options.solver_options.base_learning_rate=0.001',  # float
        'train_dataset_options.batch_size=4',  # int32
        'trainer_options.solver_options.use_sync_batchnorm=false',  # bool
        'evaluator_options.add_flipped_images=TRUE',  # bool, any case
        'experiment_name=my_run',  # string
        'model_options.initial_checkpoint="/ckpt/a b"',  # quoted string
    ])
    solver = config.trainer_options.solver_options
    assert solver.base_learning_rate == pytest.approx(0.001)
    assert config.train_dataset_options.batch_size == 4
    assert solver.use_sync_batchnorm is False
    assert config.evaluator_options.add_flipped_images is True
    assert config.experiment_name == 'my_run'
    assert config.model_options.initial_checkpoint == '/ckpt/a b'
    # Untouched values stay as the file has them.
    assert solver.training_number_of_steps == 60000


def test_override_repeated_scalars():
    config = config_lib.load_config(RESNET50, [
        'train_dataset_options.file_pattern=/data/train*',
        'eval_dataset_options.file_pattern=["/data/val-0*", /data/val-1*]',
        'train_dataset_options.crop_size=513,1025',
        'eval_dataset_options.crop_size=[769, 1537]',
        'evaluator_options.eval_scales=[0.5, 1.0, 1.75]',
        'model_options.decoder.atrous_rates[2]=12',
        'train_dataset_options.min_resize_value=[]',
    ])
    assert list(config.train_dataset_options.file_pattern) == ['/data/train*']
    assert list(config.eval_dataset_options.file_pattern) == [
        '/data/val-0*', '/data/val-1*']
    assert list(config.train_dataset_options.crop_size) == [513, 1025]
    assert list(config.eval_dataset_options.crop_size) == [769, 1537]
    assert list(config.evaluator_options.eval_scales) == [0.5, 1.0, 1.75]
    assert list(config.model_options.decoder.atrous_rates) == [3, 6, 12]
    assert list(config.train_dataset_options.min_resize_value) == []


def test_override_messages_and_repeated_messages():
    config = config_lib.load_config(RESNET50, [
        'model_options.panoptic_deeplab.low_level[1].channels_project=48',
        'model_options.panoptic_deeplab.instance.low_level_override='
        '[{feature_key: "res4" channels_project: 8}]',
        'model_options.backbone={name: "resnet50_beta" output_stride: 16}',
        'model_options.panoptic_deeplab.low_level[2]='
        '{feature_key: "res1" channels_project: 4}',
    ])
    options = config.model_options.panoptic_deeplab
    assert [(l.feature_key, l.channels_project) for l in options.low_level] == [
        ('res3', 64), ('res2', 48), ('res1', 4)]
    assert [(l.feature_key, l.channels_project)
            for l in options.instance.low_level_override] == [('res4', 8)]
    # A message value replaces the field: drop path etc. return to defaults.
    backbone = config.model_options.backbone
    assert (backbone.name, backbone.output_stride) == ('resnet50_beta', 16)


def test_empty_string_override_clears_the_field():
    config = config_lib.load_config(RESNET50,
                                    ['model_options.initial_checkpoint='])
    assert not config.model_options.HasField('initial_checkpoint')
    assert config_lib.resolved_field(config,
                                     'model_options.initial_checkpoint') == ''


def test_overrides_apply_in_order():
    config = config_lib.load_config(
        RESNET50, ['train_dataset_options.batch_size=4',
                   'train_dataset_options.batch_size=2'])
    assert config.train_dataset_options.batch_size == 2


@pytest.mark.parametrize('override,pattern', [
    ('trainer_options.solver_options.base_learning_rate=fast',
     r"base_learning_rate=fast'.*expected a float for "
     r"SolverOptions.base_learning_rate, got 'fast'"),
    ('train_dataset_options.batch_size=2.5',
     r"expected an int32 for DatasetOptions.batch_size, got '2.5'"),
    ('train_dataset_options.batch_size=3000000000',
     r'DatasetOptions.batch_size.*out of range'),
    ('trainer_options.solver_options.use_sync_batchnorm=maybe',
     r"expected a bool for SolverOptions.use_sync_batchnorm, got 'maybe'"),
    ('train_dataset_options.crop_size=513,wide',
     r"expected a list of int32 for DatasetOptions.crop_size, got 'wide'"),
    ('train_dataset_options.bach_size=4',
     r"train_dataset_options \(DatasetOptions\) has no field 'bach_size'. "
     r"Did you mean 'batch_size'\?"),
    ('trainer_options.solver_option.optimizer=sgd',
     r"trainer_options \(TrainerOptions\) has no field 'solver_option'. "
     r"Did you mean 'solver_options'\?"),
    ('train_dataset_options.batch_size', r'expected dotted.field.path=value'),
    ('model_options.panoptic_deeplab.low_level[5].channels_project=1',
     r'index 5 of .low_level.* out of range: it has 2 elements'),
    ('model_options.panoptic_deeplab.low_level.channels_project=1',
     r"'low_level'.*is a repeated message: address one element as "
     r'low_level\[i\]'),
    ('train_dataset_options.batch_size.value=1',
     r"'batch_size' in .* is an int32, not a message"),
    ('model_options.backbone={name: 3}',
     r'expected a textproto message \{...\} for ModelOptions.backbone'),
    ('experiment_name[0]=x', r"'experiment_name' .* is not repeated"),
])
def test_bad_override_names_path_and_expected_type(override, pattern):
    with pytest.raises(config_lib.ConfigError, match=pattern) as error:
        config_lib.load_config(RESNET50, [override])
    assert str(error.value).startswith(f'Bad override {override!r}')


# ------------------------------------------------------------ file errors


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(
            str(tmp_path / 'nope.textproto'))):
        config_lib.load_config(tmp_path / 'nope.textproto')


def test_syntax_error_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, 'experiment_name: "a"\nmodel_options {\n'
                  '  backbone {\n    output_stride: 16\n  }\n'
                  '  decoder { feature_key "res5" }\n}\n')
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(path)
    # Line 6, column 25: the missing ':' before the string value.
    assert re.match(rf'{re.escape(str(path))}:6:\d+: ', str(error.value))


def test_unknown_field_names_message_and_suggests_closest(tmp_path):
    path = _write(tmp_path, 'evaluator_options {\n  stuff_area_limit: 2048\n'
                  '  nms_kernal: 13\n}\n')
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(path)
    assert str(error.value) == (
        f"{path}:3:3: unknown field 'nms_kernal' in EvaluatorOptions. "
        "Did you mean 'nms_kernel'?")


def test_unknown_field_without_close_match_lists_valid_ones(tmp_path):
    path = _write(tmp_path, 'model_options {\n  zebra: 1\n}\n')
    with pytest.raises(config_lib.ConfigError,
                       match=rf"{re.escape(str(path))}:2:3: unknown field "
                       r"'zebra' in ModelOptions. Valid fields: backbone, "
                       r'decoder, deeplab_v3,'):
        config_lib.load_config(path)


def test_bad_value_type_names_file_and_line(tmp_path):
    path = _write(tmp_path, 'train_dataset_options {\n'
                  '  batch_size: "eight"\n}\n')
    with pytest.raises(config_lib.ConfigError,
                       match=rf'{re.escape(str(path))}:2:\d+: .*integer'):
        config_lib.load_config(path)


@pytest.mark.parametrize('content', [b'', b'\n  \n', b'# only a comment\n'],
                         ids=['empty', 'blank', 'comment'])
def test_config_without_fields_is_an_error_naming_the_file(tmp_path,
                                                           content):
    path = tmp_path / 'exp.textproto'
    path.write_bytes(content)
    with pytest.raises(config_lib.ConfigError,
                       match=rf'{re.escape(str(path))}: .*no fields'):
        config_lib.load_config(path)


@pytest.mark.parametrize('content,pattern', [
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR', r': .*binary'),
    ('model_options {}\nexperiment_name: "caf\u00e9"\n'.encode('latin-1'),
     r':2:22: .*not UTF-8 .*0xe9'),
], ids=['binary', 'latin1'])
def test_binary_or_non_utf8_file_is_an_error_naming_the_file(
        tmp_path, content, pattern):
    path = tmp_path / 'exp.textproto'
    path.write_bytes(content)
    with pytest.raises(config_lib.ConfigError,
                       match=rf'^{re.escape(str(path))}{pattern}'):
        config_lib.load_config(path)


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / 'exp.textproto'
    path.write_bytes('\ufeffexperiment_name: "x"\n'.encode('utf-8'))
    assert config_lib.load_config(path).experiment_name == 'x'


def test_cli_rejects_an_empty_config(tmp_path, capsys):
    path = tmp_path / 'empty.textproto'
    path.write_bytes(b'')
    assert config_lib.main([f'--config_file={path}']) == 1
    err = capsys.readouterr().err
    assert str(path) in err and 'OK' not in err


# ---------------------------------------------------------- value checks


@pytest.mark.parametrize('override,shown', [
    ('train_dataset_options.batch_size=-3',
     'train_dataset_options.batch_size is -3'),
    ('train_dataset_options.batch_size=0',
     'train_dataset_options.batch_size is 0'),
    ('eval_dataset_options.batch_size=0',
     'eval_dataset_options.batch_size is 0'),
    ('train_dataset_options.crop_size=0,129',
     'train_dataset_options.crop_size[0] is 0'),
    ('eval_dataset_options.crop_size=1025,-1',
     'eval_dataset_options.crop_size[1] is -1'),
    ('train_dataset_options.resize_factor=-8',
     'train_dataset_options.resize_factor is -8'),
    ('train_dataset_options.sigma=0', 'train_dataset_options.sigma is 0'),
    ('train_dataset_options.augmentations.min_scale_factor=-0.5',
     'train_dataset_options.augmentations.min_scale_factor is -0.5'),
    ('train_dataset_options.augmentations.scale_factor_step_size=-0.1',
     'train_dataset_options.augmentations.scale_factor_step_size is -0.1'),
    ('trainer_options.solver_options.training_number_of_steps=-1',
     'trainer_options.solver_options.training_number_of_steps is -1'),
    ('trainer_options.solver_options.warmup_steps=-5',
     'trainer_options.solver_options.warmup_steps is -5'),
    ('trainer_options.solver_options.base_learning_rate=-0.01',
     'trainer_options.solver_options.base_learning_rate is -0.01'),
    ('trainer_options.solver_options.base_learning_rate=nan',
     'trainer_options.solver_options.base_learning_rate is nan'),
    ('trainer_options.solver_options.poly_end_learning_rate=-1e-4',
     'trainer_options.solver_options.poly_end_learning_rate is -0.0001'),
    ('trainer_options.solver_options.weight_decay=-1e-4',
     'trainer_options.solver_options.weight_decay is -0.0001'),
    ('trainer_options.solver_options.backbone_learning_rate_multiplier=-1',
     'trainer_options.solver_options.backbone_learning_rate_multiplier '
     'is -1'),
    ('trainer_options.save_checkpoints_steps=-100',
     'trainer_options.save_checkpoints_steps is -100'),
    ('trainer_options.save_checkpoints_steps=0',
     'trainer_options.save_checkpoints_steps is 0'),
    ('trainer_options.save_summaries_steps=0',
     'trainer_options.save_summaries_steps is 0'),
    ('trainer_options.steps_per_loop=0',
     'trainer_options.steps_per_loop is 0'),
    ('trainer_options.num_checkpoints_to_keep=0',
     'trainer_options.num_checkpoints_to_keep is 0'),
    ('evaluator_options.eval_interval=-1',
     'evaluator_options.eval_interval is -1'),
    ('evaluator_options.nms_kernel=0', 'evaluator_options.nms_kernel is 0'),
    ('evaluator_options.eval_scales=[1.0, 0.0]',
     'evaluator_options.eval_scales[1] is 0'),
])
def test_impossible_value_names_the_field_and_value(override, shown):
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(RESNET50, [override])
    message = str(error.value)
    assert message.startswith(f'{RESNET50}: ')
    assert f'{shown}: must be' in message, message


@pytest.mark.parametrize('overrides, shown', [
    # One value sets both sides: 1024x1024 cannot be padded to 513x1025.
    (['eval_dataset_options.crop_size=513,1025',
      'eval_dataset_options.max_resize_value=1024'],
     'eval_dataset_options.max_resize_value is 1024x1024: must fit '
     'eval_dataset_options.crop_size (513x1025)'),
    (['train_dataset_options.crop_size=257,513',
      'train_dataset_options.max_resize_value=256,514'],
     'train_dataset_options.max_resize_value is 256x514: must fit '
     'train_dataset_options.crop_size (257x513)'),
])
def test_max_resize_beyond_the_crop_is_refused_at_load(overrides, shown):
    """In train_and_eval the eval pipeline would only hit this after
    training; the config load names it first."""
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(RESNET50, overrides)
    assert shown in str(error.value), str(error.value)


def test_max_resize_that_fits_the_crop_loads():
    config_lib.load_config(RESNET50, [
        'eval_dataset_options.crop_size=513,1025',
        'eval_dataset_options.max_resize_value=512,1024',
        'train_dataset_options.max_resize_value=0'])


def test_value_error_lists_every_bad_field_once():
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(RESNET50, [
            'train_dataset_options.batch_size=-3',
            'train_dataset_options.crop_size=0,129'])
    message = str(error.value)
    assert 'train_dataset_options.batch_size is -3: must be >= 1' in message
    assert 'train_dataset_options.crop_size[0] is 0: must be >= 1' in message
    assert 'crop_size[1]' not in message
    assert 'Dimension' not in message


def test_min_scale_factor_above_max_is_named():
    with pytest.raises(config_lib.ConfigError,
                       match=r'augmentations.min_scale_factor is 2: must be '
                       r'<= .*max_scale_factor \(1\)'):
        config_lib.load_config(RESNET50, [
            'train_dataset_options.augmentations.min_scale_factor=2',
            'train_dataset_options.augmentations.max_scale_factor=1'])


@pytest.mark.parametrize('override', [
    'train_dataset_options.file_pattern=${TRAIN_SET}',
    'evaluator_options.eval_interval=0',  # DeepLab2: evaluate at the end
    'evaluator_options.keep_k_centers=-1',  # keep all centers
    'evaluator_options.eval_steps=-1',  # the whole eval set
    'evaluator_options.continuous_eval_timeout=-1',
    'train_dataset_options.min_resize_value=0',  # no limit
    'trainer_options.solver_options.training_number_of_steps=0',
    'trainer_options.solver_options.base_learning_rate=0',
    'trainer_options.solver_options.clip_gradient_norm=0',
])
def test_edge_values_that_work_stay_allowed(override):
    config_lib.load_config(RESNET50, [override])


def test_defaults_pass_the_value_checks():
    config_lib.check_values(config_lib.ExperimentOptions())


# ----------------------------------------------------------- placeholders


def test_placeholder_is_reported_when_used_naming_the_field():
    config = config_lib.load_config(RESNET50)  # parsing alone is fine
    with pytest.raises(config_lib.UnresolvedPlaceholderError) as error:
        config_lib.resolved_field(config, 'train_dataset_options.file_pattern')
    message = str(error.value)
    assert "train_dataset_options.file_pattern is still the placeholder " \
        "'${TRAIN_SET}'" in message
    assert '--config_override=train_dataset_options.file_pattern=' in message


def test_placeholder_error_names_full_path_from_a_sub_message():
    config = config_lib.load_config(RESNET50)
    with pytest.raises(config_lib.UnresolvedPlaceholderError,
                       match=r'eval_dataset_options.file_pattern is still'):
        config_lib.resolved_field(config.eval_dataset_options, 'file_pattern',
                                  message_path='eval_dataset_options')


def test_placeholder_resolved_by_override():
    config = config_lib.load_config(
        RESNET50, ['train_dataset_options.file_pattern=/data/train*'])
    assert list(config_lib.resolved_field(
        config, 'train_dataset_options.file_pattern')) == ['/data/train*']


def test_require_resolved_lists_every_unresolved_field():
    config = config_lib.load_config(
        RESNET50, ['train_dataset_options.file_pattern=/data/train*'])
    with pytest.raises(config_lib.UnresolvedPlaceholderError) as error:
        config_lib.require_resolved(config,
                                    'train_dataset_options.file_pattern',
                                    'eval_dataset_options.file_pattern',
                                    'model_options')
    lines = str(error.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith('Config field eval_dataset_options.file_pattern')
    assert lines[1].startswith(
        'Config field model_options.initial_checkpoint is still')


def test_find_placeholders_in_nested_repeated_fields():
    config = config_lib.parse_config_text(
        'model_options { panoptic_deeplab { low_level { feature_key: "res3" }'
        ' low_level { feature_key: "${LOW}" } } }')
    assert config_lib.find_placeholders(config) == [
        ('model_options.panoptic_deeplab.low_level[1].feature_key', '${LOW}')]


# ------------------------------------------------------- dataset spec paths

_SPEC_CONFIG = """
train_dataset_options { dataset: "data/dataset.json" }
eval_dataset_options { dataset: "cityscapes_panoptic" }
"""


def _spec_tree(tmp_path):
    """configs/exp.textproto naming data/dataset.json relative to itself,
    and an empty `cwd` folder elsewhere."""
    (tmp_path / 'configs' / 'data').mkdir(parents=True)
    (tmp_path / 'configs' / 'data' / 'dataset.json').write_text('{}')
    (tmp_path / 'cwd' / 'mine').mkdir(parents=True)
    (tmp_path / 'cwd' / 'mine' / 'dataset.json').write_text('{}')
    return _write(tmp_path / 'configs', _SPEC_CONFIG)


def test_spec_path_in_the_file_is_relative_to_the_config_folder(
        tmp_path, monkeypatch):
    path = _spec_tree(tmp_path)
    monkeypatch.chdir(tmp_path / 'cwd')
    config = config_lib.load_config(path)
    assert config.train_dataset_options.dataset == str(
        tmp_path / 'configs' / 'data' / 'dataset.json')
    # Built-in names are names, not paths.
    assert config.eval_dataset_options.dataset == 'cityscapes_panoptic'


def test_spec_path_in_an_override_is_relative_to_the_cwd(tmp_path,
                                                         monkeypatch):
    path = _spec_tree(tmp_path)
    monkeypatch.chdir(tmp_path / 'cwd')
    config = config_lib.load_config(path, [
        'eval_dataset_options.dataset=mine/dataset.json',
        'train_dataset_options.dataset=../configs/data/dataset.json'])
    assert config.eval_dataset_options.dataset == str(
        tmp_path / 'cwd' / 'mine' / 'dataset.json')
    assert config.train_dataset_options.dataset == str(
        tmp_path / 'configs' / 'data' / 'dataset.json')


def test_missing_spec_names_the_field_and_the_path(tmp_path, monkeypatch):
    path = _spec_tree(tmp_path)
    monkeypatch.chdir(tmp_path / 'cwd')
    with pytest.raises(config_lib.ConfigError) as error:
        config_lib.load_config(
            path, ['eval_dataset_options.dataset=other/dataset.json'])
    missing = tmp_path / 'cwd' / 'other' / 'dataset.json'
    assert str(error.value).startswith(
        f'{path}: eval_dataset_options.dataset names the dataset spec '
        f'{missing}, which does not exist')


def test_spec_placeholder_is_left_for_resolved_field(tmp_path):
    path = _write(tmp_path, 'train_dataset_options { dataset: '
                  '"${DATA}/dataset.json" }')
    config = config_lib.load_config(path)
    assert config.train_dataset_options.dataset == '${DATA}/dataset.json'
    with pytest.raises(config_lib.UnresolvedPlaceholderError,
                       match='train_dataset_options.dataset'):
        config_lib.resolved_field(config, 'train_dataset_options.dataset')


# ------------------------------------------------------ meta architectures


@pytest.mark.parametrize('text,name', [
    ('panoptic_deeplab {}', 'panoptic_deeplab'),
    ('deeplab_v3 { num_classes: 19 }', 'deeplab_v3'),
    ('deeplab_v3_plus { num_classes: 19 }', 'deeplab_v3_plus'),
])
def test_supported_meta_architectures(text, name):
    config = config_lib.parse_config_text(f'model_options {{ {text} }}')
    assert config_lib.meta_architecture(config.model_options) == name


@pytest.mark.parametrize('name', ['max_deeplab', 'motion_deeplab',
                                  'vip_deeplab'])
def test_schema_only_meta_architectures_are_not_supported_yet(name):
    config = config_lib.parse_config_text(f'model_options {{ {name} {{}} }}')
    with pytest.raises(config_lib.NotSupportedError,
                       match=rf'model_options.{name} is not supported yet'):
        config_lib.meta_architecture(config.model_options)


def test_missing_meta_architecture_is_reported():
    with pytest.raises(config_lib.ConfigError, match='sets no meta'):
        config_lib.meta_architecture(config_lib.ExperimentOptions().model_options)


# --------------------------------------------------------------------- CLI


def test_cli_prints_config_with_overrides(capsys):
    status = config_lib.main([
        f'--config_file={RESNET50}',
        '--config_override=train_dataset_options.batch_size=2'])
    out, err = capsys.readouterr()
    assert status == 0
    printed = config_lib.parse_config_text(out)
    assert printed.train_dataset_options.batch_size == 2
    assert "model_options.initial_checkpoint is still '${INIT_CHECKPOINT}'" \
        in err


def test_cli_reports_errors_with_status_1(tmp_path, capsys):
    status = config_lib.main([f'--config_file={tmp_path}/missing.textproto'])
    assert status == 1
    assert 'missing.textproto' in capsys.readouterr().err


def test_python_dash_m_runs_the_cli(tmp_path):
    # `python -m deeplab2.config` runs config.py as __main__, which hands
    # over to config_cli; a bad override is reported with status 1.
    result = subprocess.run(
        [sys.executable, '-m', 'deeplab2.config', f'--config_file={RESNET50}',
         '--config_override=trainer_options.no_such_field=1'],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    assert result.returncode == 1
    assert "no field 'no_such_field'" in result.stderr


# ------------------------------------------------------------ public face


def test_every_public_name_is_importable_from_deeplab2_config():
    from deeplab2 import config_overrides
    from deeplab2 import config_schema
    assert all(hasattr(config_lib, name) for name in config_lib.__all__)
    # The same objects, so `except config_lib.ConfigError` catches what the
    # override language and the schema helpers raise.
    assert config_lib.ConfigError is config_schema.ConfigError
    assert config_lib.apply_overrides is config_overrides.apply_overrides
    with pytest.raises(config_lib.ConfigError, match='Bad override'):
        config_overrides.apply_overrides(config_lib.ExperimentOptions(),
                                         ['nonsense'])
