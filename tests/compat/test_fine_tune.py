"""Fine-tuning across class counts: the narrow DeepLab2 MobileNet fixture
(19 Cityscapes classes) as the initial checkpoint of a 5-class model, and
DeepLab2's restore_*_last_layer_from_initial_checkpoint flags."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2.compat import naming
from deeplab2.model import builder

NAME = 'mobilenet_v3_small_os16_narrow'
FIVE_CLASSES = 'model_options.panoptic_deeplab.semantic_head.output_channels=5'
SEMANTIC_FLAG = 'restore_semantic_last_layer_from_initial_checkpoint'
INSTANCE_FLAG = 'restore_instance_last_layer_from_initial_checkpoint'
# The semantic classifier: the one layer whose shape depends on the classes.
CLASSIFIER = ['semantic_last_layer/_kernel/.ATTRIBUTES/VARIABLE_VALUE',
              'semantic_last_layer/bias/.ATTRIBUTES/VARIABLE_VALUE']
INSTANCE_LAST_LAYERS = [
    'instance_center_head_last_layer/_kernel/.ATTRIBUTES/VARIABLE_VALUE',
    'instance_center_head_last_layer/bias/.ATTRIBUTES/VARIABLE_VALUE',
    'instance_regression_head_last_layer/_kernel/.ATTRIBUTES/VARIABLE_VALUE',
    'instance_regression_head_last_layer/bias/.ATTRIBUTES/VARIABLE_VALUE']
KERNEL_MISMATCH = ('semantic_last_layer/kernel/.ATTRIBUTES/VARIABLE_VALUE: '
                   'checkpoint [1, 1, 40, 19], model [1, 1, 40, 5]')


def _fixture_key(our_key):
    """The fixture checkpoint's key for one of our keys, spelled out here
    rather than taken from compat.naming: tf.keras stored a Conv2D kernel
    as `kernel` and a DepthwiseConv2D one as `depthwise_kernel`, where Keras
    3 has `_kernel` and `kernel`."""
    key = our_key.replace('/_depthwise_conv/kernel/',
                          '/_depthwise_conv/depthwise_kernel/')
    return key.replace('/_kernel/', '/kernel/')


@pytest.fixture(scope='module')
def narrow(fixtures_dir):
    folder = fixtures_dir / 'deeplab2' / NAME
    return folder / f'{NAME}.textproto', folder / 'train_ckpt'


def _config(narrow, *overrides):
    """The fixture's config, initial_checkpoint set to its checkpoint, with
    `overrides`."""
    textproto, checkpoint = narrow
    return config_lib.load_config(textproto, [
        f'model_options.initial_checkpoint={checkpoint}', *overrides])


def _options(narrow, *overrides):
    return _config(narrow, *overrides).model_options


@pytest.fixture(scope='module')
def five_class_model(narrow):
    """The 5-class model, built once, and its fresh initialization."""
    model = builder.build_model(_config(narrow, FIVE_CLASSES))
    variables = naming.variable_keys(model.checkpoint_items)
    return model, {key: variable.numpy()
                   for key, variable in variables.items()}


@pytest.fixture
def fresh(five_class_model):
    """(model, {key: variable}, {key: initial value}), the model set back to
    its fresh initialization."""
    model, initial = five_class_model
    variables = naming.variable_keys(model.checkpoint_items)
    for key, variable in variables.items():
        variable.assign(initial[key])
    return model, variables, initial


def _assert_unchanged(variables, initial, keys):
    for key in keys:
        np.testing.assert_array_equal(variables[key].numpy(), initial[key],
                                      err_msg=key)


def test_five_classes_restore_all_but_the_classifier(fresh, narrow):
    model, variables, initial = fresh
    summary = compat.restore_initial_checkpoint(
        model, _options(narrow, FIVE_CLASSES))
    assert sorted(summary.skipped) == CLASSIFIER
    assert sorted(summary.restored) == sorted(set(variables) - set(CLASSIFIER))
    # Values read straight from the fixture, not through the loader.
    reader = tf.train.load_checkpoint(str(narrow[1]))
    for key, variable in variables.items():
        if key not in CLASSIFIER:
            np.testing.assert_array_equal(
                variable.numpy(), reader.get_tensor(_fixture_key(key)),
                err_msg=key)
    _assert_unchanged(variables, initial, CLASSIFIER)
    assert reader.get_variable_to_shape_map()[
        _fixture_key(CLASSIFIER[0])] == [1, 1, 40, 19]
    # The checkpoint's classifier is accounted for, not silently dropped.
    for key in CLASSIFIER:
        assert f'{SEMANTIC_FLAG} is unset' in summary.ignored[
            _fixture_key(key)]
    # The text the trainer logs names the kept variables and the shapes.
    text = str(summary)
    assert '2 model variables skipped' in text
    assert (f'\n    {CLASSIFIER[0]} (checkpoint [1, 1, 40, 19], '
            'model [1, 1, 40, 5])') in text
    assert f'\n    {CLASSIFIER[1]} (checkpoint [19], model [5])' in text
    assert f'{SEMANTIC_FLAG} is unset' in text


def test_semantic_flag_true_refuses_another_class_count(fresh, narrow):
    model, variables, initial = fresh
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_initial_checkpoint(model, _options(
            narrow, FIVE_CLASSES, f'model_options.{SEMANTIC_FLAG}=true'))
    message = str(error.value)
    assert KERNEL_MISMATCH in message
    assert ('semantic_last_layer/bias/.ATTRIBUTES/VARIABLE_VALUE: '
            'checkpoint [19], model [5]') in message
    assert (f'model_options.{SEMANTIC_FLAG} is true, so semantic_last_layer '
            'must be restored') in message
    # Nothing else is wrong (the mismatched entries are not also listed as
    # unknown to the model).
    assert 'shape mismatches (2)' in message
    assert 'does not have' not in message
    _assert_unchanged(variables, initial, variables)  # nothing assigned


def test_semantic_flag_false_keeps_the_classifier_as_deeplab2(fresh, narrow):
    """False skips the layer whatever its shape; the reason is the flag."""
    model, variables, initial = fresh
    summary = compat.restore_initial_checkpoint(model, _options(
        narrow, FIVE_CLASSES, f'model_options.{SEMANTIC_FLAG}=false'))
    assert summary.skipped == {key: f'{SEMANTIC_FLAG} is false'
                               for key in CLASSIFIER}
    _assert_unchanged(variables, initial, CLASSIFIER)


def test_instance_flag_false_keeps_the_instance_last_layers(fresh, narrow):
    model, variables, initial = fresh
    summary = compat.restore_initial_checkpoint(model, _options(
        narrow, FIVE_CLASSES, f'model_options.{INSTANCE_FLAG}=false'))
    assert sorted(summary.skipped) == sorted(CLASSIFIER + INSTANCE_LAST_LAYERS)
    assert {summary.skipped[key] for key in INSTANCE_LAST_LAYERS} == {
        f'{INSTANCE_FLAG} is false'}
    _assert_unchanged(variables, initial, CLASSIFIER + INSTANCE_LAST_LAYERS)
    text = str(summary)
    assert all(f'\n    {key}' in text for key in INSTANCE_LAST_LAYERS)


def test_instance_flag_true_names_itself_on_a_mismatch(narrow):
    """A center head 6 channels wide (the checkpoint's: 8) changes the shape
    of its last layer, which the set flag insists on restoring."""
    config = _config(
        narrow, 'model_options.panoptic_deeplab.instance.center_head.'
        'head_channels=6', f'model_options.{INSTANCE_FLAG}=true')
    model = builder.build_model(config)
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_initial_checkpoint(model, config.model_options)
    message = str(error.value)
    assert ('instance_center_head_last_layer/kernel/.ATTRIBUTES/'
            'VARIABLE_VALUE: checkpoint [1, 1, 8, 1], model [1, 1, 6, 1]'
            ) in message
    assert (f'model_options.{INSTANCE_FLAG} is true, so '
            'instance_center_head_last_layer must be restored') in message
    # Unset, the flag is not to blame: the rest of the head still does not
    # fit, which stays an error.
    config.model_options.ClearField(INSTANCE_FLAG)
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_initial_checkpoint(model, config.model_options)
    message = str(error.value)
    assert INSTANCE_FLAG not in message
    assert ('instance_center_head_without_last_layer/_conv1_bn_act/'
            '_pointwise/_conv/kernel/.ATTRIBUTES/VARIABLE_VALUE: '
            'checkpoint [1, 1, 16, 8], model [1, 1, 16, 6]') in message


def test_a_mismatch_elsewhere_is_still_an_error(narrow):
    """Only the last layers may differ: a narrower backbone is refused as a
    whole, and nothing of it is loaded."""
    config = _config(narrow, FIVE_CLASSES,
                     'model_options.backbone.backbone_width_multiplier=0.25')
    model = builder.build_model(config)
    options = config.model_options
    before = [variable.numpy() for variable in model.variables]
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_initial_checkpoint(model, options)
    message = str(error.value)
    assert 'shape mismatches' in message
    assert '\n    encoder/' in message
    assert 'is true, so' not in message  # no flag is to blame
    for value, variable in zip(before, model.variables):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_restore_checkpoint_stays_strict(fresh, narrow):
    """Loading weights for inference or export (not an initial checkpoint)
    keeps refusing another class count, without blaming a flag."""
    model, _, _ = fresh
    with pytest.raises(compat.CheckpointMismatchError) as error:
        compat.restore_checkpoint(model, narrow[1])
    assert KERNEL_MISMATCH in str(error.value)
    assert SEMANTIC_FLAG not in str(error.value)


def test_semantic_only_model_takes_the_parts_it_has(narrow):
    """A semantic-only 5-class model (the instance branch disabled) from
    the panoptic checkpoint: the instance branch's entries are ignored, as
    DeepLab2 reads only the model's own items."""
    config = _config(narrow, FIVE_CLASSES,
                     'model_options.panoptic_deeplab.instance.enable=false')
    model = builder.build_model(config)
    summary = compat.restore_initial_checkpoint(model, config.model_options)
    assert sorted(summary.skipped) == CLASSIFIER
    assert len(summary.restored) == len(model.variables) - 2
    ignored_parts = {reason for reason in summary.ignored.values()
                     if 'not a part of this model' in reason}
    assert ignored_parts == {
        f'{item} is not a part of this model' for item in [
            'instance_decoder', 'instance_center_head_without_last_layer',
            'instance_center_head_last_layer',
            'instance_regression_head_without_last_layer',
            'instance_regression_head_last_layer']}
    # Loading it as a whole model (not an initial checkpoint) stays strict.
    with pytest.raises(compat.CheckpointMismatchError,
                       match='the model does not have'):
        compat.restore_checkpoint(model, narrow[1],
                                  restore_semantic_last_layer=False)
