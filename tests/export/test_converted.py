"""TFLite and ONNX exports of the whole pipeline (uint8 image -> panoptic
maps), run by LiteRT and ONNX Runtime as users run them: parity with the
SavedModel on the three DeepLab2 fixtures, the post-processing rules in each
runtime, quantized files, predict and evaluate on every back-end, and the
errors for bad files and inputs.

The reference is the export's own TensorFlow function
(`build_predict_fn`), which tests/export/test_export.py shows equal to the
exported SavedModel.
"""

import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from deeplab2 import config as config_lib  # noqa: E402
from deeplab2 import export  # noqa: E402
from deeplab2 import runtimes  # noqa: E402
from deeplab2 import serving  # noqa: E402
from deeplab2.model import postprocess  # noqa: E402

NARROW = ['mobilenet_v3_small_os16_narrow',
          'resnet50_os32_merge_with_pure_tf_func_narrow',
          'swidernet_sac_1_1_1_os16_narrow']
FORMATS = {'tflite': 'model.tflite', 'onnx': 'model.onnx'}
FLOAT_KEYS = ('semantic_logits', 'semantic_probs', 'center_heatmap',
              'offset_map', 'instance_center_pred', 'instance_scores')
# The acceptance bounds: differing panoptic pixels per image after
# canonical renumbering; float outputs relative to each output's range
# (max - min over the image).
MAX_PANOPTIC_PIXELS = 10
FLOAT_RTOL = 1e-4
# Except the ResNet fixture, whose float noise is larger everywhere: our
# TensorFlow outputs differ from DeepLab2's own by 2.3e-4 in probabilities
# (tests/compat/test_checkpoint.py allows it 5e-3), and LiteRT's and ONNX
# Runtime's from ours by as much (2.4e-4 and 2.1e-4).
FLOAT_RTOL_BY_FIXTURE = {'resnet50_os32_merge_with_pure_tf_func_narrow': 5e-4}
# A semantic pixel may differ only where the two best classes' reference
# probabilities are this close (float noise of ~1e-5 can swap them).
NEAR_TIE = 1e-4


class Converted:
    """One fixture: its model, reference outputs on its input, and its
    TFLite and ONNX exports at the input's size (with network outputs)."""

    def __init__(self, fixtures_dir, name, folder):
        source = fixtures_dir / 'deeplab2' / name
        self.config_file = source / f'{name}.textproto'
        self.checkpoint = source / 'train_ckpt'
        self.config = config_lib.load_config(self.config_file)
        self.model = export.load_model(self.config, self.checkpoint)
        self.image = np.load(source / 'outputs.npz')['input'].astype(
            np.uint8)
        self.size = self.image.shape[1:3]
        options = export.ExportOptions(include_network_outputs=True,
                                       input_size=self.size)
        self.predict = tf.function(export.build_predict_fn(
            self.config, self.model, options))
        self.expected = {key: value.numpy() for key, value in
                         self.predict(tf.constant(self.image)).items()}
        self.paths = {
            export_format: export.export_model(
                self.config, self.model, folder / file_name, export_format,
                options)
            for export_format, file_name in FORMATS.items()}


@pytest.fixture(scope='module')
def converted(fixtures_dir, tmp_path_factory):
    """name -> Converted, built on first use."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = Converted(fixtures_dir, name,
                                    tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _canonical(panoptic):
    """Segment ids renumbered 0, 1, ... in raster order of first pixels."""
    flat = panoptic.reshape(-1)
    _, first, inverse = np.unique(flat, return_index=True,
                                  return_inverse=True)
    rank = np.argsort(np.argsort(first))
    return rank[inverse].reshape(panoptic.shape)


def _assert_close_to_reference(actual, expected, context,
                               rtol=FLOAT_RTOL):
    assert set(serving.PREDICTION_KEYS) <= set(actual), context
    semantic_diff = actual['semantic_pred'] != expected['semantic_pred']
    if semantic_diff.any():
        top2 = np.sort(expected['semantic_probs'], axis=-1)[..., -2:]
        gap = (top2[..., 1] - top2[..., 0])[semantic_diff]
        assert gap.max() < NEAR_TIE, (
            f'{context}: semantic differs at {semantic_diff.sum()} pixels, '
            f'not all near-ties (gap up to {gap.max():.2e})')
    panoptic_diff = int(np.sum(_canonical(actual['panoptic_pred'])
                               != _canonical(expected['panoptic_pred'])))
    assert panoptic_diff <= MAX_PANOPTIC_PIXELS, (
        f'{context}: {panoptic_diff} panoptic pixels differ')
    # A pixel whose instance changed (counted above) has that instance's
    # score: compared where the instance is the same.
    same_instance = actual['instance_pred'] == expected['instance_pred']
    for key in FLOAT_KEYS:
        scale = expected[key].max() - expected[key].min()
        difference = np.abs(actual[key] - expected[key])
        if key == 'instance_scores':
            difference = difference[same_instance]
        error = difference.max()
        assert error <= rtol * scale, (
            f'{context}: {key} differs by {error:.3g} (scale {scale:.3g})')
    return panoptic_diff


@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('name', NARROW)
def test_litert_and_onnxruntime_equal_the_saved_model(converted, name):
    fixture = converted(name)
    for export_format, path in fixture.paths.items():
        model = runtimes.load(path)
        assert model.input_size == fixture.size
        outputs = model(fixture.image)
        assert outputs['panoptic_pred'].dtype == np.int32
        _assert_close_to_reference(
            outputs, fixture.expected, f'{name} {export_format}',
            FLOAT_RTOL_BY_FIXTURE.get(name, FLOAT_RTOL))


_NO_TENSORFLOW_SCRIPT = '''
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
import onnxruntime
tflite, onnx, image, out = sys.argv[1:]
image = np.load(image)
runner = Interpreter(model_path=tflite).get_signature_runner(
    'serving_default')
from_litert = runner(images=image)
session = onnxruntime.InferenceSession(onnx,
                                       providers=['CPUExecutionProvider'])
names = [output.name for output in session.get_outputs()]
from_onnx = dict(zip(names, session.run(names, {'images': image})))
assert 'tensorflow' not in sys.modules and 'deeplab2' not in sys.modules
np.savez(out, **{'litert_' + k: v for k, v in from_litert.items()},
         **{'onnx_' + k: v for k, v in from_onnx.items()})
'''


def test_files_run_without_tensorflow_or_deeplab2(converted, tmp_path):
    fixture = converted(NARROW[0])
    np.save(tmp_path / 'image.npy', fixture.image)
    script = tmp_path / 'run.py'
    script.write_text(_NO_TENSORFLOW_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), fixture.paths['tflite'],
         fixture.paths['onnx'], str(tmp_path / 'image.npy'),
         str(tmp_path / 'out.npz')],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = np.load(tmp_path / 'out.npz')
    for prefix in ('litert_', 'onnx_'):
        _assert_close_to_reference(
            {key[len(prefix):]: outputs[key] for key in outputs.files
             if key.startswith(prefix)}, fixture.expected, prefix)


# ------------------------------------------------ the rules, in each runtime


class _PostprocessingOnly(tf.Module):
    """Post-processing alone at a fixed shape, as a serving module for the
    converters: network outputs in, maps out."""

    def __init__(self, options, shape):
        super().__init__()
        self._process = postprocess.PanopticPostProcessor(options)
        batch, height, width = shape
        self.serving_default = tf.function(self._serve, input_signature=[
            tf.TensorSpec([batch, height, width, 19], tf.float32,
                          name='semantic_probs'),
            tf.TensorSpec([batch, height, width], tf.float32,
                          name='center_heatmap'),
            tf.TensorSpec([batch, height, width, 2], tf.float32,
                          name='offset_map')])

    def _serve(self, semantic_probs, center_heatmap, offset_map):
        outputs = self._process({'semantic_probs': semantic_probs,
                                 'center_heatmap': center_heatmap,
                                 'offset_map': offset_map})
        return {key: outputs[key] for key in ('panoptic_pred',
                                              'instance_pred')}


def _rules_case():
    """Three images (one without centers) exercising ties, offsets, votes
    and the stuff limit, with their TensorFlow post-processing."""
    rng = np.random.RandomState(0)
    labels = rng.choice([0, 1, 11, 13], size=[3, 9, 13])
    labels[0, 0] = 12
    probs = np.eye(19, dtype=np.float32)[labels] * 0.9 + 0.005
    heatmap = (rng.uniform(0, 1, [3, 9, 13]) ** 4).astype(np.float32)
    heatmap[1] = 0
    # Rows 0-1 of image 0: centers at (0, 0) and (0, 4) alone, so pixel
    # (0, 2) is equidistant from both (and no closer to any other).
    heatmap[0, :2] = 0
    heatmap[0, 0, [0, 4]] = [0.5, 0.9]
    offsets = rng.normal(0, 3, [3, 9, 13, 2]).astype(np.float32)
    offsets[0, 0] = 0
    return probs, heatmap, offsets


@pytest.mark.filterwarnings('ignore::UserWarning')
@pytest.mark.parametrize('runtime', ['tflite', 'tflite_int8', 'onnx'])
def test_postprocessing_rules_hold_in_each_runtime(runtime, tmp_path):
    from deeplab2 import export_formats
    inputs = _rules_case()
    options = postprocess.PostProcessOptions(
        thing_class_ids=tuple(range(11, 19)), label_divisor=1000,
        void_label=255, keep_k_centers=16, stuff_area_limit=6)
    expected = postprocess.PanopticPostProcessor(options)(dict(zip(
        ('semantic_probs', 'center_heatmap', 'offset_map'), inputs)))
    portable = postprocess.PostProcessOptions(**{
        **vars(options), 'runtime': runtime, 'static_shapes': True,
        'jit_dense_stages': False})
    module = _PostprocessingOnly(portable, inputs[1].shape)
    if runtime == 'onnx':
        import onnxruntime
        session = onnxruntime.InferenceSession(
            export_formats.convert_to_onnx(module),
            providers=['CPUExecutionProvider'])
        names = [output.name for output in session.get_outputs()]
        actual = dict(zip(names, session.run(names, dict(zip(
            ('semantic_probs', 'center_heatmap', 'offset_map'), inputs)))))
    else:
        from ai_edge_litert.interpreter import Interpreter
        tf.saved_model.save(module, str(tmp_path / 'saved'), signatures={
            serving.DEFAULT_SIGNATURE: module.serving_default})
        runner = Interpreter(model_content=export_formats.convert_to_tflite(
            tmp_path / 'saved')).get_signature_runner(
                serving.DEFAULT_SIGNATURE)
        actual = runner(**dict(zip(
            ('semantic_probs', 'center_heatmap', 'offset_map'), inputs)))
    assert expected['instance_pred'].numpy()[0, 0, :5].tolist() == [
        1, 1, 1, 2, 2]  # the tie went to the first center
    for key in ('panoptic_pred', 'instance_pred'):
        np.testing.assert_array_equal(actual[key], expected[key].numpy(),
                                      err_msg=f'{runtime} {key}')


# ------------------------------------------------------------ quantization


def _tensor_types(flatbuffer):
    """{subgraph index: set of tensor type numbers} of a TFLite file."""
    from deeplab2 import private_api
    model = private_api.TFLiteModel.InitFromPackedBuf(flatbuffer, 0)
    return {index: {tensor.type for tensor in subgraph.tensors}
            for index, subgraph in enumerate(model.subgraphs)}


_INT8 = 9  # TensorType.INT8 in TFLite's schema


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_quantized_tflite_files(converted, fixtures_dir, tmp_path):
    """float16 and dynamic range shrink the file and keep the maps nearly
    intact; int8 quantizes the network and leaves post-processing float
    (every tensor of the grouping's branches, none int8)."""
    fixture = converted(NARROW[0])
    float_path = fixture.paths['tflite']
    float_maps = runtimes.load(float_path)(fixture.image)
    records = fixtures_dir / ('data/tfrecord/'
                              'cityscapes_mini_crowd_as_ignore_true')
    calibration = export.read_calibration_images(
        str(records / '*'), 4, fixture.size)
    assert len(calibration) == 4
    assert calibration[0].shape == (*fixture.size, 3)
    options = dict(input_size=fixture.size)
    # 32 center slots instead of 400: the int8 variant's branches unroll
    # every slot, and 400 take ~40 s more to convert (same code per slot).
    config = config_lib.load_config(
        fixture.config_file, ['evaluator_options.keep_k_centers=32'])
    for quantize in ('float16', 'dynamic_range', 'int8'):
        path = export.export_model(
            config, fixture.model, tmp_path / f'{quantize}.tflite',
            'tflite', export.ExportOptions(quantize=quantize, **options),
            calibration_images=calibration)
        assert os.path.getsize(path) < os.path.getsize(float_path), quantize
        maps = runtimes.load(path)(fixture.image)
        for key in serving.PREDICTION_KEYS:
            assert maps[key].shape == float_maps[key].shape, quantize
            assert maps[key].dtype == float_maps[key].dtype, quantize
        agreement = np.mean(maps['semantic_pred']
                            == float_maps['semantic_pred'])
        if quantize == 'float16':
            assert agreement > 0.99
        if quantize == 'int8':
            types = _tensor_types(pathlib.Path(path).read_bytes())
            assert _INT8 in types.pop(0)  # the network
            assert types and all(_INT8 not in kinds
                                 for kinds in types.values())


def test_quantization_is_refused_where_it_cannot_apply(converted, tmp_path):
    fixture = converted(NARROW[0])
    with pytest.raises(ValueError, match='--quantize is for --format=tflite'):
        export.export_model(fixture.config, fixture.model,
                            tmp_path / 'm.onnx', 'onnx',
                            export.ExportOptions(quantize='int8',
                                                 input_size=fixture.size))
    with pytest.raises(ValueError, match='needs calibration images'):
        export.export_model(fixture.config, fixture.model,
                            tmp_path / 'm.tflite', 'tflite',
                            export.ExportOptions(quantize='int8',
                                                 input_size=fixture.size))
    with pytest.raises(ValueError, match='--calibration_file_pattern'):
        export.read_calibration_images(None, 10, (9, 9))
    with pytest.raises(FileNotFoundError, match='matches no file'):
        export.read_calibration_images(str(tmp_path / 'none-*'), 10, (9, 9))
    with pytest.raises(ValueError, match='needs a fixed input size'):
        export.export_model(fixture.config, fixture.model,
                            tmp_path / 'm.tflite', 'tflite')
    assert not any(tmp_path.iterdir())


# ------------------------------------------- predict and evaluate, every way


@pytest.fixture(scope='module')
def every_backend(converted, tmp_path_factory):
    """The MobileNet fixture as a checkpoint, a SavedModel at its size, and
    its TFLite and ONNX files."""
    fixture = converted(NARROW[0])
    folder = tmp_path_factory.mktemp('saved')
    saved = export.export_model(
        fixture.config, fixture.model, folder / 'saved_model',
        options=export.ExportOptions(input_size=fixture.size))
    return fixture, {'checkpoint': None, 'saved_model': saved,
                     **fixture.paths}


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_predict_writes_the_same_png_on_every_backend(every_backend,
                                                      tmp_path):
    from deeplab2 import predict
    from deeplab2.benchmarks import scenes
    fixture, backends = every_backend
    image = scenes.scene(0, *fixture.size)[0]
    # Float noise (~1e-6 in the probabilities) may flip a pixel whose two
    # best classes are closer than that (scene 3 has one at 1.5e-7): this
    # scene has none, so every back-end must write the same bytes.
    probs = fixture.predict(tf.constant(image[None]))['semantic_probs']
    top2 = np.sort(probs.numpy(), axis=-1)[..., -2:]
    assert (top2[..., 1] - top2[..., 0]).min() > 1e-6
    Image.fromarray(image).save(tmp_path / 'street.png')
    written = {}
    for name, path in backends.items():
        output_dir = tmp_path / name
        result = predict.run(
            str(fixture.config_file), str(tmp_path / 'street.png'),
            str(output_dir),
            checkpoint_path=None if path else str(fixture.checkpoint),
            exported=path)
        assert result.written == ['street'] and not result.skipped
        written[name] = (output_dir / 'street_panoptic.png').read_bytes()
    segments = json.loads((tmp_path / 'onnx/street_segments.json')
                          .read_text())['segments']
    assert segments  # the scene has segments to write
    assert all(png == written['checkpoint'] for png in written.values()), (
        [name for name, png in written.items()
         if png != written['checkpoint']])


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_evaluate_export_scores_every_backend_alike(every_backend,
                                                    tmp_path):
    from deeplab2 import evaluate_export
    from deeplab2.benchmarks import scenes
    fixture, backends = every_backend
    pattern = scenes.write_tfrecords(str(tmp_path), num_examples=2,
                                     height=fixture.size[0],
                                     width=fixture.size[1], num_shards=1)
    overrides = [f'eval_dataset_options.file_pattern={pattern}',
                 'eval_dataset_options.crop_size='
                 f'{fixture.size[0]},{fixture.size[1]}']
    results = {name: evaluate_export.evaluate_export(
        fixture.config_file, path, overrides, eval_steps=-1)
        for name, path in backends.items() if path}
    reference = results['saved_model']
    assert {'pq', 'miou', 'ap'} <= set(reference)
    assert reference['per_class']
    for name, result in results.items():
        for key in ('pq', 'sq', 'rq', 'miou', 'ap'):
            assert result[key] == pytest.approx(reference[key], abs=1e-3), (
                name, key)


# ------------------------------------------------------------- bad inputs


def test_bad_files_and_inputs_get_clear_errors(converted, tmp_path):
    fixture = converted(NARROW[0])
    with pytest.raises(FileNotFoundError, match='missing.tflite not found'):
        runtimes.load(tmp_path / 'missing.tflite')
    (tmp_path / 'model.pt').write_bytes(b'torch')
    with pytest.raises(ValueError, match=r"unknown model file type '\.pt'"):
        runtimes.load(tmp_path / 'model.pt')
    for suffix in ('.tflite', '.onnx'):
        junk = tmp_path / f'junk{suffix}'
        junk.write_bytes(b'not a model')
        with pytest.raises(ValueError, match=f'junk\\{suffix}'):
            runtimes.load(junk)
    height, width = fixture.size
    for path in fixture.paths.values():
        model = runtimes.load(path)
        with pytest.raises(ValueError, match=(
                f'exported for {height}x{width} images(.|\n)*got 65x97')):
            model(np.zeros([1, 65, 97, 3], np.uint8))
        with pytest.raises(TypeError, match='uint8(.|\n)*float32'):
            model(fixture.image.astype(np.float32))
        with pytest.raises(ValueError, match=r'\[batch, height, width, 3\]'):
            model(fixture.image[0])


def test_network_only_file_is_not_a_predictor(monkeypatch):
    """A file exported --nowith_postprocessing has no maps to predict."""
    from deeplab2.predictor import Predictor

    class NetworkOnly:
        output_names = serving.NETWORK_OUTPUT_KEYS

    monkeypatch.setattr(runtimes, 'load', lambda path, threads: NetworkOnly)
    with pytest.raises(ValueError, match='network.onnx lacks outputs(.|\n)*'
                                         'nowith_postprocessing'):
        Predictor.from_export('network.onnx')
