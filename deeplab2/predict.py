"""Panoptic predictions on a folder of the user's own images (no labels).

For each image `<name>.<ext>` the output folder gets:

  <name>_panoptic.png   segment ids in the Cityscapes/COCO panoptic colour
                        encoding: id = R + 256 G + 65536 B, 0 = void, and a
                        segment's id is `class * label_divisor + instance + 1`
                        (deeplab2.evaluation.coco_panoptic_format);
  <name>_overlay.jpg    the colored panoptic map blended onto the image;
  <name>_segments.json  one entry per segment: `id`, `category_id` (the
                        model's class id), `category_name`, `isthing`,
                        `score`, `area` (pixels) and `bbox` [x, y, w, h].

A thing segment's `score` is the mean of `instance_scores` over its pixels:
the center-heatmap peak of the instance it was grouped to (0 for thing
pixels that found no center). Stuff segments get `null`: Panoptic-DeepLab
has no per-segment confidence for stuff, and a softmax mean would be a
different quantity under the same name.

Images run at their own size, never resized or padded: the ASPP image
pooling is global (deeplab2.model.decoder.aspp), so any size works, and an
image of exactly the eval crop size gives what the evaluator computes.
Grayscale, palette and 16-bit images are converted to RGB, an alpha channel
is dropped, and EXIF orientation is applied so that outputs line up with the
image as viewers show it.

Two back-ends give the same per-image dict of [H, W] maps: a checkpoint
(built from the config, run through `deeplab2.model.inference`) or an
exported SavedModel's `serving_default` signature. The config is needed in
both cases for the label space (divisor, void label, class names, palette).

An image that cannot be read is named in a warning and skipped; the others
still run (one corrupt file in a folder of thousands should not cost the
rest), and the result lists the skipped files. Every file is written under
a temporary name and renamed, and the JSON last, so a `_segments.json`
means that image's outputs are complete.
"""

import collections
import dataclasses
import glob
import json
import os
import sys
import time
from typing import Callable, Iterable, Optional, Sequence

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageOps
import tensorflow as tf

from deeplab2 import common
from deeplab2 import compat
from deeplab2 import config as config_lib
from deeplab2 import files
from deeplab2 import vis
from deeplab2.data import datasets
from deeplab2.data import image_files
from deeplab2.evaluation import coco_panoptic_format
from deeplab2.model import builder
from deeplab2.model import inference

# What a back-end returns for one image, each [H, W] (batch dropped).
OUTPUT_KEYS = (common.PRED_PANOPTIC_KEY, common.PRED_SEMANTIC_KEY,
               common.PRED_INSTANCE_KEY, common.PRED_INSTANCE_CENTER_KEY,
               common.PRED_INSTANCE_SCORES_KEY)
# Extensions taken when --input is a folder rather than a glob.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp')
PANOPTIC_SUFFIX = '_panoptic.png'
OVERLAY_SUFFIX = '_overlay.jpg'
SEGMENTS_SUFFIX = '_segments.json'
_OUTPUT_SUFFIXES = (PANOPTIC_SUFFIX, OVERLAY_SUFFIX, SEGMENTS_SUFFIX)
_OVERLAY_JPEG_QUALITY = 90
_SERVING_SIGNATURE = 'serving_default'
_SERVING_INPUT = 'images'

# image uint8 [H, W, 3] -> {key: [H, W] array}.
Backend = Callable[[np.ndarray], dict]


# ---------------------------------------------------------------- back-ends


class CheckpointBackend:
    """The model of `config` with weights from a checkpoint (ours or
    DeepLab2's: a prefix, a folder or a model-zoo .tar.gz)."""

    def __init__(self, config, checkpoint_path: str, config_name: str = ''):
        model = builder.build_model(config)
        compat.restore_checkpoint(model, checkpoint_path,
                                  expected=config_name)
        # One trace for every size: height and width are left unknown.
        self._run = tf.function(
            inference.build_inference(config, model),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])

    def __call__(self, image: np.ndarray) -> dict:
        outputs = self._run(tf.constant(image[np.newaxis], tf.float32))
        return {key: outputs[key].numpy()[0] for key in OUTPUT_KEYS
                if key in outputs}


class SavedModelBackend:
    """An exported SavedModel: `serving_default(images=uint8 [B, H, W, 3])`
    returning the post-processed maps, batch first."""

    def __init__(self, path: str):
        if not os.path.isdir(path):
            raise FileNotFoundError(f'SavedModel folder {path} not found.')
        # Keep the loaded object: its signatures do not hold it alive.
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        if _SERVING_SIGNATURE not in signatures:
            raise ValueError(
                f'SavedModel {path} has no {_SERVING_SIGNATURE!r} signature; '
                f'it has {sorted(signatures.keys())}.')
        self._serve = signatures[_SERVING_SIGNATURE]
        inputs = self._serve.structured_input_signature[1]
        if _SERVING_INPUT not in inputs:
            raise ValueError(
                f'SavedModel {path}: {_SERVING_SIGNATURE} takes '
                f'{sorted(inputs)}, expected an {_SERVING_INPUT!r} input.')
        missing = [key for key in OUTPUT_KEYS
                   if key not in self._serve.structured_outputs]
        if missing:
            raise ValueError(
                f'SavedModel {path}: {_SERVING_SIGNATURE} lacks outputs '
                f'{missing}; it returns '
                f'{sorted(self._serve.structured_outputs)}.')

    def __call__(self, image: np.ndarray) -> dict:
        outputs = self._serve(**{_SERVING_INPUT: tf.constant(
            image[np.newaxis], tf.uint8)})
        return {key: outputs[key].numpy()[0] for key in OUTPUT_KEYS}


def build_backend(config, checkpoint_path: Optional[str] = None,
                  saved_model: Optional[str] = None,
                  config_name: str = '') -> Backend:
    """Exactly one of `checkpoint_path` and `saved_model`."""
    if bool(checkpoint_path) == bool(saved_model):
        raise ValueError('Give exactly one of checkpoint_path and '
                         f'saved_model (got {checkpoint_path!r} and '
                         f'{saved_model!r}).')
    if saved_model:
        return SavedModelBackend(saved_model)
    return CheckpointBackend(config, checkpoint_path, config_name)


# ---------------------------------------------------------------- inputs


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
                         path.endswith(_OUTPUT_SUFFIXES))]
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


# ---------------------------------------------------------------- segments


@dataclasses.dataclass
class Prediction:
    """One image's results: segment ids [H, W] int64 (0 = void), the
    segments' JSON entries, and the overlay uint8 [H, W, 3]."""
    segment_ids: np.ndarray
    segments: list
    overlay: np.ndarray


def describe_segments(panoptic: np.ndarray, instance_scores: np.ndarray,
                      descriptor: datasets.DatasetDescriptor,
                      image_name: Optional[str] = None):
    """Segment-id map and the segments' JSON entries of a panoptic map.

    Args:
      panoptic: [H, W] int `class * label_divisor + instance`.
      instance_scores: [H, W] float, each thing pixel's instance score.
    Returns:
      (segment_ids [H, W] int64, list of segment dicts; see module doc).
    """
    segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
        panoptic, descriptor.num_classes, descriptor.ignore_label,
        descriptor.panoptic_label_divisor, image_name=image_name,
        scores=instance_scores)
    things = set(descriptor.class_has_instances_list)
    names = descriptor.class_names
    described = []
    for segment in segments:
        category = segment['category_id']
        isthing = category in things
        described.append({
            'id': segment['id'],
            'category_id': category,
            'category_name': names[category] if category < len(names)
            else str(category),
            'isthing': isthing,
            'score': round(segment['score'], 6) if isthing else None,
            'area': segment['area'],
            'bbox': segment['bbox'],
        })
    return segment_ids, described


def predict_image(backend: Backend, image: np.ndarray,
                  descriptor: datasets.DatasetDescriptor,
                  image_name: Optional[str] = None) -> Prediction:
    """Runs the back-end on one uint8 [H, W, 3] image."""
    outputs = backend(image)
    for key, value in outputs.items():
        if value.shape[:2] != image.shape[:2]:
            raise ValueError(
                f'Image {image_name}: the model returned {key} of shape '
                f'{value.shape}, expected the image size {image.shape[:2]}.')
    if common.PRED_PANOPTIC_KEY in outputs:
        panoptic = outputs[common.PRED_PANOPTIC_KEY]
        scores = outputs[common.PRED_INSTANCE_SCORES_KEY]
    else:  # A semantic-only model: one segment per predicted class.
        panoptic = (outputs[common.PRED_SEMANTIC_KEY].astype(np.int64)
                    * descriptor.panoptic_label_divisor)
        scores = np.zeros(panoptic.shape, np.float32)
    segment_ids, segments = describe_segments(panoptic, scores, descriptor,
                                              image_name)
    colored = vis.colorize_panoptic(
        panoptic, descriptor.panoptic_label_divisor,
        vis.colormap(descriptor.colormap), descriptor.ignore_label)
    return Prediction(segment_ids, segments, vis.overlay(image, colored))


# ---------------------------------------------------------------- outputs


def write_prediction(output_dir: str, name: str, image_path: str,
                     prediction: Prediction,
                     descriptor: datasets.DatasetDescriptor) -> None:
    """Writes the three files of one image (the JSON last)."""
    prefix = os.path.join(output_dir, name)
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    coco_panoptic_format.write_panoptic_png(prefix + PANOPTIC_SUFFIX,
                                         prediction.segment_ids)
    overlay = Image.fromarray(prediction.overlay)
    files.write_atomically(
        prefix + OVERLAY_SUFFIX,
        lambda path: overlay.save(path, format='JPEG',
                                  quality=_OVERLAY_JPEG_QUALITY))
    height, width = prediction.segment_ids.shape
    content = {
        'image': image_path,
        'height': height,
        'width': width,
        'panoptic_png': os.path.basename(prefix + PANOPTIC_SUFFIX),
        'dataset': descriptor.name,
        'label_divisor': descriptor.panoptic_label_divisor,
        'segments': prediction.segments,
    }

    def write_json(path):
        with open(path, 'w') as f:
            f.write(_segments_json(content))
    files.write_atomically(prefix + SEGMENTS_SUFFIX, write_json)


def _segments_json(content: dict) -> str:
    """JSON with one line per segment: readable, and greppable by id."""
    header = {key: value for key, value in content.items()
              if key != 'segments'}
    fields = [f'  {json.dumps(key)}: {json.dumps(value)}'
              for key, value in header.items()]
    segments = ',\n'.join(f'    {json.dumps(segment)}'
                           for segment in content['segments'])
    fields.append(f'  "segments": [\n{segments}\n  ]' if segments
                  else '  "segments": []')
    return '{\n' + ',\n'.join(fields) + '\n}\n'


class Progress:
    """`[3/10] 1.25 s/image, ETA 0:00:08 name` redrawn on one stderr line;
    silent when stderr is not a terminal (logs get the final summary)."""

    def __init__(self, total: int, stream=None,
                 enabled: Optional[bool] = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = (self.stream.isatty() if enabled is None else enabled)
        self._started = time.perf_counter()

    def update(self, done: int, name: str) -> None:
        if not self.enabled:
            return
        per_image = (time.perf_counter() - self._started) / max(done, 1)
        eta = int(per_image * (self.total - done))
        self.stream.write(
            f'\r[{done}/{self.total}] {per_image:.2f} s/image, ETA '
            f'{eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d} {name}\033[K')
        if done == self.total:
            self.stream.write('\n')
        self.stream.flush()


@dataclasses.dataclass
class PredictResult:
    """Output names written, and (input path, reason) of skipped images."""
    written: list
    skipped: list


def predict_images(backend: Backend, descriptor: datasets.DatasetDescriptor,
                   image_paths: Sequence[str], output_dir: str,
                   progress: Optional[Progress] = None) -> PredictResult:
    """Predicts and writes every image; unreadable ones are skipped."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f'Output folder {output_dir} is a file.')
    os.makedirs(output_dir, exist_ok=True)
    names = output_names(image_paths)
    progress = progress or Progress(len(image_paths))
    result = PredictResult([], [])
    for done, path in enumerate(image_paths, start=1):
        try:
            image = read_rgb_image(path)
        except ValueError as error:
            logging.warning('Skipping an unreadable image: %s', error)
            result.skipped.append((path, str(error)))
        else:
            prediction = predict_image(backend, image, descriptor, path)
            write_prediction(output_dir, names[path], path, prediction,
                             descriptor)
            result.written.append(names[path])
        progress.update(done, os.path.basename(path))
    return result


def run(config_file: str, input_pattern: str, output_dir: str,
        checkpoint_path: Optional[str] = None,
        saved_model: Optional[str] = None,
        config_overrides: Iterable[str] = (),
        progress: Optional[Progress] = None) -> PredictResult:
    """What scripts/predict.py does: config -> back-end -> every image."""
    config = config_lib.load_config(config_file, config_overrides)
    try:
        descriptor = datasets.get_dataset_descriptor(
            config.eval_dataset_options.dataset)
    except ValueError as error:
        raise ValueError(f'{config_file}: {error}') from None
    # Find the images first: a wrong glob should fail before model loading.
    image_paths = find_images(input_pattern, exclude_dir=output_dir)
    backend = build_backend(config, checkpoint_path, saved_model,
                            config_name=str(config_file))
    return predict_images(backend, descriptor, image_paths, output_dir,
                          progress)
