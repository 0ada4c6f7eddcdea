"""generate_sample reproduces DeepLab2's PanopticSampleGenerator outputs.

The references under fixtures/data/targets were written by DeepLab2 itself
(see fixtures/data/README.md, section 2). Inputs are decoded here from the
fixture TFRecords with DeepLab2's feature keys, independently of our
tfrecord module.
"""

import dataclasses
import gzip

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from deeplab2 import common
from deeplab2 import dataset_pb2
from deeplab2.data import datasets
from deeplab2.data import preprocessing
from deeplab2.data import sample_generator
from deeplab2.data import targets

CITYSCAPES = datasets.get_dataset_descriptor('cityscapes_panoptic')
MINI = 'cityscapes_mini_crowd_as_ignore_false'
FLOAT_KEYS = (common.GT_INSTANCE_CENTER_KEY, common.GT_INSTANCE_REGRESSION_KEY)


def _parse(record):
    features = tf.io.parse_single_example(record, {
        common.KEY_ENCODED_IMAGE: tf.io.FixedLenFeature([], tf.string),
        common.KEY_IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string),
        common.KEY_IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        common.KEY_IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        common.KEY_ENCODED_LABEL: tf.io.FixedLenFeature([], tf.string),
    })
    image = tf.io.decode_image(features[common.KEY_ENCODED_IMAGE],
                               channels=3, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    label = tf.reshape(
        tf.io.decode_raw(features[common.KEY_ENCODED_LABEL], tf.int32),
        [features[common.KEY_IMAGE_HEIGHT], features[common.KEY_IMAGE_WIDTH],
         1])
    return {'image': image, 'label': label,
            'image_name': features[common.KEY_IMAGE_FILENAME]}


def _records(path):
    return tf.data.TFRecordDataset(str(path))


def _decoded(path):
    return _parse(next(iter(_records(path))))


def _reference(fixtures_dir, case):
    folder = fixtures_dir / 'data' / 'targets' / case
    return {path.name[:-len('.npy.gz')]: np.load(gzip.open(path))
            for path in folder.glob('*.npy.gz')}


def _assert_matches(sample, reference, skip=()):
    for key, expected in reference.items():
        if key in skip:
            continue
        actual = np.asarray(sample[key])
        assert actual.dtype == expected.dtype, key
        assert actual.shape == expected.shape, key
        if key in FLOAT_KEYS:
            np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-5,
                                       err_msg=key)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=key)


def _options(crop_size, flip_probability=0.5):
    return sample_generator.SampleOptions(
        crop_size=crop_size, thing_ids=CITYSCAPES.class_has_instances_list,
        label_divisor=CITYSCAPES.panoptic_label_divisor,
        ignore_label=CITYSCAPES.ignore_label, sigma=8.0,
        small_instance_threshold=4096, small_instance_weight=3.0,
        flip_probability=flip_probability)


MINI_CASES = [('alpha_000000_000003', 'val-00000-of-00010.tfrecord'),
              ('beta_000000_000004', 'val-00001-of-00010.tfrecord')]


@pytest.mark.parametrize('name,shard', MINI_CASES)
@pytest.mark.parametrize('is_training', [False, True])
def test_mini_matches_deeplab2_eager(fixtures_dir, name, shard, is_training):
    """Cases b (eval) and c (training, scale 1, flip off)."""
    decoded = _decoded(fixtures_dir / 'data' / 'tfrecord' / MINI / shard)
    sample = sample_generator.generate_sample(
        decoded, _options((257, 513), flip_probability=0.0), is_training)
    case = ('c_trainnoaug_' if is_training else 'b_eval_') + name
    reference = _reference(fixtures_dir, case)
    _assert_matches(sample, reference)
    if not is_training:
        assert sample[common.IMAGE_NAME].numpy().decode() == name
    else:
        assert common.RESIZED_IMAGE not in sample


def test_mini_matches_deeplab2_in_tf_data(fixtures_dir):
    name, shard = MINI_CASES[0]
    options = _options((257, 513))
    dataset = _records(fixtures_dir / 'data' / 'tfrecord' / MINI / shard).map(
        _parse).map(lambda d: sample_generator.generate_sample(
            d, options, False))
    sample = next(iter(dataset))
    assert sample[common.IMAGE].shape == (257, 513, 3)
    _assert_matches(sample, _reference(fixtures_dir, 'b_eval_' + name))


def _testdata(fixtures_dir):
    return _decoded(fixtures_dir / 'data' / 'tfrecord' /
                    'cityscapes_panoptic_dummy.tfrecord')


def test_testdata_eval_matches_deeplab2(fixtures_dir):
    sample = sample_generator.generate_sample(
        _testdata(fixtures_dir), _options((800, 800)), False)
    _assert_matches(sample, _reference(fixtures_dir, 'a_testdata_eval'))


@pytest.mark.parametrize('in_tf_data', [False, True])
def test_testdata_train_matches_deeplab2_given_its_crop(fixtures_dir,
                                                       in_tf_data):
    """DeepLab2's seeded crop was at (4, 22) and flipped; replay it."""
    layout = preprocessing.TrainingLayout(
        pad_offset=(0, 0), crop_offset=(4, 22), flip=True)
    options = _options((769, 769))
    decoded = _testdata(fixtures_dir)

    def generate(d):
        return sample_generator.generate_sample(d, options, True,
                                                layout=layout)

    if in_tf_data:
        sample = next(iter(tf.data.Dataset.from_tensors(decoded).map(
            generate)))
    else:
        sample = generate(decoded)
    # thing_id_* (MaX-DeepLab annotations) are not implemented.
    _assert_matches(sample, _reference(fixtures_dir, 'a_testdata_train'),
                    skip=('thing_id_mask_gt', 'thing_id_class_gt'))


def test_random_training_sample_in_tf_data():
    image = tf.random.uniform([40, 60, 3], maxval=256, dtype=tf.int32)
    label = tf.where(tf.range(60)[tf.newaxis, :, tf.newaxis] < 30, 13001,
                     tf.fill([40, 60, 1], 2000))
    decoded = {'image': tf.cast(image, tf.uint8), 'label': label,
               'image_name': tf.constant('x')}
    options = dataclasses.replace(
        _options((33, 33)), min_scale_factor=0.5, max_scale_factor=2.0,
        scale_factor_step_size=0.25)
    dataset = tf.data.Dataset.from_tensors(decoded).repeat(3).map(
        lambda d: sample_generator.generate_sample(d, options, True))
    for sample in dataset:
        assert sample[common.IMAGE].shape == (33, 33, 3)
        assert sample[common.GT_INSTANCE_REGRESSION_KEY].shape == (33, 33, 2)
        assert float(tf.reduce_max(sample[common.GT_INSTANCE_CENTER_KEY])) \
            in (0.0, 1.0)


def _dataset_options(text):
    return text_format.Parse(text, dataset_pb2.DatasetOptions())


def test_options_from_dataset_options():
    proto = _dataset_options("""
        dataset: "cityscapes_panoptic" crop_size: 1025 crop_size: 2049
        min_resize_value: 0 max_resize_value: 0 resize_factor: 0
        sigma: 8 increase_small_instance_weights: true
        small_instance_threshold: 4096 small_instance_weight: 3.0
        augmentations { min_scale_factor: 0.5 max_scale_factor: 2.0
                        scale_factor_step_size: 0.1 }""")
    options = sample_generator.SampleOptions.from_dataset_options(
        proto, CITYSCAPES)
    assert options.crop_size == (1025, 2049)
    assert options.min_resize_value is None
    assert options.max_resize_value is None
    assert options.resize_factor is None
    assert options.thing_ids == tuple(range(11, 19))
    assert (options.label_divisor, options.ignore_label) == (1000, 255)
    assert (options.small_instance_threshold,
            options.small_instance_weight) == (4096, 3.0)
    assert (options.min_scale_factor, options.max_scale_factor) == (0.5, 2.0)
    assert options.scale_factor_step_size == pytest.approx(0.1)
    unweighted = sample_generator.SampleOptions.from_dataset_options(
        _dataset_options('crop_size: 5 crop_size: 7 max_resize_value: 5'),
        CITYSCAPES)
    assert unweighted.small_instance_threshold == 0
    assert unweighted.max_resize_value == (5, 5)


@pytest.mark.parametrize('text,field', [
    ('augmentations { panoptic_copy_paste { panoptic_copy_paste_scale: 1 } }',
     'panoptic_copy_paste'),
    ('use_two_frames: true', 'use_two_frames'),
    ('use_next_frame: true', 'use_next_frame'),
    ('thing_id_mask_annotations: true', 'thing_id_mask_annotations'),
])
def test_unsupported_options_are_named(text, field):
    proto = _dataset_options('crop_size: 5 crop_size: 5 ' + text)
    with pytest.raises(ValueError, match=f'{field}.*not supported: .*'
                       'not implemented here'):
        sample_generator.SampleOptions.from_dataset_options(proto, CITYSCAPES)


def test_autoaugment_policy_is_read_and_checked_at_set_up():
    name = 'simple_classification_policy_magnitude_scale_0.2'
    options = sample_generator.SampleOptions.from_dataset_options(
        _dataset_options('crop_size: 5 crop_size: 5 augmentations { '
                         f'autoaugment_policy_name: "{name}" }}'),
        CITYSCAPES)
    assert options.autoaugment_policy == name
    with pytest.raises(ValueError, match='autoaugment_policy_name: Unknown '
                       'AutoAugment policy .*simple_classification_policy'):
        sample_generator.SampleOptions.from_dataset_options(
            _dataset_options('crop_size: 5 crop_size: 5 augmentations { '
                             'autoaugment_policy_name: "imagenet" }'),
            CITYSCAPES)


def test_bad_crop_size_is_named():
    with pytest.raises(ValueError, match='crop_size'):
        sample_generator.SampleOptions.from_dataset_options(
            _dataset_options('crop_size: 5'), CITYSCAPES)


def test_thing_id_annotations_match_deeplab2(fixtures_dir):
    layout = preprocessing.TrainingLayout((0, 0), (4, 22), True)
    _, _, label = sample_generator.preprocess(
        _testdata(fixtures_dir), _options((769, 769)), True, layout=layout)
    mask, classes = targets.thing_id_mask_and_class(
        label, label_divisor=1000, ignore_label=255,
        thing_ids=CITYSCAPES.class_has_instances_list, max_thing_id=128)
    reference = _reference(fixtures_dir, 'a_testdata_train')
    _assert_matches({'thing_id_mask_gt': mask, 'thing_id_class_gt': classes},
                    reference, skip=set(reference) - {'thing_id_mask_gt',
                                                      'thing_id_class_gt'})


def test_eval_sample_without_targets_keeps_what_the_evaluator_reads(
        fixtures_dir):
    name, shard = MINI_CASES[0]
    decoded = _decoded(fixtures_dir / 'data' / 'tfrecord' / MINI / shard)
    options = _options((257, 513))
    full = sample_generator.generate_sample(decoded, options, False)
    lean = sample_generator.generate_sample(decoded, options, False,
                                            with_targets=False)
    assert set(lean) == {common.IMAGE, common.RESIZED_IMAGE,
                         common.IMAGE_NAME, common.GT_SIZE_RAW,
                         common.GT_SEMANTIC_RAW, common.GT_PANOPTIC_RAW,
                         common.GT_IS_CROWD_RAW}
    for key, value in lean.items():
        np.testing.assert_array_equal(value, full[key], err_msg=key)
    with pytest.raises(ValueError, match='Training samples need'):
        sample_generator.generate_sample(decoded, options, True,
                                         with_targets=False)
