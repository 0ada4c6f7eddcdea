"""bfloat16 compute (model/precision.py) on a DeepLab2 fixture checkpoint:
the float32 parts stay float32, and its outputs and panoptic maps stay as
close to DeepLab2's float32 ones as bfloat16 rounding allows."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2.model import builder
from deeplab2.model import postprocess
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
# The panoptic maps, counted in pixels outside the segments that match
# DeepLab2's (IoU > 0.5), summed over the three inputs. The same random
# weights make every tie fragile: rounding the input alone already moves
# 3067 of 62270 pixels, so bfloat16 is held to a multiple of that
# (measured 5.4x on the sum, 5.0-6.2x per input; DeepLab2's own float32
# maps differ from ours by 0). A network computed wrongly moves nearly
# every pixel (a bfloat16 model left at its initial weights: all 62270).
# bfloat16 is near-equal on a trained model, where decisions are not
# ties: the README reports the demo's maps.
MAX_PANOPTIC_RATIO = 10.0


SUFFIXES = ['', '_b', '_c']  # the fixture's three inputs


@pytest.fixture(scope='module')
def models(fixtures_dir):
    """(models by precision, DeepLab2's outputs, the fixture's config)."""
    folder = fixtures_dir / 'deeplab2' / NAME
    config = config_lib.load_config(folder / f'{NAME}.textproto')
    built = {}
    for name in precision.PRECISIONS:
        built[name] = builder.build_model(config, precision=name)
        compat.restore_checkpoint(built[name], folder / 'train_ckpt')
    return built, np.load(folder / 'outputs.npz'), config


@pytest.fixture(scope='module')
def rounded_runs(models):
    """suffix -> {'input_rounded': the float32 model's outputs on the input
    whose normalized values (x / 127.5 - 1, the model's first step) are
    rounded to bfloat16, 'bfloat16': the bfloat16 model's outputs}."""
    built, reference, _ = models
    float32 = tf.function(lambda x: built['float32'](x, training=False))
    bfloat16 = tf.function(lambda x: built['bfloat16'](x, training=False))
    runs = {}
    for suffix in SUFFIXES:
        images = reference['input' + suffix]
        normalized = tf.cast(tf.cast(images / 127.5 - 1, tf.bfloat16),
                             tf.float32)
        runs[suffix] = {'input_rounded': float32((normalized + 1.0) * 127.5),
                        'bfloat16': bfloat16(tf.constant(images))}
    return runs


def test_bfloat16_computes_the_network_but_keeps_float32_parts(models):
    built, reference, _ = models
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


def test_bfloat16_outputs_stay_within_its_rounding(models, rounded_runs):
    _, reference, _ = models
    for suffix, runs in rounded_runs.items():
        for key in KEYS:
            expected = reference[key + suffix]
            scale = np.ptp(expected)
            rounding = np.abs(runs['input_rounded'][key].numpy()
                              - expected).max()
            error = np.abs(runs['bfloat16'][key].numpy() - expected).max()
            assert 0 < rounding < 0.05 * scale, (key, suffix)
            assert error <= MAX_RATIO * rounding, (key, suffix, error,
                                                   rounding)


def test_bfloat16_panoptic_maps_move_as_little_as_its_rounding(
        models, rounded_runs):
    _, reference, config = models
    postprocessor = postprocess.build_postprocessor(config)
    moved = {'input_rounded': 0, 'bfloat16': 0}
    for suffix, runs in rounded_runs.items():
        for name, outputs in runs.items():
            panoptic = postprocessor(outputs)['panoptic_pred'].numpy()
            moved[name] += _pixels_outside_matched_segments(
                panoptic, reference['panoptic_pred' + suffix])
    assert 0 < moved['input_rounded']
    assert moved['bfloat16'] <= MAX_PANOPTIC_RATIO * moved['input_rounded'], (
        moved)


def _pixels_outside_matched_segments(predicted, expected):
    """Pixels not in the intersection of a segment pair with IoU > 0.5 (the
    pairs PQ matches; each segment is in at most one)."""
    predicted, expected = predicted.reshape(-1), expected.reshape(-1)
    _, first = np.unique(predicted, return_inverse=True)
    _, second = np.unique(expected, return_inverse=True)
    base = second.max() + 1
    pairs, overlap = np.unique(first * base + second, return_counts=True)
    union = (np.bincount(first)[pairs // base]
             + np.bincount(second)[pairs % base] - overlap)
    return predicted.size - overlap[overlap / union > 0.5].sum()


def test_pixels_outside_matched_segments_by_hand():
    expected = np.array([[1, 1, 1, 1, 2, 2, 2, 0]])
    # 7 matches 1 (IoU 3/4); 9 meets 2 at IoU 2/4, not above one half.
    assert _pixels_outside_matched_segments(
        np.array([[7, 7, 7, 8, 8, 9, 9, 9]]), expected) == 8 - 3
    # 9 now matches 2 (IoU 2/3) as well.
    assert _pixels_outside_matched_segments(
        np.array([[7, 7, 7, 8, 8, 9, 9, 8]]), expected) == 8 - 3 - 2


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
