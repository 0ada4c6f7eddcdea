"""Our COCO converter writes the records the original DeepLab2 wrote.

The reference is DeepLab2's own converter run on a tiny synthetic
COCO-panoptic dataset, once per --treat_crowd_as_ignore value
(fixtures/data/coco_mini/README.md says what it covers: a grey JPEG that
must be saved again as RGB JPEG, crowds, class 80/81 edges, shuffled
segments_info, a PNG segment that segments_info lacks). We convert the same
raw folder and compare as that README defines equality: parsed Examples
with the same 8 features, each of the same type and exactly the same value
(raw record bytes are not compared: protobuf map order varies run to run),
in the same shard names, one image per shard in sorted order.

Each flag value is converted once per module: crowd-as-void in this process
with two spawned workers (so the warning about the lacking segment must
travel back from a worker to be captured here), crowd-kept through the
script scripts/build_coco_data.py with its default splits.
"""

import hashlib
import io
import logging
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab2 import common
from deeplab2 import panoptic_png
from deeplab2.data import coco
from deeplab2.data import tfrecord

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = {common.KEY_ENCODED_IMAGE: 'bytes_list',
        common.KEY_IMAGE_FILENAME: 'bytes_list',
        common.KEY_IMAGE_FORMAT: 'bytes_list',
        common.KEY_IMAGE_HEIGHT: 'int64_list',
        common.KEY_IMAGE_WIDTH: 'int64_list',
        common.KEY_IMAGE_CHANNELS: 'int64_list',
        common.KEY_ENCODED_LABEL: 'bytes_list',
        common.KEY_LABEL_FORMAT: 'bytes_list'}
SPLIT_SIZES = {'train': 4, 'val': 3}
NUM_SHARDS = 1000  # DeepLab2's; the shard names carry it.
# The PNG segment of train image 000000000034 that its segments_info lacks
# (fixture manifest.json: `unlisted`, a 10x20 rectangle).
UNLISTED_STEM, UNLISTED_ID, UNLISTED_PIXELS = '000000000034', 8716290, 200
GREY_STEM = '000000000025'


def _variant(treat_crowd_as_ignore: bool) -> str:
    return f'crowd_as_ignore_{str(treat_crowd_as_ignore).lower()}'


class _Captured(logging.Handler):
    """Keeps the messages of the records logged while attached to root."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _convert_here(coco_root, output_dir):
    root_logger = logging.getLogger()
    captured, level = _Captured(), root_logger.level
    root_logger.addHandler(captured)
    root_logger.setLevel(logging.WARNING)
    try:
        coco.convert_coco(str(coco_root), str(output_dir),
                          treat_crowd_as_ignore=True, num_workers=2,
                          show_progress=False)
    finally:
        root_logger.removeHandler(captured)
        root_logger.setLevel(level)
    return captured.messages


def _convert_with_script(coco_root, output_dir):
    # Default --splits and --num_shards, as a user would run it; one worker
    # keeps it cheap (the other flag value covers the worker pool).
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / 'scripts' / 'build_coco_data.py'),
         f'--coco_root={coco_root}', f'--output_dir={output_dir}',
         '--notreat_crowd_as_ignore', '--num_workers=1'],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines()
            if 'segments_info' in line]


@pytest.fixture(scope='module')
def coco_mini(fixtures_dir) -> pathlib.Path:
    return fixtures_dir / 'data' / 'coco_mini'


@pytest.fixture(scope='module', params=[True, False],
                ids=['crowd_as_ignore_true', 'crowd_as_ignore_false'])
def converted(request, coco_mini, fixtures_dir, tmp_path_factory):
    """(our output dir, DeepLab2's dir, warnings logged), once per flag."""
    treat_crowd_as_ignore = request.param
    output_dir = tmp_path_factory.mktemp(_variant(treat_crowd_as_ignore))
    convert = _convert_here if treat_crowd_as_ignore else _convert_with_script
    warnings = convert(coco_mini, output_dir)
    reference_dir = (fixtures_dir / 'data' / 'tfrecord' / 'coco_mini' /
                     _variant(treat_crowd_as_ignore))
    return output_dir, reference_dir, warnings


def _blob(value: bytes):
    # Short values stay readable; a blob shows as length + sha256, so a
    # mismatch is reported without dumping 100 kB (still exact equality).
    if len(value) <= 64:
        return value
    return f'{len(value)} bytes, sha256 {hashlib.sha256(value).hexdigest()}'


def _features(example) -> dict:
    """key -> (value type, values) of a parsed tf.train.Example."""
    features = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof('kind')
        values = list(getattr(feature, kind).value) if kind else []
        if kind == 'bytes_list':
            values = [_blob(value) for value in values]
        features[key] = (kind, values)
    return features


def _records(path) -> list[dict]:
    return [_features(example) for example in tfrecord.read_examples(path)]


def test_records_equal_deeplab2s(converted):
    output_dir, reference_dir, _ = converted
    reference_shards = sorted(os.listdir(reference_dir))
    assert len(reference_shards) == sum(SPLIT_SIZES.values())
    for name in reference_shards:
        theirs, = _records(reference_dir / name)
        assert {key: kind for key, (kind, _) in theirs.items()} == KEYS
        ours = _records(output_dir / name)
        assert len(ours) == 1, (name, len(ours))
        # Named per feature: a dict of all eight would hide which differs.
        differing = {key: {'ours': ours[0].get(key), 'deeplab2': value}
                     for key, value in theirs.items()
                     if ours[0].get(key) != value}
        assert not differing, (name, differing)
        assert ours[0].keys() == theirs.keys(), name


def test_shard_names_and_order_as_deeplab2(converted, coco_mini):
    output_dir, reference_dir, _ = converted
    sizes = {entry.name: entry.stat().st_size
             for entry in os.scandir(output_dir)}
    # No test split: it is not asked for (DeepLab2 writes 1000 empty
    # shards for it); every other unused shard is empty, as DeepLab2's.
    assert sorted(sizes) == sorted(
        '%s-%05d-of-%05d.tfrecord' % (split, index, NUM_SHARDS)
        for split in SPLIT_SIZES for index in range(NUM_SHARDS))
    written = sorted(name for name, size in sizes.items() if size)
    assert written == sorted(os.listdir(reference_dir))
    for split, size in SPLIT_SIZES.items():
        stems = [tfrecord.read_examples(
            output_dir / f'{split}-{index:05d}-of-01000.tfrecord')[0]
            .features.feature[common.KEY_IMAGE_FILENAME].bytes_list.value[0]
            for index in range(size)]
        assert stems == sorted(
            path.stem.encode() for path in (coco_mini / f'{split}2017')
            .glob('*.jpg'))


def _image_bytes(shard) -> bytes:
    example, = tfrecord.read_examples(shard)
    return example.features.feature[
        common.KEY_ENCODED_IMAGE].bytes_list.value[0]


def test_grey_jpeg_saved_again_as_rgb_jpeg(converted, coco_mini):
    """DeepLab2 stores RGB JPEGs byte for byte and saves a grey one again as
    RGB JPEG at Pillow's default quality: exact only with the same Pillow
    (the fixture's is 13.0.0)."""
    output_dir, _, _ = converted
    source = coco_mini / 'train2017' / f'{GREY_STEM}.jpg'
    buffer = io.BytesIO()
    with Image.open(source) as image:
        assert image.mode == 'L'
        image.convert('RGB').save(buffer, format='jpeg')
    stored = _image_bytes(output_dir / 'train-00001-of-01000.tfrecord')
    assert stored != source.read_bytes()
    assert stored == buffer.getvalue()
    assert _image_bytes(output_dir / 'train-00000-of-01000.tfrecord') == (
        coco_mini / 'train2017' / '000000000009.jpg').read_bytes()


def test_unlisted_png_segment_is_void_and_warned(converted, coco_mini):
    """DeepLab2 silently leaves a PNG segment that segments_info lacks as
    void; we store the same void, and say so once, naming the PNG, the
    image, the segment id and its pixel count."""
    output_dir, _, warnings = converted
    png = (coco_mini / 'annotations' / 'panoptic_train2017' /
           f'{UNLISTED_STEM}.png')
    assert len(warnings) == 1, warnings
    assert str(png) in warnings[0]
    assert str(coco_mini / 'train2017' / f'{UNLISTED_STEM}.jpg') in (
        warnings[0])
    assert re.search(rf'\b{UNLISTED_ID} \({UNLISTED_PIXELS} pixels\)',
                     warnings[0]), warnings[0]
    segment_ids = panoptic_png.read(str(png))
    example, = tfrecord.read_examples(
        output_dir / 'train-00003-of-01000.tfrecord')
    label = np.frombuffer(example.features.feature[
        common.KEY_ENCODED_LABEL].bytes_list.value[0], '<i4').reshape(
            segment_ids.shape)
    unlisted = segment_ids == UNLISTED_ID
    assert np.count_nonzero(unlisted) == UNLISTED_PIXELS
    assert not label[unlisted].any()


def test_missing_split_folder_fails_before_writing(coco_mini, tmp_path):
    """DeepLab2 always converts test too, writing 1000 empty shards when
    test2017/ is absent; we convert only the splits asked for, and one
    whose folder is missing stops the run before anything is written."""
    output_dir = tmp_path / 'out'
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'COCO image folder not found: {coco_mini / "test2017"}')):
        coco.convert_coco(str(coco_mini), str(output_dir),
                          splits=('train', 'val', 'test'), num_workers=1,
                          show_progress=False)
    assert not output_dir.exists()
