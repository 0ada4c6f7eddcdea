"""Which images `deeplab2.predict` runs on, how they are read, and the
output name of each.

Grayscale, palette and 16-bit images are converted to RGB, an alpha channel
is dropped, and EXIF orientation is applied so that outputs line up with the
image as viewers show it.
"""

import collections
import glob
import os
from typing import Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageOps

from deeplab2.data import image_files
from deeplab2.predict_outputs import OUTPUT_SUFFIXES

# Extensions taken when --input is a folder rather than a glob.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp')


def find_images(pattern: str, exclude_dir: Optional[str] = None
                ) -> list[str]:
    """Files matching a glob (`**` recurses), or a folder's images by
    extension; sorted, without the outputs of a previous run into
    `exclude_dir` (which may be the input folder itself).

    Raises:
      FileNotFoundError: naming the pattern when nothing matches.
    """
    if os.path.isdir(pattern):
        paths = [os.path.join(pattern, name) for name in os.listdir(pattern)
                 if name.lower().endswith(IMAGE_EXTENSIONS)]
    else:
        paths = glob.glob(pattern, recursive=True)
    paths = [path for path in paths if os.path.isfile(path)]
    if exclude_dir:
        excluded = os.path.abspath(exclude_dir) + os.sep
        paths = [path for path in paths
                 if not (os.path.abspath(path).startswith(excluded) and
                         path.endswith(OUTPUT_SUFFIXES))]
    if not paths:
        raise FileNotFoundError(f'Input {pattern!r} matches no image files.')
    return sorted(paths)


def read_rgb_image(path: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB, upright as viewers show it.

    Raises:
      ValueError: naming the file, when it is not a readable image.
    """
    image = image_files.open_image(path)
    try:
        image = ImageOps.exif_transpose(image)
        return np.asarray(_to_rgb(image), np.uint8)
    except Exception as error:  # PIL raises many types for bad data.
        raise ValueError(f'Cannot convert image {path} (mode '
                         f'{image.mode}) to RGB: {error}') from error


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == 'RGB':
        return image
    if image.mode.startswith('I'):
        # 16-bit grayscale: PIL's convert would clip at 255, so scale.
        values = np.asarray(image, np.float64)
        if values.max(initial=0) > 255:
            values = values / 257.0
        gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, 'L').convert('RGB')
    return image.convert('RGB')  # L, LA, P, RGBA, CMYK, ...: alpha dropped


def output_names(paths: Sequence[str]) -> dict[str, str]:
    """Input path -> output name: its path below the inputs' common folder,
    without extension; names that would collide (a.jpg, a.png) keep their
    extension as `a_jpg`, `a_png`."""
    folders = [os.path.dirname(os.path.abspath(path)) for path in paths]
    root = os.path.commonpath(folders)
    stems = {path: os.path.splitext(os.path.relpath(os.path.abspath(path),
                                                    root))
             for path in paths}
    counts = collections.Counter(stem for stem, _ in stems.values())
    return {path: stem if counts[stem] == 1 else
            f'{stem}_{extension.lstrip(".").lower()}'
            for path, (stem, extension) in stems.items()}
