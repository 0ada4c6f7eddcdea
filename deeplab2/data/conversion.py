"""What every dataset converter shares: its unit of work and its driver.

A dataset format supplies two functions and nothing else:

* `jobs_of_split(split) -> [ImageJob]`, run in the main process: lists the
  split's images in record order and checks that every file a job names
  is there, so that a bad dataset fails before anything is written;
* `prepare(job) -> PreparedExample`, run in spawned worker processes:
  reads and checks one image and builds its label. What the user should
  hear about the image (data kept as DeepLab2 keeps it, but suspect) goes
  in the example's `warnings`, which the writing process logs.

`convert_splits` does the rest the same way for every format: sharding,
resuming, the worker pool and the progress line (`sharded_writer.py`), and
DeepLab2's Example layout (`tfrecord.py`). `panoptic_jobs` pairs images
with a COCO-panoptic json, the annotation layout Cityscapes and COCO share;
`read_rgb_image` reads an image file as an Example holds it.

This module must stay free of TensorFlow: workers import it to unpickle
the jobs, and `prepare` lives in modules that import it (see
`cityscapes_annotations.py`, `coco_annotations.py`). A format whose
listing code is TensorFlow-free too can be a single module
(`coco_panoptic_dataset.py`, `label_folders.py`).
"""

import dataclasses
import io
import os
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from deeplab2.data import image_files

# PIL's name of each image format Examples may hold -> the Example's name.
_EXAMPLE_IMAGE_FORMATS = {'JPEG': 'jpeg', 'PNG': 'png'}


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """Everything one worker needs to prepare one Example.

    A job with neither `panoptic_png` nor `semantic_png` is an unlabeled
    image (a test split).
    """
    image_path: str
    image_name: str
    # A COCO-panoptic annotation: the segment-id PNG and its segments_info.
    panoptic_png: Optional[str] = None
    segments: Optional[tuple] = None
    # Or a semantic label stored as the PNG it is.
    semantic_png: Optional[str] = None
    treat_crowd_as_ignore: bool = True
    # With `semantic_png`: a PNG of the instance id of each pixel (label
    # folders, `label_folders.py`).
    instance_png: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class PreparedExample:
    """A job's result: checked image bytes and the label payload."""
    image_bytes: bytes
    image_name: str
    image_format: str
    height: int
    width: int
    panoptic_label: Optional[np.ndarray] = None
    semantic_png: Optional[bytes] = None
    # Messages for the user, logged by the writing process (sharded_writer):
    # a worker's own log lines would bypass the logging the user set up.
    warnings: tuple[str, ...] = ()


def read_rgb_image(path: str) -> tuple[bytes, str, int, int]:
    """An image file as an Example holds it: (bytes, format, height, width).

    A JPEG or PNG in RGB is kept byte for byte (no re-compression); any
    other mode (grey, palette, RGBA, CMYK) is converted to RGB (alpha
    dropped) and stored as PNG, losslessly, because readers decode images
    with three channels.

    Raises:
      ValueError: naming `path`, when it is unreadable or neither JPEG nor
        PNG.
    """
    image = image_files.open_image(path)
    image_format = _EXAMPLE_IMAGE_FORMATS.get(image.format)
    if image_format is None:
        raise ValueError(f'Image {path} is {image.format}; only JPEG and PNG '
                         'images can be converted.')
    if image.mode == 'RGB':
        with open(path, 'rb') as f:
            return f.read(), image_format, image.height, image.width
    buffer = io.BytesIO()
    image.convert('RGB').save(buffer, format='PNG')
    return buffer.getvalue(), 'png', image.height, image.width


def panoptic_jobs(image_paths: Sequence[str], image_names: Sequence[str],
                  annotations: dict, json_path: str,
                  treat_crowd_as_ignore: bool) -> list[ImageJob]:
    """One job per image, paired with its entry of a COCO-panoptic json.

    Args:
      image_paths: the images, in record order.
      image_names: each image's name: its key in `annotations` and the
        Example's image name.
      annotations: image key -> (PNG file name, segments_info), as read
        from `json_path`. The PNGs lie in the folder named as the json
        without `.json` (COCO's and cityscapesscripts' layout).
      treat_crowd_as_ignore: passed on to each job.

    Raises:
      ValueError: naming an image the json does not annotate.
      FileNotFoundError: naming an image whose PNG is missing.
    """
    png_folder = json_path[:-len('.json')]
    jobs = []
    for path, name in zip(image_paths, image_names):
        if name not in annotations:
            raise ValueError(f'Image {path} has no annotation in {json_path}.')
        png_name, segments = annotations[name]
        png_path = os.path.join(png_folder, png_name)
        if not os.path.isfile(png_path):
            raise FileNotFoundError(
                f'Panoptic annotation of {path} not found: {png_path}.')
        jobs.append(ImageJob(path, name, png_path, segments,
                             treat_crowd_as_ignore=treat_crowd_as_ignore))
    return jobs


def to_record(prepared: PreparedExample) -> bytes:
    """The serialized tf.train.Example of one prepared example."""
    # Imported here: workers import this module and must not load
    # TensorFlow; only the writing process calls this.
    from deeplab2.data import tfrecord
    example = tfrecord.encode_example(
        prepared.image_bytes, prepared.image_name, prepared.image_format,
        prepared.height, prepared.width, prepared.panoptic_label,
        semantic_label_png=prepared.semantic_png, verify_image=False)
    return example.SerializeToString()


def convert_splits(splits: Iterable[str],
                   jobs_of_split: Callable[[str], Sequence[ImageJob]],
                   prepare: Callable[[ImageJob], PreparedExample],
                   output_dir: str,
                   num_shards: int,
                   num_workers: Optional[int] = None,
                   show_progress: bool = True) -> dict[str, list[str]]:
    """Converts each split's jobs to TFRecord shards; returns their paths.

    Every split is listed (and so checked) before anything is written.

    Args:
      splits: split names, converted in this order.
      jobs_of_split: split -> its jobs, in record order.
      prepare: job -> prepared example; a module-level function of a
        TensorFlow-free module when `num_workers` > 1.
      output_dir: where the shards go (created if needed).
      num_shards: shards per split.
      num_workers: processes running `prepare`; default os.cpu_count().
      show_progress: a counter per split on stderr.

    Returns:
      split -> its shard paths, in order.
    """
    if num_shards < 1:
        raise ValueError(f'num_shards must be positive, got {num_shards}.')
    jobs_by_split = {split: jobs_of_split(split) for split in splits}
    from deeplab2.data import sharded_writer  # Loads TensorFlow: see above.
    return sharded_writer.write_splits(
        jobs_by_split, output_dir, num_shards, prepare, to_record,
        num_workers=num_workers, show_progress=show_progress)
