"""8-bit RGB PNGs decoded straight to 24-bit ids, 7x faster than Pillow.

Panoptic PNGs are read by the thousand: evaluation from files, dataset
conversion. Pillow takes ~17 ms for a 1024x2048 one: zlib's inflate, then
undoing the row filters into Pillow's 4-byte pixels, which are copied out
once more. Here libdeflate inflates the whole image in one call (the header
gives its size) and one numba kernel undoes the filters and packs every
pixel's three bytes into its id (or a lookup of it) in the same pass:
~2.4 ms, on threads that run in parallel (both release the GIL). That
is with freed large blocks kept for reuse (deeplab2/allocator.py, as the
training CLI and the benchmarks set it); without, page faults on each
new 6 MB inflate buffer add ~2 ms.

Only what panoptic PNGs are is handled: bit depth 8, colour type 2 (RGB),
no interlacing. For any other PNG, and for data that does not decode
cleanly (a bad chunk CRC, a short or corrupt zlib stream, an unknown filter
type), `decode_ids` returns None and the caller decodes with Pillow, whose
behaviour (and errors, naming the file) stays the reference.
"""

import struct
import zlib

import deflate
import numba
import numpy as np
from PIL import Image

_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# IHDR fields: width, height, bit depth, colour type, compression method,
# filter method, interlace method.
_IHDR = struct.Struct('>IIBBBBB')
_RGB8 = (8, 2, 0, 0, 0)
_NO_LOOKUP = np.zeros(0, np.int32)


def _jit(function):
    """`function` compiled by numba, releasing the GIL. The machine code is
    cached on disk where numba finds a writable place (the package's
    __pycache__, else the user's cache); where it finds none (a read-only
    install and home), numba refuses cache=True at decoration, so each
    process compiles afresh (under a second) instead of failing to
    import."""
    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError:  # 'cannot cache function ...: no locator available'
        return numba.njit(nogil=True)(function)


# One flat function: written as small inlined helpers, or with `row[:] =`
# slice copies, numba's output ran 2x slower (no vectorised Up rows).
@_jit
def _unfilter(scanlines, height, width, lookup, out):
    """Writes out[y, x] = R | G << 8 | B << 16 of the inflated image
    `scanlines` (per row: a filter-type byte, then 3 * width bytes), or
    lookup[min(that id, len(lookup) - 1)] when `lookup` is not empty.
    Returns the first row with an unknown filter type, or -1.

    Filters predict each byte from the one 3 bytes to its left (same
    channel, previous pixel) and those above; left of the first pixel and
    above the first row is 0. Sums wrap modulo 256, as PNG specifies.
    """
    stride = 3 * width
    last = lookup.shape[0] - 1
    above = np.zeros(stride, np.uint8)
    row = np.empty(stride, np.uint8)
    for y in range(height):
        start = y * (stride + 1)
        filter_type = scanlines[start]
        data = scanlines[start + 1:start + 1 + stride]
        if filter_type == 0:  # None
            for i in range(stride):
                row[i] = data[i]
        elif filter_type == 1:  # Sub: left
            for i in range(3):
                row[i] = data[i]
            for i in range(3, stride):
                row[i] = data[i] + row[i - 3]
        elif filter_type == 2:  # Up
            for i in range(stride):
                row[i] = data[i] + above[i]
        elif filter_type == 3:  # Average of left and up, rounded down
            for i in range(3):
                row[i] = data[i] + (above[i] >> 1)
            for i in range(3, stride):
                row[i] = data[i] + np.uint8(
                    (np.int32(row[i - 3]) + np.int32(above[i])) >> 1)
        elif filter_type == 4:  # Paeth
            for i in range(3):
                row[i] = data[i] + above[i]  # left = up-left = 0: up wins.
            for i in range(3, stride):
                up, up_left = above[i], above[i - 3]
                if up == up_left:
                    # Flat above (most of a label map): Paeth picks left.
                    row[i] = data[i] + row[i - 3]
                    continue
                # Whichever of left, up, up-left is nearest to
                # left + up - up_left; ties go to left, then up.
                left = np.int32(row[i - 3])
                estimate = left + np.int32(up) - np.int32(up_left)
                to_left = abs(estimate - left)
                to_up = abs(estimate - np.int32(up))
                to_up_left = abs(estimate - np.int32(up_left))
                if to_left <= to_up and to_left <= to_up_left:
                    row[i] = data[i] + np.uint8(left)
                elif to_up <= to_up_left:
                    row[i] = data[i] + up
                else:
                    row[i] = data[i] + up_left
        else:
            return y
        out_row = out[y]
        # Two loops rather than one with `pixel_id if last < 0 else ...`:
        # the lookup loop ran 4% slower with the test inside it.
        if last < 0:
            for x in range(width):
                out_row[x] = (np.int32(row[3 * x])
                              | (np.int32(row[3 * x + 1]) << 8)
                              | (np.int32(row[3 * x + 2]) << 16))
        else:
            for x in range(width):
                out_row[x] = lookup[min(
                    np.int32(row[3 * x]) | (np.int32(row[3 * x + 1]) << 8)
                    | (np.int32(row[3 * x + 2]) << 16), last)]
        above, row = row, above
    return -1


def _image_data(png: bytes):
    """(width, height, concatenated IDAT payloads) of an 8-bit RGB,
    non-interlaced PNG whose chunks are whole and pass their CRCs; else
    None."""
    if not png.startswith(_SIGNATURE):
        return None
    view = memoryview(png)
    position, header, idat = len(_SIGNATURE), None, []
    while position + 12 <= len(png):
        length, = struct.unpack_from('>I', png, position)
        end = position + 12 + length
        if end > len(png):
            return None  # Truncated.
        kind = png[position + 4:position + 8]
        if header is None and kind != b'IHDR':
            return None
        if kind in (b'IHDR', b'IDAT'):
            body = view[position + 4:end - 4]  # Type and data: what the CRC covers.
            crc, = struct.unpack_from('>I', png, end - 4)
            if zlib.crc32(body) != crc:
                return None
            if kind == b'IHDR':
                if length != _IHDR.size:
                    return None
                header = _IHDR.unpack_from(png, position + 8)
            else:
                idat.append(body[4:])
        elif kind == b'IEND':
            break
        position = end
    else:
        return None  # No IEND.
    width, height, *layout = header
    if tuple(layout) != _RGB8 or not idat or width == 0 or height == 0:
        return None
    if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        return None  # Pillow's decompression-bomb check decides.
    return width, height, b''.join(idat)


def decode_ids(png: bytes, lookup=None):
    """int32 [H, W] ids (R | G << 8 | B << 16) of a PNG file's bytes, or
    None when it is not an 8-bit RGB non-interlaced PNG that decodes
    cleanly. With `lookup` (a 1-D integer array), each id s becomes
    lookup[min(s, len(lookup) - 1)] instead, in lookup's dtype: the
    mapping costs nothing extra inside the decoding pass."""
    image = _image_data(png)
    if image is None:
        return None
    width, height, compressed = image
    size = height * (3 * width + 1)
    try:
        scanlines = deflate.zlib_decompress(compressed, size)
    except deflate.DeflateError:
        return None
    if len(scanlines) != size:
        return None
    scanlines = np.frombuffer(scanlines, np.uint8)
    # Allocated here, not in the kernel: NumPy reuses freed blocks where
    # numba's allocator maps fresh pages each call (2-3 ms of page faults).
    if lookup is None:
        lookup = _NO_LOOKUP
        out = np.empty((height, width), np.int32)
    else:
        lookup = np.ascontiguousarray(lookup)
        out = np.empty((height, width), lookup.dtype)
    failed_row = _unfilter(scanlines, height, width, lookup, out)
    return None if failed_row != -1 else out
