"""Our decoder and eval sample generator reproduce DeepLab2's COCO outputs.

The references were written by the original DeepLab2 from a tiny synthetic
COCO-panoptic dataset (fixtures/data/coco_mini/README.md): its converter's
TFRecords, a decoded summary of every record (coco_mini.json) and the eval
targets its input pipeline produced under the eval_dataset_options of
configs/coco/panoptic_deeplab/resnet50_os32.textproto.

Unlike the Cityscapes parity test, these inputs go through our own decoder
(deeplab2.data.tfrecord), and the options are read from the COCO config, so
option reading, decoding (TF's default INTEGER_FAST JPEG DCT), the
upscaling resize_to_range, align-corners resizes, padding and the targets
are all covered. Every comparison is exact, the image included: its
float32 bytes are checked by the sha256 DeepLab2's run recorded.
"""

import gzip
import hashlib
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.data import input_pipeline
from deeplab2.data import sample_generator
from deeplab2.data import tfrecord

REPO = pathlib.Path(__file__).resolve().parents[2]
COCO_CONFIG = REPO / 'configs' / 'coco' / 'panoptic_deeplab' / \
    'resnet50_os32.textproto'
RECORDS = 'tfrecord/coco_mini'
# DeepLab2's targets were made from the records that keep crowd pixels.
TARGET_VARIANT = 'crowd_as_ignore_false'
VARIANTS = ('crowd_as_ignore_true', 'crowd_as_ignore_false')
SHARDS = tuple([f'train-{i:05d}-of-01000.tfrecord' for i in range(4)] +
               [f'val-{i:05d}-of-01000.tfrecord' for i in range(3)])
# Val shard i holds VAL_STEMS[i] (one image per shard, sorted).
VAL_STEMS = ('000000000139', '000000000285', '000000000632')


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope='module')
def coco_data(fixtures_dir) -> pathlib.Path:
    return fixtures_dir / 'data'


@pytest.fixture(scope='module')
def summary(coco_data) -> dict:
    with open(coco_data / RECORDS / 'coco_mini.json') as file:
        return json.load(file)


@pytest.fixture(scope='module')
def eval_config(coco_data):
    """The COCO config as a user runs it: only the val file pattern set."""
    pattern = coco_data / RECORDS / TARGET_VARIANT / 'val-*.tfrecord'
    return config_lib.load_config(
        COCO_CONFIG, [f'eval_dataset_options.file_pattern={pattern}'])


@pytest.fixture(scope='module')
def descriptor(eval_config):
    return datasets.get_dataset_descriptor(
        eval_config.eval_dataset_options.dataset)


@pytest.fixture(scope='module')
def eval_options(eval_config, descriptor):
    return sample_generator.SampleOptions.from_dataset_options(
        eval_config.eval_dataset_options, descriptor)


def _decode(path: pathlib.Path, descriptor) -> dict:
    """Our decoder on the shard's only record, as the input pipeline calls
    it for this dataset."""
    records = list(tf.data.TFRecordDataset(str(path)))
    assert len(records) == 1
    return tfrecord.decode_example(records[0], decode_label=True,
                                   is_panoptic=descriptor.has_instances)


def test_options_read_from_coco_config(eval_options):
    """The settings DeepLab2 ran with (meta.json "settings")."""
    assert eval_options.crop_size == (641, 641)
    assert eval_options.min_resize_value == (641, 641)
    assert eval_options.max_resize_value == (641, 641)
    assert eval_options.resize_factor is None
    assert eval_options.sigma == 8.0
    assert (eval_options.small_instance_threshold,
            eval_options.small_instance_weight) == (4096, 3.0)
    assert (eval_options.label_divisor, eval_options.ignore_label) == (256, 0)
    assert eval_options.thing_ids == tuple(range(1, 81))
    assert eval_options.has_instances


@pytest.mark.parametrize('shard', SHARDS)
@pytest.mark.parametrize('variant', VARIANTS)
def test_decoder_matches_deeplab2(coco_data, summary, descriptor, variant,
                                  shard):
    relative = f'{RECORDS}/{variant}/{shard}'
    [record] = summary['shards'][relative]['records']
    expected = record['decoded_by_deeplab2_SegmentationDecoder']
    decoded = _decode(coco_data / relative, descriptor)

    assert decoded[common.IMAGE_NAME].numpy().decode() == \
        expected['image_name']
    assert (int(decoded['height']), int(decoded['width'])) == \
        (expected['height'], expected['width'])

    image = decoded[common.IMAGE].numpy()
    assert image.dtype == np.uint8
    assert list(image.shape) == expected['image']['shape']
    # Equal only with TF's default JPEG DCT (INTEGER_FAST), not Pillow's.
    assert _sha256(image) == expected['image']['sha256_uint8_hwc']

    label = decoded['label'].numpy()
    assert label.dtype == np.int32
    assert list(label.shape) == expected['label']['shape']
    assert _sha256(label.astype('<i4')) == \
        expected['label']['sha256_int32_le_c_order']
    ids, counts = np.unique(label, return_counts=True)
    assert ids.tolist() == expected['label']['unique_panoptic_ids']
    assert counts.tolist() == expected['label']['pixel_counts']


def _reference(coco_data, stem):
    folder = coco_data / 'targets' / 'coco_mini' / f'eval_{stem}'
    arrays = {path.name[:-len('.npy.gz')]: np.load(gzip.open(path))
              for path in folder.glob('*.npy.gz')}
    with open(folder / 'meta.json') as file:
        meta = json.load(file)
    return arrays, meta


def _assert_matches_deeplab2(sample, coco_data, stem):
    arrays, meta = _reference(coco_data, stem)
    tensors = meta['tensors']
    # The same keys: every tensor DeepLab2 output, plus the image name.
    assert set(sample) == set(tensors) | {common.IMAGE_NAME}
    assert sample[common.IMAGE_NAME].numpy().decode() == stem
    actual = {key: np.asarray(value) for key, value in sample.items()
              if key != common.IMAGE_NAME}
    # Saved arrays first: on a mismatch they show where and by how much.
    # instance_center_gt included: our Gaussian is float64 cast to float32,
    # as DeepLab2's, so it is compared exactly too.
    np.testing.assert_array_equal(actual[common.IMAGE][::8, ::8],
                                  arrays.pop('image_every8th'),
                                  err_msg='image[::8, ::8]', strict=True)
    for key, expected in arrays.items():
        np.testing.assert_array_equal(actual[key], expected, err_msg=key,
                                      strict=True)
    # Then every tensor by its recorded bytes: this is the exact check of
    # `image` (whose unpadded part is (resized - 127.5) + 127.5 in float32,
    # not the resized values) and of `resized_image`, which are not saved.
    for key, facts in tensors.items():
        assert actual[key].dtype == np.dtype(facts['dtype']), key
        assert list(actual[key].shape) == facts['shape'], key
        assert _sha256(actual[key]) == facts['sha256_of_c_order_bytes'], key


@pytest.mark.parametrize('index,stem', list(enumerate(VAL_STEMS)))
def test_eval_sample_matches_deeplab2_eager(coco_data, descriptor,
                                            eval_options, index, stem):
    decoded = _decode(coco_data / RECORDS / TARGET_VARIANT /
                      f'val-{index:05d}-of-01000.tfrecord', descriptor)
    sample = sample_generator.generate_sample(decoded, eval_options,
                                              is_training=False)
    _assert_matches_deeplab2(sample, coco_data, stem)


def test_eval_pipeline_matches_deeplab2_in_tf_data(coco_data, eval_config,
                                                   descriptor):
    """The eval input pipeline (graph mode inside Dataset.map), as
    DeepLab2's targets were made: the config's file pattern, batch 1. The
    evaluator's own pipeline (build_eval_dataset) leaves the training
    targets out; what it keeps is equal too."""
    dataset = input_pipeline.build_dataset(
        eval_config.eval_dataset_options, is_training=False,
        descriptor=descriptor)
    batches = list(dataset)
    assert len(batches) == len(VAL_STEMS)
    for batch, stem in zip(batches, VAL_STEMS):
        sample = {key: value[0] for key, value in batch.items()}
        _assert_matches_deeplab2(sample, coco_data, stem)

    files, dataset = input_pipeline.build_eval_dataset(eval_config,
                                                       descriptor)
    assert [pathlib.Path(path).name for path in files] == [
        f'val-{index:05d}-of-01000.tfrecord' for index in range(3)]
    evaluated = list(dataset)
    assert len(evaluated) == len(VAL_STEMS)
    for batch, full in zip(evaluated, batches):
        assert set(batch) == {
            common.IMAGE, common.RESIZED_IMAGE, common.IMAGE_NAME,
            common.GT_SIZE_RAW, common.GT_SEMANTIC_RAW,
            common.GT_PANOPTIC_RAW, common.GT_IS_CROWD_RAW}
        for key, value in batch.items():
            np.testing.assert_array_equal(value.numpy(), full[key].numpy(),
                                          err_msg=key, strict=True)
