"""Colored semantic and panoptic maps, and overlays on the image.

Palettes are the datasets' own: Cityscapes' train-id colors (from
cityscapesscripts' label table), the COCO panoptic category colors, and a
dataset spec's class colors (`palette(descriptor)` picks the right one).
Instances of a class get distinct, deterministic shades of its color.
"""

import functools

import numpy as np

from deeplab2.data import datasets

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


def palette(descriptor) -> np.ndarray:
    """[max(256, num_classes), 3] uint8 palette of a DatasetDescriptor: a
    spec dataset's own `class_colors`, else its named `colormap`."""
    if descriptor.colormap != datasets.SPEC_COLORMAP:
        return colormap(descriptor.colormap)
    if len(descriptor.class_colors) != descriptor.num_classes:
        raise ValueError(
            f'Dataset {descriptor.name!r} uses its own colors but has '
            f'{len(descriptor.class_colors)} for {descriptor.num_classes} '
            'classes.')
    colors = np.zeros([max(256, descriptor.num_classes), 3], np.uint8)
    colors[:descriptor.num_classes] = np.asarray(descriptor.class_colors,
                                                 np.uint8).reshape(-1, 3)
    colors.flags.writeable = False
    return colors


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
