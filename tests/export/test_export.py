"""SavedModel export of the narrow DeepLab2 fixture: parity with the Python
model, any batch and size, both signatures, loading without this package,
input checks, atomic writes; TFLite and ONNX network outputs."""

import io
import os
import pathlib
import re
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from deeplab2 import config as config_lib  # noqa: E402
from deeplab2 import export  # noqa: E402
from deeplab2 import serving as contract  # noqa: E402

NAME = 'mobilenet_v3_small_os16_narrow'
OPTIONS = export.ExportOptions(include_network_outputs=True)
# --nowith_postprocessing: the network outputs at any size (the whole
# pipeline at a fixed size is tests/export/test_converted.py's).
_NETWORK_ONLY = export.ExportOptions(with_postprocessing=False)
FLOAT_KEYS = ('semantic_logits', 'semantic_probs', 'center_heatmap',
              'offset_map', 'instance_center_pred', 'instance_scores')
MAP_KEYS = ('panoptic_pred', 'semantic_pred', 'instance_pred')


class Narrow:
    """The fixture's config, restored model and reference inputs."""

    def __init__(self, fixtures_dir):
        self.folder = fixtures_dir / 'deeplab2' / NAME
        self.config_file = self.folder / f'{NAME}.textproto'
        self.config = config_lib.load_config(self.config_file)
        self.model = export.load_model(self.config,
                                       self.folder / 'train_ckpt',
                                       expected=str(self.config_file))
        self.reference = np.load(self.folder / 'outputs.npz')
        self.predict = tf.function(export.build_predict_fn(
            self.config, self.model, OPTIONS))

    def image(self, suffix=''):
        """A fixture input as uint8 (its values are integers in [0, 255])."""
        return self.reference['input' + suffix].astype(np.uint8)

    def python_outputs(self, images):
        return _numpy(self.predict(tf.constant(images)))


def _numpy(outputs):
    return {key: value.numpy() for key, value in outputs.items()}


def _assert_outputs_equal(actual, expected, atol=1e-5, context=''):
    assert sorted(actual) == sorted(expected), context
    for key in expected:
        assert actual[key].dtype == expected[key].dtype, f'{key} {context}'
        if key in MAP_KEYS:
            np.testing.assert_array_equal(actual[key], expected[key],
                                          err_msg=f'{key} {context}')
        else:
            np.testing.assert_allclose(actual[key], expected[key], atol=atol,
                                       rtol=0, err_msg=f'{key} {context}')


@pytest.fixture(scope='module')
def narrow(fixtures_dir):
    return Narrow(fixtures_dir)


@pytest.fixture(scope='module')
def saved_model_dir(narrow, tmp_path_factory):
    """Exported once for the module through the command line (which also
    tests it), with the network outputs."""
    path = tmp_path_factory.mktemp('export') / 'saved_model'
    script = pathlib.Path(__file__).resolve().parents[2] / (
        'scripts/export_model.py')
    result = subprocess.run(
        [sys.executable, str(script), f'--config_file={narrow.config_file}',
         f'--checkpoint_path={narrow.folder / "train_ckpt"}',
         f'--output_path={path}', '--include_network_outputs'],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'Wrote {path}' in result.stdout
    return path


@pytest.fixture(scope='module')
def serving(saved_model_dir):
    return tf.saved_model.load(str(saved_model_dir)).signatures


def _serve(serving, images):
    return _numpy(serving[contract.DEFAULT_SIGNATURE](
        images=tf.constant(images)))


# ------------------------------------------------------------ parity, sizes


def test_saved_model_equals_python_model_on_fixture_inputs(narrow, serving):
    for suffix in ['', '_b', '_c']:
        image = narrow.image(suffix)
        exported = _serve(serving, image)
        assert sorted(exported) == sorted(contract.PREDICTION_KEYS +
                                          contract.NETWORK_OUTPUT_KEYS)
        _assert_outputs_equal(exported, narrow.python_outputs(image),
                              context=f'input{suffix}')


def test_batch_of_two_equals_two_single_calls(narrow, serving):
    first = narrow.image('_b')                       # 97 x 161
    second = narrow.image('')[:, 10:107, 50:211]     # other content, same size
    batch = _serve(serving, np.concatenate([first, second]))
    for index, image in enumerate([first, second]):
        single = _serve(serving, image)
        _assert_outputs_equal({k: v[index:index + 1] for k, v in
                               batch.items()}, single,
                              context=f'batch element {index}')


def test_full_cityscapes_size_runs(serving):
    image = np.random.RandomState(3).randint(0, 256, [1, 1025, 2049, 3],
                                             dtype=np.uint8)
    outputs = _serve(serving, image)
    for key in contract.PREDICTION_KEYS:
        assert outputs[key].shape == (1, 1025, 2049), key
    assert outputs['semantic_logits'].shape == (1, 1025, 2049, 19)
    semantic = outputs['panoptic_pred'] // 1000
    assert set(np.unique(semantic)) <= set(range(19)) | {255}


# ------------------------------------------------- signatures, clean loading


def test_saved_model_cli_lists_both_signatures(saved_model_dir):
    cli = pathlib.Path(sys.executable).parent / 'saved_model_cli'
    result = subprocess.run([str(cli), 'show', '--dir', str(saved_model_dir),
                             '--all'], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for expected in ["signature_def['serving_default']",
                     "signature_def['serving_encoded']",
                     "inputs['images']", "inputs['encoded_image']",
                     'shape: (-1, -1, -1, 3)', 'DT_UINT8', 'DT_STRING',
                     *(f"outputs['{key}']" for key in
                       contract.PREDICTION_KEYS + contract.NETWORK_OUTPUT_KEYS)]:
        assert expected in text, expected


_CLEAN_PROCESS = '''
import sys
sys.modules['deeplab2'] = None  # any import of deeplab2 now fails
import numpy as np
import tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
images = np.load(sys.argv[2])['input'].astype(np.uint8)
outputs = loaded.signatures['serving_default'](images=tf.constant(images))
assert not [name for name, module in sys.modules.items()
            if name.startswith('deeplab2') and module is not None]
np.savez(sys.argv[3], **{key: value.numpy() for key, value in
                         outputs.items()})
'''


def test_loads_and_runs_in_a_process_without_deeplab2(narrow, saved_model_dir,
                                                      tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key != 'PYTHONPATH'}
    result_file = tmp_path / 'outputs.npz'
    result = subprocess.run(
        [sys.executable, '-c', _CLEAN_PROCESS, str(saved_model_dir),
         str(narrow.folder / 'outputs.npz'), str(result_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = dict(np.load(result_file))
    _assert_outputs_equal(outputs, narrow.python_outputs(narrow.image()))


def _encode(image, image_format):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def test_encoded_signature_equals_default_signature(narrow, serving):
    image = narrow.image('_b')
    encoded = serving[contract.ENCODED_SIGNATURE](
        encoded_image=tf.constant(_encode(image[0], 'PNG')))
    _assert_outputs_equal(_numpy(encoded), _serve(serving, image))
    jpeg = _numpy(serving[contract.ENCODED_SIGNATURE](
        encoded_image=tf.constant(_encode(image[0], 'JPEG'))))
    assert jpeg['panoptic_pred'].shape == (1, 97, 161)
    # A grayscale PNG is expanded to RGB.
    gray = _numpy(serving[contract.ENCODED_SIGNATURE](
        encoded_image=tf.constant(_encode(image[0, ..., 0], 'PNG'))))
    assert gray['semantic_logits'].shape == (1, 97, 161, 19)


# ------------------------------------------------------------- bad input


@pytest.mark.parametrize('shape, expected', [
    ((97, 161, 3), '`images` must be a uint8 RGB batch'),
    ((1, 97, 161, 1), '`images` must be a uint8 RGB batch'),
    ((1, 97, 161, 4), '`images` must be a uint8 RGB batch'),
    ((1, 2, 97, 161, 3), '`images` must be a uint8 RGB batch'),
    ((1, 0, 161, 3), '`images` is empty'),
    ((0, 97, 161, 3), '`images` is empty'),
], ids=['rank3', 'gray', 'rgba', 'rank5', 'no_rows', 'no_images'])
def test_bad_images_get_a_clear_error(serving, shape, expected):
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        _serve(serving, np.zeros(shape, np.uint8))


def test_float_images_are_rejected_by_the_signature(serving):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='expected to be a uint8 tensor but is a float'):
        _serve(serving, np.zeros([1, 97, 161, 3], np.float32))


@pytest.mark.parametrize('value, expected', [
    (b'not an image at all', '`encoded_image` is not a JPEG or PNG file'),
    (b'', '`encoded_image` is not a JPEG or PNG file'),
    ([b'\x89PNG\r\n\x1a\n', b'\x89PNG\r\n\x1a\n'],
     'encoded_image_format_check(.|\n)*should be a scalar'),
], ids=['garbage', 'empty', 'batch'])
def test_bad_encoded_image_gets_a_clear_error(serving, value, expected):
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        serving[contract.ENCODED_SIGNATURE](encoded_image=tf.constant(value))


# ------------------------------------------------------------ atomic writes


def test_failed_export_leaves_nothing(narrow, tmp_path, monkeypatch):
    def fail_half_way(module, path, encoded=True):
        pathlib.Path(path).mkdir(exist_ok=True)
        (pathlib.Path(path) / 'saved_model.pb').write_bytes(b'partial')
        raise RuntimeError('disk full')

    monkeypatch.setattr(export, 'save_serving_module', fail_half_way)
    with pytest.raises(RuntimeError, match='disk full'):
        export.export_model(narrow.config, narrow.model,
                            tmp_path / 'exported')
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(narrow, tmp_path):
    target = tmp_path / 'exported'
    target.mkdir()
    (target / 'saved_model.pb').write_bytes(b'an earlier export')
    with pytest.raises(FileExistsError, match='exported exists'):
        export.export_model(narrow.config, narrow.model, target)
    assert (target / 'saved_model.pb').read_bytes() == b'an earlier export'
    options = export.ExportOptions(with_postprocessing=False)
    export.export_model(narrow.config, narrow.model, target, options=options,
                        overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['exported']
    assert (target / 'saved_model.pb').read_bytes() != b'an earlier export'
    assert (target / 'variables').is_dir()


def test_overwrite_refuses_a_folder_that_is_not_an_export(narrow, tmp_path):
    target = tmp_path / 'photos'
    target.mkdir()
    (target / 'mine.jpg').write_bytes(b'keep')
    with pytest.raises(FileExistsError, match=re.escape(
            f'{target} is a folder that is not a SavedModel')):
        export.export_model(narrow.config, narrow.model, target,
                            overwrite=True)
    assert (target / 'mine.jpg').read_bytes() == b'keep'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['photos']
    (tmp_path / 'empty').mkdir()
    export._check_replaceable(tmp_path / 'empty')  # may be replaced


def test_next_export_removes_what_a_killed_export_left(narrow, tmp_path):
    stale = [tmp_path / f'.exported.staging-{"ab" * 16}',
             tmp_path / f'.exported.old-{"cd" * 16}']
    for folder in stale:
        folder.mkdir()
        (folder / 'saved_model.pb').write_bytes(b'partial')
    # Not our staging names for this output path: kept.
    kept = [f'.exported.staging-{"ab" * 15}', f'.other.staging-{"ab" * 16}',
            f'exported.staging-{"ab" * 16}']
    for name in kept:
        (tmp_path / name).mkdir()
    options = export.ExportOptions(with_postprocessing=False)
    export.export_model(narrow.config, narrow.model, tmp_path / 'exported',
                        options=options)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        kept + ['exported'])


def test_file_formats_are_staged_and_replace_only_with_overwrite(
        narrow, tmp_path, monkeypatch):
    """TFLite/ONNX files go through a staging sibling: a failed conversion
    leaves nothing, --overwrite replaces a file or an empty folder."""
    def fail(module):
        raise RuntimeError('converter crashed')
    monkeypatch.setattr(export, 'convert_to_onnx', fail)
    with pytest.raises(RuntimeError, match='converter crashed'):
        export.export_model(narrow.config, narrow.model,
                            tmp_path / 'model.onnx', 'onnx', _NETWORK_ONLY)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(export, 'convert_to_onnx', lambda module: b'onnx 1')
    target = tmp_path / 'model.onnx'
    export.export_model(narrow.config, narrow.model, target, 'onnx', _NETWORK_ONLY)
    monkeypatch.setattr(export, 'convert_to_onnx', lambda module: b'onnx 2')
    with pytest.raises(FileExistsError, match='model.onnx exists'):
        export.export_model(narrow.config, narrow.model, target, 'onnx', _NETWORK_ONLY)
    assert target.read_bytes() == b'onnx 1'
    (tmp_path / f'.model.onnx.staging-{"ef" * 16}').write_bytes(b'killed')
    export.export_model(narrow.config, narrow.model, target, 'onnx',
                        _NETWORK_ONLY, overwrite=True)
    assert target.read_bytes() == b'onnx 2'
    (tmp_path / 'empty.onnx').mkdir()
    export.export_model(narrow.config, narrow.model, tmp_path / 'empty.onnx',
                        'onnx', _NETWORK_ONLY, overwrite=True)
    assert (tmp_path / 'empty.onnx').read_bytes() == b'onnx 2'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'empty.onnx', 'model.onnx']


def test_fixed_input_size_is_in_the_signature(narrow):
    options = export.ExportOptions(input_size=(97, 161))
    module = export.ServingModule(
        narrow.model, export.build_predict_fn(narrow.config, narrow.model,
                                              options), options.input_size)
    spec = module.serving_default.input_signature[0]
    assert spec.shape.as_list() == [None, 97, 161, 3]
    outputs = module.serving_default(tf.constant(narrow.image('_b')))
    assert outputs['panoptic_pred'].shape == (1, 97, 161)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match='encoded_image_size_check(.|\n)*not '
                             'compatible with expected shape'):
        module.serving_encoded(tf.constant(_encode(narrow.image()[0],
                                                   'PNG')))


def test_unknown_format_is_refused(narrow, tmp_path):
    with pytest.raises(ValueError, match='Unknown export format'):
        export.export_model(narrow.config, narrow.model, tmp_path / 'm',
                            'torchscript')
    assert list(tmp_path.iterdir()) == []


def test_cli_rejects_a_bad_crop_size(repo_root, tmp_path):
    result = subprocess.run(
        [sys.executable, str(repo_root / 'scripts/export_model.py'),
         '--config_file=x', '--checkpoint_path=y',
         f'--output_path={tmp_path / "m"}', '--crop_size=97'],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert '--crop_size must be two positive integers' in result.stderr


# ------------------------------------------------------------ TFLite, ONNX


# The offset map is the decoder's stride-4 output resized and scaled by 4
# (offsets in input pixels), so its float differences are 4x the network's;
# it is compared in decoder pixels, everything else as it is.
_OFFSET_SCALE = 4.0
_CONVERTED_ATOL = 1e-4


def _assert_network_outputs_close(actual, serving_outputs, context):
    expected = {key: serving_outputs[key]
                for key in contract.NETWORK_OUTPUT_KEYS}
    assert sorted(actual) == sorted(expected)
    for key in expected:
        scale = _OFFSET_SCALE if key == 'offset_map' else 1.0
        np.testing.assert_allclose(actual[key] / scale, expected[key] / scale,
                                   atol=_CONVERTED_ATOL, rtol=0,
                                   err_msg=f'{key} {context}')


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_tflite_matches_saved_model_network_outputs(narrow, serving,
                                                    tmp_path):
    path = export.export_model(narrow.config, narrow.model,
                               tmp_path / 'model.tflite', 'tflite',
                               _NETWORK_ONLY)
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner(contract.DEFAULT_SIGNATURE)
    for suffix in ['', '_b']:  # dynamic size: two input sizes
        image = narrow.image(suffix)
        _assert_network_outputs_close(runner(images=image),
                                      _serve(serving, image), f'input{suffix}')


def test_onnx_matches_saved_model_network_outputs(narrow, serving, tmp_path):
    import onnxruntime  # the dev extra installs it (and tf2onnx)
    path = export.export_model(narrow.config, narrow.model,
                               tmp_path / 'model.onnx', 'onnx',
                               _NETWORK_ONLY)
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    (images,) = session.get_inputs()
    assert images.name == 'images' and images.type == 'tensor(uint8)'
    names = [output.name for output in session.get_outputs()]
    assert sorted(names) == sorted(contract.NETWORK_OUTPUT_KEYS)
    for suffix in ['', '_c']:  # dynamic size: two input sizes
        image = narrow.image(suffix)
        outputs = dict(zip(names, session.run(names, {'images': image})))
        _assert_network_outputs_close(outputs, _serve(serving, image),
                                      f'input{suffix}')


# ------------------------------------------------------------ XLA clusters


def _xla_functions(saved_model_dir):
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(
        (pathlib.Path(saved_model_dir) / 'saved_model.pb').read_bytes())
    library = saved_model.meta_graphs[0].graph_def.library
    return [function.signature.name for function in library.function
            if function.attr['_XlaMustCompile'].b]


def test_export_without_jit_has_no_xla_clusters_and_same_outputs(
        narrow, serving, saved_model_dir, tmp_path):
    assert _xla_functions(saved_model_dir)  # the default keeps them
    options = export.ExportOptions(include_network_outputs=True,
                                   jit_postprocessing=False)
    path = export.export_model(narrow.config, narrow.model,
                               tmp_path / 'no_xla', options=options)
    assert _xla_functions(path) == []
    plain = tf.saved_model.load(path).signatures[contract.DEFAULT_SIGNATURE]
    image = narrow.image('_c')
    _assert_outputs_equal(_numpy(plain(images=tf.constant(image))),
                          _serve(serving, image))


def test_predict_fn_post_processes_with_the_given_dataset(narrow, tmp_path):
    """A spec dataset over the same 19 classes, all stuff, divisor 64: no
    instances, and each pixel's panoptic id is its class * 64, or void
    (255 * 64) where its class covers less than the config's
    stuff_area_limit (2048 pixels)."""
    from deeplab2.data import dataset_spec
    spec = {'name': 'all_stuff', 'panoptic_label_divisor': 64,
            'classes': [{'name': f'k{label}'} for label in range(19)],
            'splits': {'val': {'file_pattern': 'v-*', 'num_examples': 1}}}
    dataset_spec.write_spec(str(tmp_path / 'dataset.json'), spec)
    descriptor = dataset_spec.load_spec(str(tmp_path / 'dataset.json'))
    predict = export.build_predict_fn(narrow.config, narrow.model,
                                      export.ExportOptions(), descriptor)
    image = np.random.default_rng(0).integers(0, 256, (1, 65, 97, 3),
                                              dtype=np.uint8)
    outputs = _numpy(predict(tf.constant(image)))
    semantic = outputs['semantic_pred'][0]
    labels, areas = np.unique(semantic, return_counts=True)
    large = labels[areas >= 2048]
    assert large.size and large.size < labels.size  # both rules at work
    expected = np.where(np.isin(semantic, large), semantic, 255) * 64
    np.testing.assert_array_equal(outputs['panoptic_pred'][0], expected)
    assert not outputs['instance_pred'].any()
