"""Colormaps and colored maps."""

import numpy as np
import pytest

from deeplab2 import vis


def test_cityscapes_palette_is_the_train_id_colors():
    palette = vis.colormap('cityscapes')
    # Cityscapes' published colors: road, sky, car, bicycle.
    assert tuple(palette[0]) == (128, 64, 128)
    assert tuple(palette[10]) == (70, 130, 180)
    assert tuple(palette[13]) == (0, 0, 142)
    assert tuple(palette[18]) == (119, 11, 32)
    assert tuple(palette[255]) == (0, 0, 0)


def test_coco_palette_has_void_and_133_categories():
    palette = vis.colormap('coco')
    assert tuple(palette[0]) == (0, 0, 0)
    assert len({tuple(c) for c in palette[1:134]}) > 100


def test_unknown_palette_is_named():
    with pytest.raises(ValueError, match="Unknown colormap 'ade'"):
        vis.colormap('ade')


def test_panoptic_colors_separate_instances_and_void():
    palette = vis.colormap('cityscapes')
    panoptic = np.array([[13001, 13002, 0, 255000]])
    colored = vis.colorize_panoptic(panoptic, 1000, palette, 255)
    assert colored.shape == (1, 4, 3) and colored.dtype == np.uint8
    assert tuple(colored[0, 0]) != tuple(colored[0, 1])
    assert tuple(colored[0, 2]) == (128, 64, 128)  # stuff: the class color
    assert tuple(colored[0, 3]) == (0, 0, 0)       # void


def test_overlay_blends():
    image = np.full([1, 1, 3], 100, np.uint8)
    colored = np.full([1, 1, 3], 200, np.uint8)
    assert vis.overlay(image, colored, alpha=0.25)[0, 0, 0] == 125
