"""tf.train.Example encoding and decoding with DeepLab2's feature keys.

One Example holds one image and, optionally, its label. The layout is
DeepLab2's, so shards written by either implementation read in the other:
the image file bytes as they are (re-encoded only when not RGB), its name,
format, height, width and channel count (always 3), and the panoptic label
as raw little-endian int32 bytes in C order with format 'raw'. A semantic
label may instead be stored as an encoded PNG with format 'png'.
"""

import io
import re
from typing import Iterable, Optional, Sequence, Union

from google.protobuf import message as message_lib
import numpy as np
from PIL import Image
import tensorflow as tf

from deeplab2 import common

RAW_LABEL_FORMAT = 'raw'
PNG_LABEL_FORMAT = 'png'
_IMAGE_FORMATS = ('jpeg', 'jpg', 'png')
_PIL_FORMATS = {'jpeg': 'JPEG', 'jpg': 'JPEG', 'png': 'PNG'}
_NUM_CHANNELS = 3
# Files named at most in a missing-feature message.
_MAX_LISTED = 20


def _bytes_feature(value: Union[bytes, str]) -> tf.train.Feature:
    if isinstance(value, str):
        value = value.encode()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _rgb_image_bytes(image_bytes: bytes, image_format: str, filename: str,
                     verify_image: bool) -> tuple[bytes, int, int]:
    """Returns (RGB-encoded bytes, height, width).

    RGB files are kept byte for byte (DeepLab2 does the same, and it keeps a
    lossy JPEG from being re-compressed); grey, palette or RGBA files are
    converted, since readers decode with channels=3 and expect plain RGB.
    """
    try:
        image = Image.open(io.BytesIO(image_bytes))
        if verify_image or image.mode != 'RGB':
            image.load()  # A header-only open lets a truncated file through.
    except Exception as error:  # PIL raises many types for bad data.
        raise ValueError(
            f'Cannot decode image {filename!r}: {error}') from error
    if image.mode != 'RGB':
        buffer = io.BytesIO()
        image.convert('RGB').save(buffer, format=_PIL_FORMATS[image_format])
        image_bytes = buffer.getvalue()
    width, height = image.size
    return image_bytes, height, width


def _label_feature(panoptic_label, semantic_label_png, height, width,
                   filename) -> tuple[bytes, str]:
    if panoptic_label is not None and semantic_label_png is not None:
        raise ValueError(
            f'{filename!r}: give a panoptic or a semantic label, not both.')
    if semantic_label_png is not None:
        label_size = Image.open(io.BytesIO(semantic_label_png)).size[::-1]
        if label_size != (height, width):
            raise ValueError(
                f'{filename!r}: label size {label_size} differs from image '
                f'size {(height, width)}.')
        return semantic_label_png, PNG_LABEL_FORMAT
    label = np.asarray(panoptic_label)
    if label.shape != (height, width):
        raise ValueError(
            f'{filename!r}: panoptic label shape {label.shape} differs from '
            f'image size {(height, width)}.')
    if label.dtype != np.int32:
        if np.any(label < np.iinfo(np.int32).min) or np.any(
                label > np.iinfo(np.int32).max):
            raise ValueError(f'{filename!r}: panoptic label exceeds int32.')
    # '<i4' pins little-endian whatever the host, as DeepLab2's readers expect.
    return label.astype('<i4', copy=False).tobytes(order='C'), RAW_LABEL_FORMAT


def encode_example(image_bytes: bytes,
                   filename: str,
                   image_format: str,
                   height: int,
                   width: int,
                   panoptic_label: Optional[np.ndarray] = None,
                   *,
                   semantic_label_png: Optional[bytes] = None,
                   verify_image: bool = True) -> tf.train.Example:
    """Builds DeepLab2's Example for one image and its label.

    Args:
      image_bytes: the encoded image file.
      filename: image name stored under `image/filename` (DeepLab2 uses the
        file name without its suffix, e.g. `aachen_000000_000019`).
      image_format: 'png', 'jpeg' or 'jpg'.
      height, width: the image size; checked against the decoded image.
      panoptic_label: int [height, width] map `semantic * divisor +
        instance`, stored as raw int32; None for an unlabeled (test) image.
      semantic_label_png: alternatively, an encoded single-channel PNG of
        semantic labels, stored as is with format 'png'.
      verify_image: decode the whole image to catch corrupt data; callers
        that already decoded it (the converters' workers) pass False.

    Raises:
      ValueError: naming `filename`, for an unknown format, an undecodable
        image, or a size that does not match.
    """
    if image_format not in _IMAGE_FORMATS:
        raise ValueError(f'{filename!r}: unsupported image format '
                         f'{image_format!r}; expected one of {_IMAGE_FORMATS}.')
    image_bytes, real_height, real_width = _rgb_image_bytes(
        image_bytes, image_format, filename, verify_image)
    if (real_height, real_width) != (height, width):
        raise ValueError(
            f'{filename!r}: image is {real_height}x{real_width}, but '
            f'{height}x{width} was given.')
    feature = {
        common.KEY_ENCODED_IMAGE: _bytes_feature(image_bytes),
        common.KEY_IMAGE_FILENAME: _bytes_feature(filename),
        common.KEY_IMAGE_FORMAT: _bytes_feature(image_format),
        common.KEY_IMAGE_HEIGHT: _int64_feature(height),
        common.KEY_IMAGE_WIDTH: _int64_feature(width),
        common.KEY_IMAGE_CHANNELS: _int64_feature(_NUM_CHANNELS),
    }
    if panoptic_label is not None or semantic_label_png is not None:
        label_bytes, label_format = _label_feature(
            panoptic_label, semantic_label_png, height, width, filename)
        feature[common.KEY_ENCODED_LABEL] = _bytes_feature(label_bytes)
        feature[common.KEY_LABEL_FORMAT] = _bytes_feature(label_format)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _features_to_parse(decode_label: bool) -> dict:
    string_feature = tf.io.FixedLenFeature((), tf.string)
    int_feature = tf.io.FixedLenFeature((), tf.int64)
    features = {
        common.KEY_ENCODED_IMAGE: string_feature,
        common.KEY_IMAGE_FILENAME: string_feature,
        common.KEY_IMAGE_FORMAT: string_feature,
        common.KEY_IMAGE_HEIGHT: int_feature,
        common.KEY_IMAGE_WIDTH: int_feature,
        common.KEY_IMAGE_CHANNELS: int_feature,
    }
    if decode_label:
        features[common.KEY_ENCODED_LABEL] = string_feature
        # Optional: only a PNG label's reader checks it.
        features[common.KEY_LABEL_FORMAT] = tf.io.FixedLenFeature(
            (), tf.string, default_value='')
    return features


def _decode_raw_label(encoded: tf.Tensor, height: tf.Tensor,
                      width: tf.Tensor, image_name: tf.Tensor) -> tf.Tensor:
    """Raw int32 bytes -> int32 [height, width, 1], checked for size."""
    expected_bytes = height * width * 4
    actual_bytes = tf.cast(tf.strings.length(encoded), tf.int64)
    check = tf.debugging.Assert(
        tf.equal(actual_bytes, expected_bytes),
        ['Raw label of image', image_name, 'has', actual_bytes,
         'bytes; expected height*width*4 =', expected_bytes,
         '(is it a raw int32 panoptic label?)'])
    with tf.control_dependencies([check]):
        flat_label = tf.io.decode_raw(encoded, out_type=tf.int32)
    return tf.reshape(flat_label, tf.stack([height, width, 1]))


def _decode_png_label(encoded: tf.Tensor, label_format: tf.Tensor,
                      height: tf.Tensor, width: tf.Tensor,
                      image_name: tf.Tensor) -> tf.Tensor:
    """PNG class ids -> int32 [H, W, 1], checked for size. A raw (panoptic)
    label fails naming the image: PNG decoding would only say 'Unknown
    image file format', naming neither the record nor the cause."""
    format_check = tf.debugging.Assert(
        tf.not_equal(label_format, RAW_LABEL_FORMAT),
        ['Label of image', image_name, 'is a raw panoptic label, but the '
         'dataset is semantic-only and reads PNG class-id labels (does its '
         'dataset spec lack panoptic_label_divisor?)'])
    with tf.control_dependencies([format_check]):
        label = tf.io.decode_image(encoded, channels=1,
                                   expand_animations=False)
    size = tf.cast(tf.shape(label)[:2], tf.int64)
    size_check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(size, tf.stack([height, width]))),
        ['PNG label of image', image_name, 'is', size, '; the image is',
         tf.stack([height, width])])
    with tf.control_dependencies([size_check]):
        label = tf.cast(label, tf.int32)
    label.set_shape([None, None, 1])
    return label


def decode_example(serialized: tf.Tensor,
                   decode_label: bool = True,
                   is_panoptic: bool = True) -> dict:
    """Parses one serialized Example; pure TF, for use inside `tf.data`.

    Args:
      serialized: scalar tf.string, one record.
      decode_label: also decode the label (False for unlabeled test shards).
      is_panoptic: the label is raw int32 (DeepLab2's panoptic format);
        False reads a PNG semantic label (of a semantic-only dataset:
        `DatasetDescriptor.has_instances` is False), and a record whose
        label format is 'raw' then fails naming the image.

    Returns:
      'image': uint8 [H, W, 3]; 'image_name': tf.string; 'height', 'width':
      int32 scalars; and, when `decode_label`, 'label': int32 [H, W, 1].
      A label whose size does not match the image fails with an
      InvalidArgumentError naming the image; a record lacking a feature
      fails with TF's InvalidArgumentError, whose key `missing_feature_key`
      reads (`records_missing_feature` then finds the files).
    """
    parsed = tf.io.parse_single_example(serialized,
                                        _features_to_parse(decode_label))
    image_name = parsed[common.KEY_IMAGE_FILENAME]
    height = parsed[common.KEY_IMAGE_HEIGHT]
    width = parsed[common.KEY_IMAGE_WIDTH]
    image = tf.io.decode_image(parsed[common.KEY_ENCODED_IMAGE], channels=3,
                               dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    decoded = {
        common.IMAGE: image,
        common.IMAGE_NAME: image_name,
        'height': tf.cast(height, tf.int32),
        'width': tf.cast(width, tf.int32),
    }
    if decode_label:
        encoded = parsed[common.KEY_ENCODED_LABEL]
        decoded['label'] = (
            _decode_raw_label(encoded, height, width, image_name)
            if is_panoptic else _decode_png_label(
                encoded, parsed[common.KEY_LABEL_FORMAT], height, width,
                image_name))
    return decoded


def read_examples(path: str) -> list[tf.train.Example]:
    """All Examples of one TFRecord file, parsed (for tools and tests)."""
    return [tf.train.Example.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


# TF's message when a record lacks a feature parsed without a default.
_MISSING_FEATURE = re.compile(r'Feature: (?P<key>\S+) \(data type: \w+\) is '
                              r'required but could not be found')


def missing_feature_key(error_message: str) -> Optional[str]:
    """The feature key that `decode_example`'s parse error says a record
    lacks, or None when the message is about something else."""
    match = _MISSING_FEATURE.search(error_message)
    return match['key'] if match else None


def records_missing_feature(paths: Iterable[str],
                            key: str) -> list[tuple[str, int]]:
    """(path, index of its first record without `key`) for every file in
    `paths` that has such a record, in order.

    TF's parse error names neither the file nor the record; this rescans
    the files to tell the user which ones to fix. A record that is not a
    tf.train.Example at all counts as lacking the key. An unreadable
    (truncated) file is scanned up to the damage.
    """
    found = []
    for path in paths:
        try:
            for index, record in enumerate(
                    tf.data.TFRecordDataset(path).as_numpy_iterator()):
                if not _has_feature(record, key):
                    found.append((path, index))
                    break
        except tf.errors.DataLossError:
            continue  # Reported as corrupt by the reader, not here.
    return found


def describe_missing_feature(key: str, paths: Sequence[str]) -> str:
    """The message for records among `paths` that lack `key`: the files
    and their first record without it (found by rescanning), and for the
    label the option that does without it."""
    lacking = records_missing_feature(paths, key)
    lines = [f'  {path}: record {index} (the first without it)'
             for path, index in lacking[:_MAX_LISTED]]
    if len(lacking) > _MAX_LISTED:
        lines.append(f'  ... and {len(lacking) - _MAX_LISTED} more files')
    if not lacking:  # E.g. the files changed since the failure.
        lines.append(f'  one of {len(paths)} files: '
                     f'{", ".join(paths[:_MAX_LISTED])}')
    if key == common.KEY_ENCODED_LABEL:
        lines.append('Unlabeled (e.g. test) shards have no label: set '
                     'decode_groundtruth_label: false in their dataset '
                     'options.')
    return (f'The input TFRecords lack the feature {key!r} that decoding '
            'needs:\n' + '\n'.join(lines))


def _has_feature(record: bytes, key: str) -> bool:
    try:
        example = tf.train.Example.FromString(record)
    except message_lib.DecodeError:
        return False
    return key in example.features.feature
