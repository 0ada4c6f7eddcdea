"""Semantic-only datasets (label folders without instances), end to end:
their PNG-label records decode into semantic-only samples, DeepLab2's
semseg config trains on them and evaluates to mIoU alone (checked against a
confusion matrix computed here), a model with an instance branch is refused
on them before anything is built, and predict writes class-id PNGs instead
of panoptic files."""

import dataclasses
import io
import json
import math
import pathlib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import config_pb2
from deeplab2 import dataset_pb2
from deeplab2 import export
from deeplab2 import predict
from deeplab2 import predictor as predictor_lib
from deeplab2.data import dataset_spec
from deeplab2.data import input_pipeline
from deeplab2.data import label_folders
from deeplab2.data import tfrecord
from deeplab2.model import builder
from deeplab2.trainer import runner

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SEMSEG_CONFIG = (REPO_ROOT / 'configs/cityscapes/panoptic_deeplab/'
                 'resnet50_os32_semseg.textproto')
PANOPTIC_CONFIG = (REPO_ROOT / 'configs/demo/'
                   'panoptic_deeplab_mobilenet_v3_small_os16.textproto')

# The label PNGs' class ids: not contiguous, and 0 is void. Train ids are
# the positions in this tuple.
CLASS_IDS = (3, 7, 200)
IGNORE_ID = 0
CLASS_NAMES = ('sky', 'road', 'wall')
CLASSES = {'classes': [{'name': name, 'id': class_id}
                       for name, class_id in zip(CLASS_NAMES, CLASS_IDS)],
           'ignore_id': IGNORE_ID}
COLORS = np.array([[70, 130, 180], [128, 64, 128], [102, 102, 156]])
# Per split, image name -> (height, width): odd sizes, one smaller than the
# eval crop (it is padded, then cropped back).
SPLITS = {'train': {f't{index}': (33, 45) for index in range(4)},
          'val': {'v0': (33, 45), 'v1': (31, 37)}}


def _label_ids(rng, height, width):
    """Class ids in 4x4 blocks, one block void."""
    blocks = rng.choice(CLASS_IDS, (height // 4 + 1, width // 4 + 1))
    blocks[1, 2] = IGNORE_ID
    return np.repeat(np.repeat(blocks, 4, 0), 4, 1)[:height, :width]


def _image_of(ids, rng):
    """Each class its colour, plus noise (void stays dark)."""
    image = np.zeros(ids.shape + (3,), np.int64)
    for class_id, color in zip(CLASS_IDS, COLORS):
        image[ids == class_id] = color
    return np.clip(image + rng.integers(-10, 11, image.shape), 0,
                   255).astype(np.uint8)


@pytest.fixture(scope='module')
def semantic_dataset(tmp_path_factory):
    """Converted with build_dataset's label-folder converter, without
    instances: (dataset.json path, {split: {name: label ids [H, W]}})."""
    root = tmp_path_factory.mktemp('semantic_only')
    classes = root / 'classes.json'
    classes.write_text(json.dumps(CLASSES))
    rng = np.random.default_rng(5)
    labels = {}
    for split, sizes in SPLITS.items():
        image_dir = root / split / 'images'
        semantic_dir = root / split / 'classes'
        image_dir.mkdir(parents=True)
        semantic_dir.mkdir()
        labels[split] = {}
        for name, (height, width) in sizes.items():
            ids = _label_ids(rng, height, width)
            Image.fromarray(_image_of(ids, rng)).save(image_dir /
                                                      f'{name}.png')
            Image.fromarray(ids.astype(np.uint8), 'L').save(
                semantic_dir / f'{name}.png')
            labels[split][name] = ids
        _, spec_path = label_folders.convert(
            str(image_dir), str(semantic_dir), str(classes), split,
            str(root / 'records'), num_shards=1, num_workers=1,
            show_progress=False)
    return spec_path, labels


def _semseg_overrides(spec_path, steps=2):
    """The spec's splits, tiny crops and widths, 3 classes, `steps` steps
    and one evaluation at the end with raw predictions saved."""
    return [
        f'train_dataset_options.dataset={spec_path}',
        'train_dataset_options.file_pattern=[]',
        f'eval_dataset_options.dataset={spec_path}',
        'eval_dataset_options.file_pattern=[]',
        'train_dataset_options.crop_size=33,45',
        'eval_dataset_options.crop_size=33,45',
        'train_dataset_options.batch_size=2',
        'model_options.initial_checkpoint=',
        'model_options.backbone.backbone_width_multiplier=0.25',
        # One or two blocks per stage: tracing time follows the depth.
        'model_options.backbone.backbone_layer_multiplier=0.34',
        'model_options.decoder.aspp_channels=16',
        'model_options.decoder.decoder_channels=16',
        'model_options.panoptic_deeplab.semantic_head.head_channels=16',
        f'model_options.panoptic_deeplab.semantic_head.output_channels='
        f'{len(CLASS_IDS)}',
        f'trainer_options.solver_options.training_number_of_steps={steps}',
        'trainer_options.steps_per_loop=1',
        f'trainer_options.save_checkpoints_steps={steps}',
        f'trainer_options.save_summaries_steps={steps}',
        f'evaluator_options.eval_interval={steps}',
        'evaluator_options.save_raw_predictions=true',
    ]


def test_semseg_config_trains_and_its_miou_is_the_confusion_matrix_s(
        semantic_dataset, tmp_path):
    spec_path, labels = semantic_dataset
    config = config_lib.load_config(SEMSEG_CONFIG,
                                    _semseg_overrides(spec_path))
    metrics = runner.run(config, 'train_and_eval', str(tmp_path), seed=0)
    log = [json.loads(line) for line in
           (tmp_path / 'train_log.jsonl').read_text().splitlines()]
    assert [entry['step'] for entry in log] == [1, 2]
    assert all(math.isfinite(entry['semantic_loss']) for entry in log)
    assert not any('center_loss' in entry for entry in log)
    # mIoU alone: PQ and AP would need instance labels.
    assert 'miou' in metrics
    assert not {'pq', 'sq', 'rq', 'ap', 'ap50'} & set(metrics)
    # The confusion matrix of the saved predictions (raw_semantic holds the
    # label PNGs' own ids: the spec's eval ids) against the labels written
    # above, void left out.
    train_id = {class_id: index for index, class_id in enumerate(CLASS_IDS)}
    confusion = np.zeros((len(CLASS_IDS),) * 2, np.int64)
    for name, ids in labels['val'].items():
        with Image.open(tmp_path / 'vis' / 'raw_semantic' /
                        f'{name}.png') as png:
            predicted = np.asarray(png, np.int64)
        assert predicted.shape == ids.shape
        assert set(np.unique(predicted).tolist()) <= set(CLASS_IDS)
        valid = ids != IGNORE_ID
        for truth, guess in zip(ids[valid], predicted[valid]):
            confusion[train_id[truth], train_id[guess]] += 1
    assert confusion.sum() == sum(int((ids != IGNORE_ID).sum())
                                  for ids in labels['val'].values())
    hits = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - hits
    expected = np.mean(hits[union > 0] / union[union > 0])
    assert metrics['miou'] == pytest.approx(expected, abs=1e-6)
    # eval_results.json: IoU per class name; pictures without panoptic maps.
    last = json.loads((tmp_path / 'eval_results.json').read_text()
                      .splitlines()[-1])
    assert last['step'] == 2 and 'pq' not in last
    assert last['per_class'] == {
        name: {'iou': pytest.approx(hits[label] / union[label], abs=1e-6)}
        for label, name in enumerate(CLASS_NAMES) if union[label] > 0}
    assert (tmp_path / 'vis' / '000000_semantic_label.png').is_file()
    assert not list((tmp_path / 'vis').glob('*panoptic*'))


# ------------------------------------------------------------ decoding


def _semantic_descriptor(folder, eval_ids=(3, 7, 200)):
    spec = {'name': 'fields', 'eval_void_id': 0,
            'classes': [{'name': f'c{index}', 'eval_id': eval_id,
                         'color': [40 * index, 80, 120]}
                        for index, eval_id in enumerate(eval_ids)],
            'splits': {'val': {'file_pattern': 'val-*', 'num_examples': 1}}}
    return dataset_spec.descriptor_from_spec(
        spec, str(pathlib.Path(folder) / 'dataset.json'))


def _png(array, mode):
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, 'PNG')
    return buffer.getvalue()


# A 3x4 label of train ids, 255 void; the image is black.
_LABEL = np.array([[0, 0, 1, 255],
                   [2, 1, 1, 255],
                   [2, 2, 0, 0]], np.uint8)


def _write_record(path, stored_label=None, **label):
    """One record of a black 3x4 image; `stored_label` replaces the label
    bytes after encoding (which would refuse a label of another size)."""
    example = tfrecord.encode_example(
        _png(np.zeros((3, 4, 3), np.uint8), 'RGB'), 'frame', 'png', 3, 4,
        **label)
    if stored_label is not None:
        example.features.feature[common.KEY_ENCODED_LABEL].bytes_list.value[
            0] = stored_label
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(example.SerializeToString())


def _first_sample(path, descriptor, is_training):
    options = dataset_pb2.DatasetOptions(
        dataset='fields.json', batch_size=1, crop_size=[3, 4] if is_training
        else [5, 6])
    dataset = input_pipeline.build_dataset(
        options, is_training=is_training, files=[str(path)],
        descriptor=descriptor, seed=0)
    return {key: value.numpy()[0]
            for key, value in next(iter(dataset)).items()}


def test_png_label_record_decodes_into_a_semantic_only_sample(tmp_path):
    descriptor = _semantic_descriptor(tmp_path)
    path = tmp_path / 'val-0.tfrecord'
    _write_record(path, semantic_label_png=_png(_LABEL, 'L'))
    sample = _first_sample(path, descriptor, is_training=True)
    # What the semantic loss reads, and nothing about instances.
    assert set(sample) == {common.IMAGE, common.GT_SEMANTIC_KEY,
                           common.SEMANTIC_LOSS_WEIGHT_KEY}
    semantic = sample[common.GT_SEMANTIC_KEY]
    # The crop is the image: the label as is, or mirrored by the flip.
    assert (np.array_equal(semantic, _LABEL)
            or np.array_equal(semantic, _LABEL[:, ::-1]))
    np.testing.assert_array_equal(sample[common.SEMANTIC_LOSS_WEIGHT_KEY],
                                  np.ones((3, 4)))
    sample = _first_sample(path, descriptor, is_training=False)
    np.testing.assert_array_equal(sample[common.GT_SEMANTIC_RAW], _LABEL)
    assert common.GT_PANOPTIC_RAW not in sample
    # Padded to the 5x6 eval crop with the void label.
    padded = np.full((5, 6), 255)
    padded[:3, :4] = _LABEL
    np.testing.assert_array_equal(sample[common.GT_SEMANTIC_KEY], padded)


@pytest.mark.parametrize('label, message', [
    ({'panoptic_label': _LABEL.astype(np.int32) * 1000},
     r'frame.*is a raw panoptic label.*semantic-only'),
    ({'semantic_label_png': _png(_LABEL, 'L'),
      'stored_label': _png(_LABEL[:2], 'L')},
     r'PNG label of image.*frame.*\[2 4\].*the image is.*\[3 4\]')])
def test_a_label_a_semantic_only_dataset_cannot_read_is_named(
        tmp_path, label, message):
    descriptor = _semantic_descriptor(tmp_path)
    path = tmp_path / 'val-0.tfrecord'
    _write_record(path, **label)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        _first_sample(path, descriptor, is_training=False)


# ------------------------------------------- instance branch refused


def _panoptic_on(spec_path):
    return [f'{field}.{key}' for field in ('train_dataset_options',
                                           'eval_dataset_options')
            for key in (f'dataset={spec_path}', 'file_pattern=[]')]


def _check_refusal(message, spec_path):
    assert spec_path in message and 'semantic-only' in message
    assert 'model_options.panoptic_deeplab.instance.enable' in message
    assert 'centers and offsets' in message
    assert 'instance.enable=false' in message


def test_instance_branch_on_a_semantic_only_dataset_is_refused_first(
        semantic_dataset, tmp_path):
    """Training, predict and export refuse Panoptic-DeepLab with its
    instance branch on a semantic-only dataset, before building anything:
    the model_dir is not even created."""
    spec_path, _ = semantic_dataset
    overrides = _panoptic_on(spec_path)
    config = config_lib.load_config(PANOPTIC_CONFIG, overrides)
    model_dir = tmp_path / 'model'
    for mode in ('train', 'train_and_eval', 'eval'):
        with pytest.raises(config_lib.ConfigError) as raised:
            runner.run(config, mode, str(model_dir))
        _check_refusal(str(raised.value), spec_path)
    assert not model_dir.exists()
    with pytest.raises(config_lib.ConfigError) as raised:
        predict.run(str(PANOPTIC_CONFIG), str(tmp_path / 'none' / '*.png'),
                    str(tmp_path / 'out'), checkpoint_path='unused',
                    config_overrides=overrides)
    _check_refusal(str(raised.value), spec_path)
    with pytest.raises(config_lib.ConfigError) as raised:
        export.export_from_config(PANOPTIC_CONFIG, 'unused',
                                  tmp_path / 'export', overrides=overrides)
    _check_refusal(str(raised.value), spec_path)
    assert not (tmp_path / 'out').exists()
    assert not (tmp_path / 'export').exists()


def test_models_without_an_instance_branch_suit_a_semantic_only_dataset(
        tmp_path):
    """The semseg config, DeepLabV3 and V3+ pass the check; Panoptic-DeepLab
    with its instance branch passes on a dataset with instances only."""
    semantic_only = _semantic_descriptor(tmp_path)
    with_instances = dataclasses.replace(semantic_only, has_instances=True)
    config = config_pb2.ExperimentOptions()
    config.eval_dataset_options.dataset = 'fields.json'
    config.model_options.panoptic_deeplab.instance.enable = True
    config.model_options.panoptic_deeplab.semantic_head.output_channels = 3
    builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                      with_instances)
    with pytest.raises(config_lib.ConfigError, match='semantic-only'):
        builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                          semantic_only)
    config.model_options.panoptic_deeplab.instance.enable = False
    builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                      semantic_only)
    for meta_architecture in ('deeplab_v3', 'deeplab_v3_plus'):
        getattr(config.model_options, meta_architecture).num_classes = 3
        builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                          semantic_only)


# ------------------------------------------------------------- predict


@pytest.mark.parametrize('eval_ids, dtype', [((3, 7, 200), np.uint8),
                                             ((3, 7, 300), np.uint16)])
def test_predict_writes_a_class_id_png_for_a_semantic_only_dataset(
        tmp_path, eval_ids, dtype):
    """A fixed semantic map on a black 16x24 image (class 0 left, class 2
    right): the PNG holds each pixel's eval id (16 bits once an id passes
    255), the overlay half each class's colour, the JSON one entry per
    class; no panoptic PNG. A back-end that also returns panoptic maps
    changes nothing: the dataset has no instances."""
    descriptor = _semantic_descriptor(tmp_path, eval_ids)
    folder = tmp_path / 'images'
    folder.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folder / 'a.png')
    semantic = np.full((16, 24), 2, np.int32)
    semantic[:, :8] = 0
    maps = lambda image: {  # noqa: E731
        'semantic_pred': semantic, 'panoptic_pred': semantic * 1000 + 1,
        'instance_scores': np.ones((16, 24), np.float32)}
    result = predict.predict_images(maps, descriptor,
                                    [str(folder / 'a.png')],
                                    str(tmp_path / 'out'))
    assert result.written == ['a']
    out = tmp_path / 'out'
    assert sorted(path.name for path in out.iterdir()) == [
        'a_overlay.jpg', 'a_segments.json', 'a_semantic.png']
    with Image.open(out / 'a_semantic.png') as png:
        assert png.mode == ('L' if dtype == np.uint8 else 'I;16')
        written = np.asarray(png)
    expected = np.full((16, 24), eval_ids[2])
    expected[:, :8] = eval_ids[0]
    np.testing.assert_array_equal(written, expected)
    with Image.open(out / 'a_overlay.jpg') as overlay:
        pixels = np.asarray(overlay).astype(int)
    # Half of class 0's colour (0, 80, 120) and class 2's (80, 80, 120),
    # give or take JPEG.
    np.testing.assert_allclose(pixels[8, 3], [0, 40, 60], atol=5)
    np.testing.assert_allclose(pixels[8, 16], [40, 40, 60], atol=5)
    content = json.loads((out / 'a_segments.json').read_text())
    assert content['semantic_png'] == 'a_semantic.png'
    assert 'panoptic_png' not in content and 'label_divisor' not in content
    assert content['segments'] == [
        {'id': eval_ids[0], 'category_id': 0, 'category_name': 'c0',
         'eval_id': eval_ids[0], 'isthing': False, 'score': None,
         'area': 128, 'bbox': [0, 0, 8, 16]},
        {'id': eval_ids[2], 'category_id': 2, 'category_name': 'c2',
         'eval_id': eval_ids[2], 'isthing': False, 'score': None,
         'area': 256, 'bbox': [8, 0, 16, 16]}]


def test_semantic_only_saved_model_predicts_its_semantic_map(tmp_path):
    """A SavedModel with `semantic_pred` alone (a semantic-only model's
    export) is a valid back-end."""
    module = tf.Module()
    module.serve = tf.function(
        lambda images: {'semantic_pred': tf.cast(images[..., 0] // 100,
                                                 tf.int32)},
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                       name='images')])
    tf.saved_model.save(module, str(tmp_path / 'semantic'),
                        signatures={'serving_default': module.serve})
    backend = predictor_lib.Predictor.from_saved_model(tmp_path / 'semantic')
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = 250
    maps = backend(image)
    assert set(maps) == {'semantic_pred'}
    np.testing.assert_array_equal(maps['semantic_pred'],
                                  [[2, 0, 0], [0, 0, 0]])
