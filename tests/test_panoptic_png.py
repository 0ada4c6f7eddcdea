"""Segment ids <-> RGB colours, and reading panoptic PNGs, checked against
colours worked out by hand from `(s % 256, s // 256 % 256, s // 65536)`."""

import re

import numpy as np
from PIL import Image
import pytest

from deeplab2 import panoptic_png

# Segment id -> its colour, by hand: 258 = 1 * 256 + 2; 65539 = 65536 + 3;
# 2**24 - 1 is the largest id a colour holds.
BY_HAND = {0: (0, 0, 0), 1: (1, 0, 0), 256: (0, 1, 0), 258: (2, 1, 0),
           65539: (3, 0, 1), 2 ** 24 - 1: (255, 255, 255)}


def test_encode_and_decode_by_hand():
    ids = np.array([list(BY_HAND)])
    rgb = panoptic_png.encode(ids)
    assert rgb.dtype == np.uint8
    assert [tuple(c) for c in rgb[0].tolist()] == list(BY_HAND.values())
    decoded = panoptic_png.decode(rgb)
    assert decoded.dtype == np.int32
    assert decoded.tolist() == ids.tolist()
    assert panoptic_png.MAX_SEGMENT_ID == 2 ** 24 - 1


def test_write_then_read(tmp_path):
    ids = np.array([[0, 258], [65539, 2 ** 24 - 1]])
    path = str(tmp_path / 'a.png')
    panoptic_png.write(path, ids)
    assert Image.open(path).getpixel((1, 0)) == (2, 1, 0)
    assert panoptic_png.read(path).tolist() == ids.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ['a.png']


@pytest.mark.parametrize('mode', ['L', 'RGBA'])
def test_non_rgb_png_is_named(tmp_path, mode):
    path = tmp_path / 'grey.png'
    Image.new(mode, (2, 2)).save(path)
    with pytest.raises(ValueError, match=re.escape(
            f'{path} must be RGB, got mode {mode}.')):
        panoptic_png.read(str(path))


def test_truncated_png_is_named(tmp_path):
    path = tmp_path / 'cut.png'
    panoptic_png.write(str(path), np.arange(64 * 64).reshape(64, 64))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError,
                       match=re.escape(f'Cannot read image {path}')):
        panoptic_png.read(str(path))
