"""bfloat16 compute (model/precision.py) on a DeepLab2 fixture checkpoint:
the float32 parts stay float32, and outputs stay as close to DeepLab2's
float32 outputs as bfloat16 rounding allows."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2.model import builder
from deeplab2.model import precision

NAME = 'mobilenet_v3_small_os16_narrow'
KEYS = ['semantic_logits', 'center_heatmap', 'offset_map']
# How far bfloat16 compute may move each output, in multiples of how far
# rounding the normalized input alone to bfloat16 moves the float32
# model's output. Why relative: the fixture's weights are random, and
# such a network amplifies rounding: one rounding of the input already
# moves its outputs by 1-3% of their range (measured: 0.8-3.0%), where a
# trained model (the demo) moves by well under 1%. bfloat16 rounds at
# every layer; measured 2.0-7.9x the input rounding's effect on the three
# inputs. A wrong weight, a layer left out or a float32 part computed in
# bfloat16 twice over gives tens of times more.
MAX_RATIO = 12.0


@pytest.fixture(scope='module')
def models(fixtures_dir):
    folder = fixtures_dir / 'deeplab2' / NAME
    config = config_lib.load_config(folder / f'{NAME}.textproto')
    built = {}
    for name in precision.PRECISIONS:
        built[name] = builder.build_model(config, precision=name)
        compat.restore_checkpoint(built[name], folder / 'train_ckpt')
    return built, np.load(folder / 'outputs.npz')


def test_bfloat16_computes_the_network_but_keeps_float32_parts(models):
    built, reference = models
    model = built['bfloat16']
    assert precision.of_model(model) == 'bfloat16'
    assert precision.of_model(built['float32']) == 'float32'
    # The global policy is back to float32 after the build.
    assert keras.mixed_precision.global_policy().name == 'float32'
    assert {v.dtype for v in model.variables} == {'float32'}
    final_convs = [layer for layer in _layers(model)
                   if layer.name == 'final_conv']
    assert len(final_convs) == 3  # semantic, center, offset heads
    assert {layer.compute_dtype for layer in final_convs} == {'float32'}
    outputs = model(tf.constant(reference['input_b']), training=False)
    assert {value.dtype for value in outputs.values()} == {tf.float32}


def test_bfloat16_outputs_stay_within_its_rounding(models):
    built, reference = models
    float32 = tf.function(lambda x: built['float32'](x, training=False))
    bfloat16 = tf.function(lambda x: built['bfloat16'](x, training=False))
    for suffix in ['', '_b', '_c']:
        images = reference['input' + suffix]
        # The same images after their normalized values (x / 127.5 - 1, the
        # model's first step) are rounded to bfloat16.
        normalized = tf.cast(tf.cast(images / 127.5 - 1, tf.bfloat16),
                             tf.float32)
        input_rounded = float32((normalized + 1.0) * 127.5)
        ours = bfloat16(tf.constant(images))
        for key in KEYS:
            expected = reference[key + suffix]
            scale = np.ptp(expected)
            rounding = np.abs(input_rounded[key].numpy() - expected).max()
            error = np.abs(ours[key].numpy() - expected).max()
            assert 0 < rounding < 0.05 * scale, (key, suffix)
            assert error <= MAX_RATIO * rounding, (key, suffix, error,
                                                   rounding)


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="'float8'.*float32, bfloat16"):
        precision.check('float8')


def _layers(layer):
    for child in layer._flatten_layers(include_self=False):
        yield child


def test_bfloat16_is_refused_where_it_cannot_apply(tmp_path):
    from deeplab2 import export
    from deeplab2 import predictor
    from deeplab2.trainer import train
    from absl import app
    for export_format in ('tflite', 'onnx'):
        with pytest.raises(ValueError, match='is for --format=saved_model'):
            export._check_precision(export_format, 'bfloat16')
    export._check_precision('saved_model', 'bfloat16')  # allowed
    with pytest.raises(ValueError, match='precision it was exported with'):
        predictor.build_predictor(None, exported=str(tmp_path / 'm.tflite'),
                                  precision='bfloat16')
    assert train._compute_type('bfloat16', None) == 'bfloat16'
    assert train._compute_type(None, 'float16') == 'float16'
    assert train._compute_type('bfloat16', 'bfloat16') == 'bfloat16'
    assert train._compute_type(None, None) == 'float32'
    with pytest.raises(app.UsageError, match='disagree'):
        train._compute_type('float32', 'bfloat16')


@pytest.mark.parametrize('cpu_has, accelerator, warned', [
    (False, False, True), (True, False, False), (False, True, False),
    (None, False, False)])
def test_bfloat16_warns_only_where_it_will_be_emulated(
        monkeypatch, caplog, cpu_has, accelerator, warned):
    """A CPU without bfloat16 units emulates it (slow): said once, unless a
    GPU or TPU runs the model or the flags are unknown."""
    monkeypatch.setattr(precision, 'cpu_has_bfloat16', lambda: cpu_has)
    monkeypatch.setattr(precision, '_accelerator_present',
                        lambda: accelerator)
    before = keras.mixed_precision.global_policy().name
    with caplog.at_level('WARNING'):
        with precision.policy('bfloat16'):
            assert keras.mixed_precision.global_policy().name == (
                'mixed_bfloat16')
    assert keras.mixed_precision.global_policy().name == before
    assert any('emulated' in record.getMessage()
               for record in caplog.records) == warned
