"""Colored semantic and panoptic maps, and overlays on the image.

Palettes are the datasets' own: Cityscapes' train-id colors (from
cityscapesscripts' label table) and the COCO panoptic category colors.
Instances of a class get distinct, deterministic shades of its color.
"""

import functools

import numpy as np

_VOID_COLOR = (0, 0, 0)


@functools.lru_cache(maxsize=None)
def colormap(name: str) -> np.ndarray:
    """[256, 3] uint8 palette indexed by semantic label ('cityscapes',
    'coco'); unused entries are black."""
    palette = np.zeros([256, 3], np.uint8)
    if name == 'cityscapes':
        from cityscapesscripts.helpers import labels
        for label in labels.labels:
            if 0 <= label.trainId < 255:
                palette[label.trainId] = label.color
    elif name == 'coco':
        from deeplab2.data import coco_labels
        colors = np.asarray(coco_labels.COLORMAP, np.uint8)
        palette[:len(colors)] = colors
    else:
        raise ValueError(f'Unknown colormap {name!r}; known: cityscapes, '
                         'coco.')
    palette.flags.writeable = False
    return palette


def colorize_semantic(semantic: np.ndarray, palette: np.ndarray,
                      ignore_label: int | None = None) -> np.ndarray:
    """[H, W] labels -> [H, W, 3] uint8; the ignore label is black."""
    semantic = np.asarray(semantic)
    colored = palette[np.clip(semantic, 0, len(palette) - 1)]
    if ignore_label is not None:
        colored[semantic == ignore_label] = _VOID_COLOR
    return colored


def colorize_panoptic(panoptic: np.ndarray, label_divisor: int,
                      palette: np.ndarray, ignore_label: int) -> np.ndarray:
    """[H, W] panoptic ids -> [H, W, 3] uint8: the class color, shifted per
    instance by a deterministic offset so touching instances differ."""
    panoptic = np.asarray(panoptic)
    semantic, instance = np.divmod(panoptic, label_divisor)
    colored = colorize_semantic(semantic, palette, ignore_label).astype(
        np.int32)
    # A small fixed hash of the instance id: different shades, stable
    # across images and runs.
    shift = ((instance[..., None] * np.array([37, 71, 113])) % 61) - 30
    colored = np.where(instance[..., None] > 0, colored + shift, colored)
    return np.clip(colored, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, colored: np.ndarray,
            alpha: float = 0.5) -> np.ndarray:
    """Blends a colored map onto an RGB image ([H, W, 3], uint8)."""
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * colored
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
