"""Panoptic PNGs: one segment id per pixel, stored as an RGB colour.

cityscapesscripts and the COCO panoptic API both colour segment id `s` as
`(s % 256, s // 256 % 256, s // 65536)`, so ids fit 24 bits and black (0)
is void. The converters read ground truth through this module and the
evaluation formats write predictions through it, so the colour rule lives
here only. Light to import (converter worker processes do): NumPy and
Pillow, and the fast RGB decoder's numba on the first read.
"""

import numpy as np
from PIL import Image

from deeplab2 import files
from deeplab2.data import image_files

MAX_SEGMENT_ID = 256 ** 3 - 1


def encode(segment_ids: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] colours of [H, W] segment ids (taken modulo 2**24)."""
    ids = np.asarray(segment_ids, np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256],
                    axis=-1).astype(np.uint8)


def decode(rgb: np.ndarray) -> np.ndarray:
    """int32 [H, W] segment ids of uint8 [H, W, 3] colours."""
    rgb = np.asarray(rgb)
    ids = rgb[..., 2].astype(np.int32) << 16
    ids |= rgb[..., 1].astype(np.int32) << 8
    ids |= rgb[..., 0]
    return ids


def read(path: str, lookup=None) -> np.ndarray:
    """int32 [H, W] segment ids of the panoptic PNG at `path`.

    With `lookup` (1-D integers), each id s reads as
    lookup[min(s, len(lookup) - 1)] instead, in lookup's dtype: for an
    8-bit RGB PNG the mapping happens while decoding, saving a full pass.

    Raises:
      ValueError: naming `path`, when it cannot be decoded or is not RGB
        (a grey or palette PNG would decode to the wrong ids).
    """
    from deeplab2 import rgb_png_ids  # numba: imported on first read only.
    try:
        with open(path, 'rb') as f:
            ids = rgb_png_ids.decode_ids(f.read(), lookup)
    except OSError:
        ids = None  # Pillow's open below names the file and the error.
    if ids is not None:
        return ids
    # Anything else (grey, palette, 16-bit, interlaced, corrupt): Pillow.
    image = image_files.open_image(path)
    if image.mode != 'RGB':
        raise ValueError(f'Panoptic PNG {path} must be RGB, got mode '
                         f'{image.mode}.')
    # Pillow keeps RGB pixels as 4 bytes: copied out as RGBX, each pixel is
    # one little-endian uint32 whose low 3 bytes are the id (several times
    # faster than assembling the id from three channel planes).
    width, height = image.size
    pixels = np.frombuffer(image.tobytes('raw', 'RGBX'), '<u4')
    ids = (pixels & 0xFFFFFF).view(np.int32).reshape(height, width)
    return ids if lookup is None else np.take(lookup, ids, mode='clip')


def write(path: str, segment_ids: np.ndarray) -> None:
    """Writes [H, W] segment ids as an RGB PNG, via a temporary name."""
    files.write_atomically(path, Image.fromarray(encode(segment_ids)).save)
