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


def _descriptor(**fields):
    from deeplab2.data import datasets
    values = dict(name='mine', splits_to_sizes={}, num_classes=2,
                  ignore_label=255, panoptic_label_divisor=1000,
                  class_has_instances_list=(1,),
                  colormap=datasets.SPEC_COLORMAP,
                  class_colors=((10, 20, 30), (200, 100, 0)))
    return datasets.DatasetDescriptor(**{**values, **fields})


def test_palette_of_a_spec_dataset_is_its_class_colors():
    palette = vis.palette(_descriptor())
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    assert tuple(palette[0]) == (10, 20, 30)
    assert tuple(palette[1]) == (200, 100, 0)
    assert tuple(palette[2]) == (0, 0, 0) and tuple(palette[255]) == (0, 0, 0)
    colored = vis.colorize_semantic(np.array([[1, 0, 255]]), palette, 255)
    assert colored.tolist() == [[[200, 100, 0], [10, 20, 30], [0, 0, 0]]]


def test_palette_covers_more_than_256_classes():
    colors = tuple((i % 256, i // 256, 7) for i in range(300))
    palette = vis.palette(_descriptor(num_classes=300, class_colors=colors))
    assert palette.shape == (300, 3)
    assert tuple(palette[299]) == (43, 1, 7)


def test_palette_of_a_built_in_dataset_is_its_named_colormap():
    from deeplab2.data import datasets
    assert vis.palette(datasets.CITYSCAPES_PANOPTIC) is vis.colormap(
        'cityscapes')
    assert vis.palette(datasets.COCO_PANOPTIC) is vis.colormap('coco')


def test_spec_palette_with_a_colour_per_class_missing_is_refused():
    with pytest.raises(ValueError, match="'mine' .* 1 for 2 classes"):
        vis.palette(_descriptor(class_colors=((1, 2, 3),)))
