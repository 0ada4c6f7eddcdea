"""predict: outputs per image agree with an independent run of our
inference (decoded PNG, JSON areas/boxes/scores, overlay size), both
Predictor back-ends, batches, the CLI, and bad input."""

import io
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2 import predict
from deeplab2 import predictor as predictor_lib
from deeplab2 import progress as progress_lib
from deeplab2 import serving
from deeplab2.data import datasets
from deeplab2.data import preprocessing
from deeplab2.model import builder
from deeplab2.model import inference

NAME = 'mobilenet_v3_small_os16_narrow'
DESCRIPTOR = datasets.CITYSCAPES_PANOPTIC
DIVISOR = DESCRIPTOR.panoptic_label_divisor


@pytest.fixture(scope='module')
def fixture(fixtures_dir):
    folder = fixtures_dir / 'deeplab2' / NAME
    return folder / f'{NAME}.textproto', folder / 'train_ckpt'


@pytest.fixture(scope='module')
def backend(fixture):
    config_file, checkpoint = fixture
    return predictor_lib.Predictor.from_checkpoint(config_file, checkpoint)


@pytest.fixture(scope='module')
def restored(fixture):
    """(config, model) restored here, not through deeplab2.predict."""
    config_file, checkpoint = fixture
    config = config_lib.load_config(config_file)
    model = builder.build_model(config)
    compat.restore_checkpoint(model, checkpoint)
    return config, model


@pytest.fixture(scope='module')
def reference(restored):
    """Our inference run directly: image uint8 [H, W, 3] -> dict of
    [H, W] numpy maps."""
    run = tf.function(inference.build_inference(*restored))
    return lambda image: {key: value.numpy()[0] for key, value in run(
        tf.constant(image[None].astype(np.float32))).items()}


def _random_scene(height, width, seed):
    """Smooth random colors (blocks), so the model sees some structure."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3))
    image = np.repeat(np.repeat(blocks, 16, 0), 16, 1)[:height, :width]
    noise = rng.integers(-20, 21, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    """A PNG, a grayscale JPEG of another size and an RGBA PNG."""
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(_random_scene(97, 161, 0)).save(folder / 'street.png')
    Image.fromarray(_random_scene(129, 257, 1)[..., 0]).save(
        folder / 'gray.jpg', quality=95)
    rgba = np.dstack([_random_scene(97, 161, 2),
                      np.full([97, 161], 128, np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(folder / 'alpha.png')
    return folder


def _decode_segment_ids(path):
    rgb = np.asarray(Image.open(path), np.int64)
    assert rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _expected_segment_ids(panoptic):
    semantic, instance = np.divmod(panoptic.astype(np.int64), DIVISOR)
    return np.where(semantic == DESCRIPTOR.ignore_label, 0,
                    semantic * DIVISOR + instance + 1)


def _check_outputs(output_dir, name, image, expected):
    """One image's three files against `expected` (reference maps)."""
    segment_ids = _decode_segment_ids(output_dir / f'{name}_panoptic.png')
    np.testing.assert_array_equal(
        segment_ids, _expected_segment_ids(expected['panoptic_pred']))
    with Image.open(output_dir / f'{name}_overlay.jpg') as overlay:
        assert overlay.size == (image.shape[1], image.shape[0])
        assert overlay.mode == 'RGB'
    content = json.loads((output_dir / f'{name}_segments.json').read_text())
    assert (content['height'], content['width']) == image.shape[:2]
    assert content['panoptic_png'] == f'{name}_panoptic.png'
    by_id = {segment['id']: segment for segment in content['segments']}
    assert len(by_id) == len(content['segments'])
    present = set(np.unique(segment_ids).tolist()) - {0}
    assert set(by_id) == present and len(present) >= 2
    for segment_id, segment in by_id.items():
        rows, cols = np.nonzero(segment_ids == segment_id)
        category = (segment_id - 1) // DIVISOR
        assert segment['area'] == rows.size
        assert segment['bbox'] == [int(cols.min()), int(rows.min()),
                                   int(cols.max() - cols.min() + 1),
                                   int(rows.max() - rows.min() + 1)]
        assert segment['category_id'] == category
        assert segment['category_name'] == DESCRIPTOR.class_names[category]
        assert segment['eval_id'] == DESCRIPTOR.eval_ids[category]
        assert segment['isthing'] == (category in range(11, 19))
        if segment['isthing']:
            mean = expected['instance_scores'][rows, cols].mean()
            assert segment['score'] == pytest.approx(mean, abs=1e-5)
        else:
            assert segment['score'] is None
    return content


def test_outputs_match_independent_inference(backend, reference, images,
                                             tmp_path):
    paths = predict.find_images(str(images / '*'))
    output_dir = tmp_path / 'out'
    result = predict.predict_images(backend, DESCRIPTOR, paths,
                                    str(output_dir))
    assert sorted(result.written) == ['alpha', 'gray', 'street']
    assert not result.skipped
    things = 0
    for name, extension in [('street', 'png'), ('gray', 'jpg'),
                            ('alpha', 'png')]:
        with Image.open(images / f'{name}.{extension}') as opened:
            image = np.asarray(opened.convert('RGB'))
        content = _check_outputs(output_dir, name, image, reference(image))
        things += sum(segment['isthing'] for segment in content['segments'])
    assert things > 0  # the score path was exercised


def test_eval_crop_size_equals_evaluator_and_crop_does_not_matter(
        fixture, backend, reference):
    """At the eval crop size the evaluator's preprocessing is the identity,
    so predict equals it; a model built for a crop smaller than the image
    (its recorded ASPP pool size) gives the same maps: pooling is global."""
    image = _random_scene(97, 161, 3)
    _, evaluated, _ = preprocessing.preprocess_image_and_label(
        image, None, crop_height=97, crop_width=161, is_training=False)
    expected = reference(evaluated.numpy().astype(np.uint8))
    ours = backend(image)
    small_crop = predictor_lib.Predictor.from_checkpoint(config_lib.load_config(
        fixture[0], ['train_dataset_options.crop_size=33,65',
                     'eval_dataset_options.crop_size=33,65']),
        fixture[1])(image)
    for key in serving.PREDICTION_KEYS:
        np.testing.assert_array_equal(ours[key], expected[key], err_msg=key)
        np.testing.assert_array_equal(small_crop[key], expected[key],
                                      err_msg=key)


def test_saved_model_backend_equals_checkpoint_backend(restored, backend,
                                                       images, tmp_path):
    """End to end with the real exporter: predict on its SavedModel writes
    what predict on the checkpoint writes."""
    from deeplab2 import export
    config, model = restored
    export.export_model(config, model, tmp_path / 'saved')
    served = predictor_lib.build_predictor(
        config, exported=str(tmp_path / 'saved'))
    paths = [str(images / 'street.png')]
    predict.predict_images(served, DESCRIPTOR, paths, str(tmp_path / 'sm'))
    predict.predict_images(backend, DESCRIPTOR, paths, str(tmp_path / 'ck'))
    np.testing.assert_array_equal(
        _decode_segment_ids(tmp_path / 'sm' / 'street_panoptic.png'),
        _decode_segment_ids(tmp_path / 'ck' / 'street_panoptic.png'))
    from_saved_model = json.loads(
        (tmp_path / 'sm' / 'street_segments.json').read_text())
    from_checkpoint = json.loads(
        (tmp_path / 'ck' / 'street_segments.json').read_text())
    for ours, theirs in zip(from_saved_model['segments'],
                            from_checkpoint['segments'], strict=True):
        if theirs['isthing']:
            theirs['score'] = pytest.approx(theirs['score'], abs=1e-5)
        assert ours == theirs


def test_saved_model_without_the_contract_is_named(tmp_path):
    module = tf.Module()
    module.serve = tf.function(
        lambda images: {'panoptic_pred': tf.cast(images[..., 0], tf.int32)},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                       name='images')])
    tf.saved_model.save(module, str(tmp_path / 'partial'),
                        signatures={'serving_default': module.serve})
    with pytest.raises(ValueError, match=r'lacks outputs \[.semantic_pred'):
        predictor_lib.Predictor.from_saved_model(tmp_path / 'partial')
    tf.saved_model.save(module, str(tmp_path / 'other'),
                        signatures={'other': module.serve})
    with pytest.raises(ValueError, match="no 'serving_default' signature"):
        predictor_lib.Predictor.from_saved_model(tmp_path / 'other')
    with pytest.raises(FileNotFoundError, match='missing'):
        predictor_lib.Predictor.from_saved_model(tmp_path / 'missing')


def test_unreadable_image_is_skipped_and_named(backend, images, tmp_path):
    (images / 'broken.png').write_bytes(b'not an image')
    valid = io.BytesIO()
    Image.fromarray(_random_scene(40, 40, 5)).save(valid, format='PNG')
    (images / 'truncated.png').write_bytes(valid.getvalue()[:200])
    paths = [str(images / name) for name in
             ('broken.png', 'street.png', 'truncated.png')]
    result = predict.predict_images(backend, DESCRIPTOR, paths,
                                    str(tmp_path / 'out'))
    assert result.written == ['street']
    assert [path for path, _ in result.skipped] == [paths[0], paths[2]]
    assert all(path in reason for path, reason in result.skipped)
    assert sorted(os.listdir(tmp_path / 'out')) == [
        'street_overlay.jpg', 'street_panoptic.png', 'street_segments.json']
    (tmp_path / 'a_file').write_text('')
    with pytest.raises(NotADirectoryError, match='a_file is a file'):
        predict.predict_images(backend, DESCRIPTOR, paths,
                               str(tmp_path / 'a_file'))


def test_cli(fixture, images, tmp_path, repo_root):
    config_file, checkpoint = fixture
    (images / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    command = [sys.executable, str(repo_root / 'scripts' / 'predict.py'),
               f'--config_file={config_file}',
               f'--checkpoint_path={checkpoint}',
               f'--output_dir={tmp_path / "out"}',
               '--config_override=evaluator_options.stuff_area_limit=0']
    environment = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
    # street.png and broken.jpg: the good image is written, the broken
    # one named, and the exit status says something was skipped.
    run = subprocess.run(command + [f'--input={images}/[sb]*.[jp][pn]g'],
                         capture_output=True, text=True, env=environment)
    assert run.returncode == 1, run.stderr
    assert f'{images}/broken.jpg' in run.stderr
    assert 'Wrote predictions for 1 image to' in run.stderr
    assert sorted(os.listdir(tmp_path / 'out')) == [
        'street_overlay.jpg', 'street_panoptic.png', 'street_segments.json']

    missing = subprocess.run(command + [f'--input={tmp_path}/none/*.png'],
                             capture_output=True, text=True, env=environment)
    assert missing.returncode == 2
    assert f"Input '{tmp_path}/none/*.png' matches no image files" in (
        missing.stderr)


def test_read_rgb_image_converts_modes_and_orientation(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, 'L').save(tmp_path / 'gray.png')
    np.testing.assert_array_equal(
        predict.read_rgb_image(str(tmp_path / 'gray.png')),
        np.repeat(gray[..., None], 3, axis=2))
    deep = (gray.astype(np.uint16) * 257)
    Image.fromarray(deep).save(tmp_path / 'deep.png')  # 16-bit grayscale
    np.testing.assert_array_equal(
        predict.read_rgb_image(str(tmp_path / 'deep.png'))[..., 1], gray)
    rgba = np.zeros([3, 4, 4], np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    assert predict.read_rgb_image(str(tmp_path / 'rgba.png'))[0, 0].tolist() \
        == [200, 0, 0]
    # EXIF orientation 6: stored 3x4, shown rotated to 4x3.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros([3, 4, 3], np.uint8)).save(
        tmp_path / 'rotated.jpg', exif=exif)
    assert predict.read_rgb_image(str(tmp_path / 'rotated.jpg')).shape == (
        4, 3, 3)


def test_find_images_and_output_names(tmp_path):
    (tmp_path / 'sub').mkdir()
    for name in ('a.jpg', 'a.png', 'sub/b.PNG', 'notes.txt',
                 'b_panoptic.png', 'b_overlay.jpg'):
        (tmp_path / name).write_bytes(b'')
    # A folder: images by extension; a previous run's outputs there are
    # not inputs when the output folder is the input folder.
    found = predict.find_images(str(tmp_path), exclude_dir=str(tmp_path))
    assert [os.path.basename(path) for path in found] == ['a.jpg', 'a.png']
    found = predict.find_images(f'{tmp_path}/**/*.*[gG]',
                                exclude_dir='/else')
    assert len(found) == 5
    names = predict.output_names(
        [str(tmp_path / name) for name in ('a.jpg', 'a.png', 'sub/b.PNG')])
    assert sorted(names.values()) == ['a_jpg', 'a_png', 'sub/b']
    with pytest.raises(FileNotFoundError, match=r"Input '.*\*\.gif'"):
        predict.find_images(f'{tmp_path}/*.gif')


def test_backend_choice_is_exactly_one():
    with pytest.raises(ValueError, match='exactly one'):
        predictor_lib.build_predictor(None)
    with pytest.raises(ValueError, match='exactly one'):
        predictor_lib.build_predictor(None, checkpoint_path='a',
                                      exported='b')


def test_predictor_batch_equals_single_images(backend):
    """A batch gives each image's maps, batch first; one image drops it."""
    images = np.stack([_random_scene(65, 97, 6), _random_scene(65, 97, 7)])
    batched = backend(images)
    assert sorted(batched) == sorted(serving.PREDICTION_KEYS)
    for index, image in enumerate(images):
        single = backend(image)
        for key in serving.PREDICTION_KEYS:
            assert single[key].shape == (65, 97)
            np.testing.assert_array_equal(batched[key][index], single[key],
                                          err_msg=key)


def test_predictor_refuses_what_is_not_uint8_rgb():
    def unreachable(images):
        raise AssertionError('the checks come first')
    predictor = predictor_lib.Predictor(unreachable)
    with pytest.raises(TypeError, match='uint8 RGB images.*float32'):
        predictor(np.zeros([4, 4, 3], np.float32))
    for shape in ([4, 4], [4, 4, 4], [1, 1, 4, 4, 3], [0, 4, 4, 3]):
        with pytest.raises(ValueError, match=r'got shape \(' + str(shape[0])):
            predictor(np.zeros(shape, np.uint8))


def test_progress_counts_images_with_their_names(tmp_path):
    """predict_images advances the reporter it is given, once per image,
    skipped ones included; `semantic_pred` alone is a valid model output."""
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(_random_scene(8, 8, 8)).save(folder / 'a.png')
    (folder / 'b.png').write_bytes(b'broken')
    stream = io.StringIO()
    progress = progress_lib.Progress(2, unit='image', stream=stream,
                                     live=True)
    semantic_only = lambda image: {'semantic_pred': np.full(  # noqa: E731
        image.shape[:2], 7, np.int32)}
    result = predict.predict_images(
        semantic_only, DESCRIPTOR, [str(folder / 'a.png'),
                                    str(folder / 'b.png')],
        str(tmp_path / 'out'), progress)
    assert result.written == ['a'] and len(result.skipped) == 1
    text = stream.getvalue()
    assert '1/2' in text and 'a.png' in text and 's/image' in text
    assert '2/2' in text and 'b.png' in text and text.endswith('\n')
    content = json.loads((tmp_path / 'out' / 'a_segments.json').read_text())
    assert [(s['category_id'], s['area'], s['score'])
            for s in content['segments']] == [(7, 64, None)]


def _renamed_cityscapes_spec(folder):
    """A spec of Cityscapes' label space under other names, eval ids and
    colours: class k is `k<k>`, eval id 100 + k, colour (k, 2k, 3k)."""
    from deeplab2.data import dataset_spec
    spec = {'name': 'renamed', 'panoptic_label_divisor': DIVISOR,
            'classes': [{'name': f'k{label}', 'eval_id': 100 + label,
                         'thing': label in range(11, 19),
                         'color': [label, 2 * label, 3 * label]}
                        for label in range(19)],
            'splits': {'val': {'file_pattern': 'val-*', 'num_examples': 1}}}
    path = str(folder / 'dataset.json')
    dataset_spec.write_spec(path, spec)
    return path


def test_spec_dataset_names_segments_and_colours_the_overlay(tmp_path):
    """A fixed panoptic map on a black image: the segments carry the
    spec's names and eval ids, the overlay half the spec's colour."""
    spec = datasets.get_dataset_descriptor(
        _renamed_cityscapes_spec(tmp_path))
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / 'a.png')
    panoptic = np.full((16, 16), 10 * DIVISOR, np.int32)   # k10, stuff
    panoptic[:, 8:] = 13 * DIVISOR + 1                     # k13, a thing
    maps = lambda image: {  # noqa: E731
        'panoptic_pred': panoptic,
        'instance_scores': np.full((16, 16), 0.5, np.float32)}
    predict.predict_images(maps, spec, [str(folder / 'a.png')],
                           str(tmp_path / 'out'))
    content = json.loads((tmp_path / 'out' / 'a_segments.json').read_text())
    assert content['dataset'] == 'renamed'
    assert [(s['category_name'], s['eval_id'], s['isthing'])
            for s in content['segments']] == [('k10', 110, False),
                                              ('k13', 113, True)]
    with Image.open(tmp_path / 'out' / 'a_overlay.jpg') as overlay:
        stuff = np.asarray(overlay)[4, 2].astype(int)
    # Blended half and half with black: (5, 10, 15), give or take JPEG.
    np.testing.assert_allclose(stuff, [5, 10, 15], atol=4)


def test_run_looks_the_dataset_up_once(fixture, tmp_path, monkeypatch):
    """predict.run on a spec dataset: one lookup, its descriptor handed to
    the back-end (for post-processing) and to the writer (the segments
    name spec classes). The back-end is a stand-in: building it is the
    Predictor tests' business."""
    config_file, _ = fixture
    path = _renamed_cityscapes_spec(tmp_path)
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(folder / 'a.png')
    lookups, handed = [], []
    lookup = datasets.get_dataset_descriptor

    def counted(name):
        lookups.append(name)
        return lookup(name)

    def backend(config, checkpoint_path, saved_model, config_name,
                descriptor, precision):
        handed.append(descriptor)
        return lambda image: {'semantic_pred': np.full(image.shape[:2], 12)}

    monkeypatch.setattr(datasets, 'get_dataset_descriptor', counted)
    monkeypatch.setattr(predict, 'build_predictor', backend)
    result = predict.run(str(config_file), str(folder / '*.png'),
                         str(tmp_path / 'out'), checkpoint_path='unused',
                         config_overrides=[
                             f'eval_dataset_options.dataset={path}'])
    assert result.written == ['a'] and lookups == [path]
    assert [descriptor.name for descriptor in handed] == ['renamed']
    content = json.loads((tmp_path / 'out' / 'a_segments.json').read_text())
    assert [(s['category_name'], s['eval_id'], s['area'])
            for s in content['segments']] == [('k12', 112, 24)]
