"""The fast RGB PNG decoder against PNGs written by an encoder in this
file (each row's filter chosen, computed straight from the PNG spec's
definitions) and against Pillow reading the same files."""

import concurrent.futures
import io
import struct
import zlib

import numba
import numpy as np
from PIL import Image
import pytest

from deeplab2 import panoptic_png
from deeplab2 import rgb_png_ids


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data)))


def _paeth(left, up, up_left):
    estimate = left + up - up_left
    to_left, to_up = abs(estimate - left), abs(estimate - up)
    to_up_left = abs(estimate - up_left)
    return np.where((to_left <= to_up) & (to_left <= to_up_left), left,
                    np.where(to_up <= to_up_left, up, up_left))


def _filtered(rgb: np.ndarray, filter_types) -> bytes:
    """Scanlines of uint8 [H, W, 3] `rgb`, row y filtered with
    filter_types[y % len]: each byte minus its predictor from the original
    bytes (left = 3 bytes back, up = the row above; zeros off the image)."""
    height, width, _ = rgb.shape
    rows = rgb.reshape(height, 3 * width).astype(np.int32)
    ups = np.concatenate([np.zeros((1, 3 * width), np.int32), rows[:-1]])
    lines = []
    for y in range(height):
        row, up = rows[y], ups[y]
        left = np.concatenate([np.zeros(3, np.int32), row[:-3]])
        up_left = np.concatenate([np.zeros(3, np.int32), up[:-3]])
        filter_type = filter_types[y % len(filter_types)]
        predictor = [np.zeros_like(row), left, up, (left + up) // 2,
                     _paeth(left, up, up_left)][filter_type]
        lines.append(bytes([filter_type])
                     + ((row - predictor) % 256).astype(np.uint8).tobytes())
    return b''.join(lines)


def _png(rgb, filter_types=(0, 1, 2, 3, 4), idat_pieces=1, bit_depth=8,
         colour_type=2, interlace=0, scanlines=None) -> bytes:
    height, width, _ = rgb.shape
    if scanlines is None:
        scanlines = _filtered(rgb, filter_types)
    data = zlib.compress(scanlines)
    cuts = np.linspace(0, len(data), idat_pieces + 1).astype(int)
    header = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type,
                         0, 0, interlace)
    return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header)
            + b''.join(_chunk(b'IDAT', data[a:b])
                       for a, b in zip(cuts[:-1], cuts[1:]))
            + _chunk(b'IEND', b''))


def _ids_by_hand(rgb):
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(
        0, 256, (height, width, 3), dtype=np.uint8)


def _label_like(height, width):
    """Flat regions with edges, as label maps are: most Paeth predictions
    take the flat-row shortcut, the edges the full predictor."""
    y, x = np.mgrid[:height, :width]
    ids = (x // 7) * 300 + (y // 5) * 70000 + ((x + 2 * y) // 11 % 3)
    return panoptic_png.encode(ids)


def _one_channel_varies(channel, height=23, width=31):
    """Two channels flat, one drawn from 0-3: every neighbour comparison
    the predictors make hinges on that channel alone."""
    rgb = np.full((height, width, 3), 200, np.uint8)
    rgb[..., channel] = np.random.default_rng(channel).integers(
        0, 4, (height, width))
    return rgb


@pytest.mark.parametrize('rgb', [
    _noise(37, 29), _label_like(40, 61), _one_channel_varies(0),
    _one_channel_varies(1), _one_channel_varies(2), _noise(1, 1),
    _noise(9, 1), _noise(1, 13)],
    ids=['noise', 'label-like', 'red-varies', 'green-varies', 'blue-varies',
         '1x1', 'one-column', 'one-row'])
@pytest.mark.parametrize('filter_types', [(0,), (1,), (2,), (3,), (4,),
                                          (4, 2, 1, 3, 0)])
def test_every_filter_decodes_as_written_and_as_pillow_reads(rgb,
                                                             filter_types):
    png = _png(rgb, filter_types)
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(png)).convert('RGB')), rgb)
    ids = rgb_png_ids.decode_ids(png)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, _ids_by_hand(rgb))


@pytest.mark.parametrize('dtype', [np.int32, np.int64])
def test_lookup_maps_ids_while_decoding(dtype):
    """Each id s reads as lookup[min(s, len - 1)]: ids past the table take
    its last entry."""
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = [[0, 1, 2, 3], [4, 5, 6, 7], [200, 2, 1, 0]]
    rgb[2, 0, 2] = 1  # id 65536 + 200: far past the table.
    past_the_table = 2 ** 40 if dtype == np.int64 else -5
    lookup = np.array([10, 11, 12, 13, 14, past_the_table], dtype)
    ids = rgb_png_ids.decode_ids(_png(rgb, (4, 1, 2)), lookup)
    assert ids.dtype == dtype
    last = past_the_table
    assert ids.tolist() == [[10, 11, 12, 13], [14, last, last, last],
                            [last, 12, 11, 10]]


def test_panoptic_png_lookup_is_the_same_through_pillow(tmp_path,
                                                        monkeypatch):
    path = str(tmp_path / 'a.png')
    panoptic_png.write(path, _ids_by_hand(_label_like(20, 30)))
    lookup = np.arange(70000, dtype=np.int32) * 3
    fast = panoptic_png.read(path, lookup)
    monkeypatch.setattr(rgb_png_ids, 'decode_ids', lambda *args: None)
    through_pillow = panoptic_png.read(path, lookup)
    np.testing.assert_array_equal(fast, through_pillow)
    np.testing.assert_array_equal(
        fast, np.minimum(_ids_by_hand(_label_like(20, 30)), 69999) * 3)


def test_image_data_split_over_several_chunks():
    rgb = _label_like(30, 50)
    np.testing.assert_array_equal(
        rgb_png_ids.decode_ids(_png(rgb, idat_pieces=5)), _ids_by_hand(rgb))


def test_pillow_written_png_decodes_as_pillow_reads(tmp_path):
    ids = _ids_by_hand(_label_like(64, 96)) ^ _ids_by_hand(_noise(64, 96))
    path = tmp_path / 'a.png'
    panoptic_png.write(str(path), ids)
    np.testing.assert_array_equal(
        rgb_png_ids.decode_ids(path.read_bytes()),
        _ids_by_hand(np.asarray(Image.open(path))))


def test_threads_decode_independently():
    images = [_noise(48, 40, seed) for seed in range(8)]
    pngs = [_png(rgb, (4, 1, 2)) for rgb in images]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        decoded = list(pool.map(rgb_png_ids.decode_ids, pngs * 4))
    for png_index, ids in enumerate(decoded):
        np.testing.assert_array_equal(
            ids, _ids_by_hand(images[png_index % len(images)]))


def _with_byte_flipped(png: bytes, position: int) -> bytes:
    corrupt = bytearray(png)
    corrupt[position] ^= 0x10
    return bytes(corrupt)


def _idat_start(png: bytes) -> int:
    return png.index(b'IDAT') + 4


RGB = _noise(6, 5)
NOT_HANDLED = {
    'grey': _png(RGB[..., :1].repeat(1, -1), scanlines=b'\0' * 6 * 6,
                 colour_type=0),
    '16-bit': _png(RGB, bit_depth=16),
    'palette': _png(RGB, colour_type=3),
    'interlaced': _png(RGB, interlace=1),
    'not a png': b'GIF89a' + bytes(40),
    'truncated': _png(RGB)[:-20],
    'no IEND': _png(RGB)[:-12],
    'bad IDAT crc': _with_byte_flipped(_png(RGB), len(_png(RGB)) - 16),
    'unknown filter type': _png(RGB, scanlines=b'\5' + bytes(15) * 6),
    'short image data': _png(RGB, scanlines=_filtered(RGB, (0,))[:-1]),
    'long image data': _png(RGB, scanlines=_filtered(RGB, (0,)) + b'\0'),
}


def _png_with_corrupt_stream():
    """Compressed bytes changed, the chunk CRC made to match: only the
    zlib stream (its Adler-32 or its codes) can tell."""
    png = _png(RGB)
    start = _idat_start(png)
    length, = struct.unpack('>I', png[start - 8:start - 4])
    data = bytearray(png[start:start + length])
    data[len(data) // 2] ^= 0x01
    return (png[:start - 8] + _chunk(b'IDAT', bytes(data))
            + png[start + length + 4:])


NOT_HANDLED['corrupt zlib stream'] = _png_with_corrupt_stream()


@pytest.mark.parametrize('name', sorted(NOT_HANDLED))
def test_anything_else_is_left_to_pillow(name):
    assert rgb_png_ids.decode_ids(NOT_HANDLED[name]) is None


def test_header_beyond_pillows_pixel_limit_is_left_to_pillow(monkeypatch):
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 29)
    assert rgb_png_ids.decode_ids(_png(RGB)) is None  # 30 pixels.


def test_corrupt_png_read_names_the_file(tmp_path):
    path = tmp_path / 'corrupt.png'
    path.write_bytes(NOT_HANDLED['corrupt zlib stream'])
    with pytest.raises(ValueError, match='Cannot read image .*corrupt.png'):
        panoptic_png.read(str(path))


def test_missing_png_read_names_the_file(tmp_path):
    with pytest.raises(ValueError, match='Cannot read image .*absent.png'):
        panoptic_png.read(str(tmp_path / 'absent.png'))


def test_every_rgb_png_of_the_fixtures_decodes_as_pillow_reads(fixtures_dir):
    """Files other tools wrote: the COCO panoptic API's and cityscapesscripts'
    panoptic PNGs, and Cityscapes-style photos (every 8-bit RGB PNG there)."""
    decoded = 0
    for path in sorted(fixtures_dir.glob('data/**/*.png')):
        image = Image.open(path)
        if image.mode != 'RGB':
            assert rgb_png_ids.decode_ids(path.read_bytes()) is None, path
            continue
        np.testing.assert_array_equal(
            rgb_png_ids.decode_ids(path.read_bytes()),
            _ids_by_hand(np.asarray(image)), err_msg=str(path))
        decoded += 1
    assert decoded >= 10  # The fixtures' panoptic PNGs and photos.


def test_kernel_compiles_where_no_cache_can_be_written(monkeypatch):
    """A read-only install and home: numba finds nowhere to cache and
    refuses cache=True; the kernel must still compile and decode."""
    from numba.core import caching
    monkeypatch.setattr(caching.CacheImpl, '_locator_classes', [])
    with pytest.raises(RuntimeError, match='no locator'):
        numba.njit(cache=True)(rgb_png_ids._unfilter.py_func)
    kernel = rgb_png_ids._jit(rgb_png_ids._unfilter.py_func)
    monkeypatch.setattr(rgb_png_ids, '_unfilter', kernel)
    rgb = _noise(7, 9)
    np.testing.assert_array_equal(rgb_png_ids.decode_ids(_png(rgb)),
                                  _ids_by_hand(rgb))
