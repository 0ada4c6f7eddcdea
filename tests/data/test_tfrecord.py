"""DeepLab2's tf.train.Example layout: our encoder writes it, our decoder
reads DeepLab2's shards (fixtures) eagerly and inside tf.data."""

import io
import json

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2.data import tfrecord

_DUMMY_SHARDS = ('cityscapes_panoptic_dummy.tfrecord',
                 'cityscapes_panoptic_dummy_crowd_as_ignore_true.tfrecord')


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format='PNG')
    return buffer.getvalue()


def _tiny_image(height=5, width=7) -> np.ndarray:
    return (np.arange(height * width * 3) % 251).astype(np.uint8).reshape(
        height, width, 3)


def _check_against_description(decoded: dict, description: dict) -> None:
    """Compares a decoded record with the fixture JSON's description."""
    stats = description['decoded_by_deeplab2_SegmentationDecoder']
    image = decoded[common.IMAGE].numpy()
    label = decoded['label'].numpy()
    assert list(image.shape) == stats['image']['shape']
    assert image.dtype == np.uint8
    assert image.mean() == pytest.approx(stats['image']['mean'], abs=1e-9)
    assert list(label.shape) == stats['label']['shape']
    assert label.dtype == np.int32
    ids, counts = np.unique(label, return_counts=True)
    assert ids.tolist() == stats['label']['unique_panoptic_ids']
    assert counts.tolist() == stats['label']['pixel_counts']
    assert decoded[common.IMAGE_NAME].numpy().decode() == stats['image_name']
    assert int(decoded['height']) == stats['height']
    assert int(decoded['width']) == stats['width']


@pytest.mark.parametrize('shard', _DUMMY_SHARDS)
def test_decodes_deeplab2_testdata_shard(fixtures_dir, shard):
    folder = fixtures_dir / 'data' / 'tfrecord'
    description = json.loads(
        (folder / 'cityscapes_panoptic_dummy.json').read_text())
    records = description[f'tfrecord/{shard}']['records']
    serialized = list(tf.data.TFRecordDataset(str(folder / shard)))
    assert len(serialized) == len(records) == 1
    _check_against_description(tfrecord.decode_example(serialized[0]),
                               records[0])


def test_decodes_deeplab2_mini_shards_inside_tf_data(fixtures_dir):
    folder = fixtures_dir / 'data' / 'tfrecord'
    description = json.loads((folder / 'cityscapes_mini.json').read_text())
    checked = 0
    for name, shard in description.items():
        path = str(fixtures_dir / 'data' / name)
        dataset = tf.data.TFRecordDataset(path).map(tfrecord.decode_example)
        decoded = list(dataset)
        assert len(decoded) == shard['num_records']
        for record, expected in zip(decoded, shard['records']):
            _check_against_description(record, expected)
            checked += 1
    assert checked == 8  # 4 images x 2 crowd settings


def test_encode_matches_deeplab2_example(fixtures_dir):
    path = fixtures_dir / 'data' / 'tfrecord' / _DUMMY_SHARDS[0]
    reference = tfrecord.read_examples(str(path))[0]
    decoded = tfrecord.decode_example(reference.SerializeToString())
    feature = reference.features.feature
    ours = tfrecord.encode_example(
        feature[common.KEY_ENCODED_IMAGE].bytes_list.value[0],
        'dummy_000000_000000', 'png', 800, 800,
        decoded['label'].numpy()[..., 0])
    assert ours == reference


def test_round_trip_keeps_rgb_bytes_and_label():
    image = _tiny_image()
    image_bytes = _png_bytes(image)
    label = np.arange(35, dtype=np.int32).reshape(5, 7) * 1000 + 3
    example = tfrecord.encode_example(image_bytes, 'a_b', 'png', 5, 7, label)
    feature = example.features.feature
    assert set(feature) == {
        common.KEY_ENCODED_IMAGE, common.KEY_IMAGE_FILENAME,
        common.KEY_IMAGE_FORMAT, common.KEY_IMAGE_HEIGHT,
        common.KEY_IMAGE_WIDTH, common.KEY_IMAGE_CHANNELS,
        common.KEY_ENCODED_LABEL, common.KEY_LABEL_FORMAT}
    assert feature[common.KEY_ENCODED_IMAGE].bytes_list.value[0] == image_bytes
    assert feature[common.KEY_LABEL_FORMAT].bytes_list.value[0] == b'raw'
    assert feature[common.KEY_ENCODED_LABEL].bytes_list.value[0] == (
        label.astype('<i4').tobytes())
    assert feature[common.KEY_IMAGE_CHANNELS].int64_list.value[0] == 3
    serialized = example.SerializeToString()
    eager = tfrecord.decode_example(serialized)
    graph = next(iter(tf.data.Dataset.from_tensors(serialized).map(
        tfrecord.decode_example)))
    for decoded in (eager, graph):
        np.testing.assert_array_equal(decoded[common.IMAGE], image)
        np.testing.assert_array_equal(decoded['label'], label[..., None])
        assert decoded[common.IMAGE_NAME].numpy() == b'a_b'
        assert decoded['label'].dtype == tf.int32


def test_grey_image_is_reencoded_as_rgb_and_unlabeled_has_six_keys():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    example = tfrecord.encode_example(_png_bytes(grey), 'g', 'png', 3, 4)
    assert len(example.features.feature) == 6
    decoded = tfrecord.decode_example(example.SerializeToString(),
                                      decode_label=False)
    assert 'label' not in decoded
    np.testing.assert_array_equal(decoded[common.IMAGE],
                                  np.repeat(grey[..., None], 3, axis=-1))
    with Image.open(io.BytesIO(example.features.feature[
            common.KEY_ENCODED_IMAGE].bytes_list.value[0])) as image:
        assert image.mode == 'RGB'


def test_png_semantic_label_round_trip():
    label = np.array([[0, 1, 2], [255, 18, 7]], np.uint8)
    example = tfrecord.encode_example(_png_bytes(_tiny_image(2, 3)), 's',
                                      'png', 2, 3,
                                      semantic_label_png=_png_bytes(label))
    feature = example.features.feature
    assert feature[common.KEY_LABEL_FORMAT].bytes_list.value[0] == b'png'
    decoded = tfrecord.decode_example(example.SerializeToString(),
                                      is_panoptic=False)
    np.testing.assert_array_equal(decoded['label'], label[..., None])


def test_label_of_wrong_byte_size_names_the_image():
    example = tfrecord.encode_example(_png_bytes(_tiny_image()), 'city_0001',
                                      'png', 5, 7)
    example.features.feature[common.KEY_ENCODED_LABEL].bytes_list.value.append(
        b'\0' * 12)
    serialized = example.SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match='city_0001'):
        tfrecord.decode_example(serialized)
    dataset = tf.data.Dataset.from_tensors(serialized).map(
        tfrecord.decode_example)
    with pytest.raises(tf.errors.InvalidArgumentError, match='city_0001'):
        list(dataset)


@pytest.mark.parametrize('kwargs, message', [
    (dict(image_format='gif'), 'unsupported image format'),
    (dict(height=6), 'image is 5x7'),
    (dict(panoptic_label=np.zeros((5, 6), np.int32)), 'label shape'),
    (dict(image_bytes=b'\x89PNG\r\n\x1a\nbroken'), 'Cannot decode image'),
])
def test_encode_errors_name_the_file(kwargs, message):
    arguments = dict(image_bytes=_png_bytes(_tiny_image()),
                     filename='frankfurt_7', image_format='png', height=5,
                     width=7)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message) as error:
        tfrecord.encode_example(**arguments)
    assert 'frankfurt_7' in str(error.value)


def test_records_missing_a_feature_are_found_per_file(tmp_path):
    example = tfrecord.encode_example(
        _png_bytes(_tiny_image()), 'x', 'png', 5, 7,
        np.zeros((5, 7), np.int32))
    unlabeled = tf.train.Example()
    unlabeled.CopyFrom(example)
    del unlabeled.features.feature[common.KEY_ENCODED_LABEL]
    paths = [str(tmp_path / name) for name in ('a', 'b', 'c')]
    for path, records in zip(paths, [[example, example],
                                     [example, unlabeled, unlabeled],
                                     [b'not an Example']]):
        with tf.io.TFRecordWriter(path) as writer:
            for record in records:
                writer.write(record if isinstance(record, bytes)
                             else record.SerializeToString())
    assert tfrecord.records_missing_feature(
        paths, common.KEY_ENCODED_LABEL) == [(paths[1], 1), (paths[2], 0)]
    assert tfrecord.records_missing_feature(
        paths[:1], common.KEY_ENCODED_IMAGE) == []


def test_missing_feature_key_is_read_from_tf_error():
    serialized = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        tfrecord.decode_example(serialized)
    assert tfrecord.missing_feature_key(error.value.message) in (
        common.KEY_ENCODED_IMAGE, common.KEY_IMAGE_FILENAME,
        common.KEY_IMAGE_FORMAT, common.KEY_IMAGE_HEIGHT,
        common.KEY_IMAGE_WIDTH, common.KEY_IMAGE_CHANNELS,
        common.KEY_ENCODED_LABEL)
    assert tfrecord.missing_feature_key('something else') is None
