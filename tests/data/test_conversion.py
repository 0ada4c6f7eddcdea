"""conversion: pairing images with a COCO-panoptic json and the driver
checking everything it can before writing (worked by hand, no images
decoded), and image files read as Examples hold them."""

import io
import re

import numpy as np
from PIL import Image
import pytest

from deeplab2.data import conversion


@pytest.fixture
def annotated(tmp_path):
    """Two images, a json path and its PNG folder with one PNG per image."""
    json_path = tmp_path / 'panoptic_val.json'
    (tmp_path / 'panoptic_val').mkdir()
    for name in ('a', 'b'):
        (tmp_path / 'panoptic_val' / f'{name}_gt.png').write_bytes(b'')
    annotations = {'a': ('a_gt.png', ({'id': 1},)),
                   'b': ('b_gt.png', ())}
    return ['/img/a.jpg', '/img/b.jpg'], annotations, str(json_path)


def test_panoptic_jobs_pair_images_with_their_png_and_segments(annotated,
                                                              tmp_path):
    image_paths, annotations, json_path = annotated
    jobs = conversion.panoptic_jobs(image_paths, ['a', 'b'], annotations,
                                    json_path, treat_crowd_as_ignore=False)
    assert jobs == [
        conversion.ImageJob('/img/a.jpg', 'a',
                            str(tmp_path / 'panoptic_val' / 'a_gt.png'),
                            ({'id': 1},), treat_crowd_as_ignore=False),
        conversion.ImageJob('/img/b.jpg', 'b',
                            str(tmp_path / 'panoptic_val' / 'b_gt.png'),
                            (), treat_crowd_as_ignore=False)]


def test_panoptic_jobs_name_the_unannotated_image(annotated):
    image_paths, annotations, json_path = annotated
    del annotations['b']
    with pytest.raises(ValueError, match=re.escape(
            f'Image /img/b.jpg has no annotation in {json_path}.')):
        conversion.panoptic_jobs(image_paths, ['a', 'b'], annotations,
                                 json_path, True)


def test_panoptic_jobs_name_a_missing_png(annotated, tmp_path):
    image_paths, annotations, json_path = annotated
    png = tmp_path / 'panoptic_val' / 'b_gt.png'
    png.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(
            f'Panoptic annotation of /img/b.jpg not found: {png}.')):
        conversion.panoptic_jobs(image_paths, ['a', 'b'], annotations,
                                 json_path, True)


def test_convert_splits_checks_before_writing(tmp_path):
    listed = []

    def jobs_of_split(split):
        listed.append(split)
        if split == 'val':
            raise FileNotFoundError('no val')
        return [conversion.ImageJob('x.png', 'x')]

    def never_called(job):
        raise AssertionError(job)

    output_dir = tmp_path / 'out'
    with pytest.raises(ValueError, match='num_shards must be positive'):
        conversion.convert_splits(['train'], jobs_of_split, never_called,
                                  str(output_dir), 0)
    assert listed == []
    with pytest.raises(FileNotFoundError, match='no val'):
        conversion.convert_splits(['train', 'val'], jobs_of_split,
                                  never_called, str(output_dir), 1)
    assert listed == ['train', 'val']
    assert not output_dir.exists()


def test_read_rgb_image_keeps_rgb_files_and_converts_the_rest(tmp_path):
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    Image.fromarray(rgb).save(tmp_path / 'rgb.jpg')
    assert conversion.read_rgb_image(str(tmp_path / 'rgb.jpg')) == (
        (tmp_path / 'rgb.jpg').read_bytes(), 'jpeg', 2, 3)
    Image.fromarray(rgb[..., 0], 'L').save(tmp_path / 'grey.jpg')
    image_bytes, image_format, height, width = conversion.read_rgb_image(
        str(tmp_path / 'grey.jpg'))
    assert (image_format, height, width) == ('png', 2, 3)
    converted = Image.open(io.BytesIO(image_bytes))
    assert converted.mode == 'RGB'
    grey = np.asarray(Image.open(tmp_path / 'grey.jpg'))
    np.testing.assert_array_equal(np.asarray(converted),
                                  np.stack([grey] * 3, axis=-1))
    Image.fromarray(rgb).save(tmp_path / 'rgb.bmp')
    with pytest.raises(ValueError, match=re.escape(
            f'Image {tmp_path / "rgb.bmp"} is BMP; only JPEG and PNG')):
        conversion.read_rgb_image(str(tmp_path / 'rgb.bmp'))
