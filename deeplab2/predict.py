"""Panoptic predictions on a folder of the user's own images (no labels).

`run` is what scripts/predict.py does: find the images
(`predict_inputs`), run a `Predictor` on each at its own size (a checkpoint
or an export: SavedModel, .tflite or .onnx), and write `<name>_panoptic.png`,
`<name>_overlay.jpg` and `<name>_segments.json` (`predict_outputs`, which
documents the files). A semantic-only model (no instance branch) or a
semantic-only dataset (no instances) gets `<name>_semantic.png` (each
pixel's class as its eval id, 8 or 16 bits) instead of the panoptic PNG,
an overlay of the semantic map, and a `<name>_segments.json` with one
entry per class present. A model with an instance branch on a
semantic-only dataset is refused (`builder.check_model_suits_dataset`).

Images run at their own size, never resized or padded: the ASPP image
pooling is global (deeplab2.model.decoder.aspp), so any size works, and an
image of exactly the eval crop size gives what the evaluator computes. A
.tflite or .onnx export takes only the size it was exported at, and says
so (deeplab2.runtimes). The
config is needed with either back-end for the label space (divisor, void
label, class names, palette).

An image that cannot be read is named in a warning and skipped; the others
still run (one corrupt file in a folder of thousands should not cost the
rest), and the result lists the skipped files.
"""

import dataclasses
import os
from typing import Callable, Iterable, Optional, Sequence

from absl import logging
import numpy as np

from deeplab2 import config as config_lib
from deeplab2 import progress as progress_lib
from deeplab2.data import datasets
from deeplab2.model import builder
from deeplab2.predict_inputs import find_images
from deeplab2.predict_inputs import output_names
from deeplab2.predict_inputs import read_rgb_image
from deeplab2.predict_outputs import Prediction
from deeplab2.predict_outputs import prediction_from_maps
from deeplab2.predict_outputs import write_prediction
from deeplab2.predictor import build_predictor


# image uint8 [H, W, 3] -> {key: [H, W] array}; a Predictor is one.
Backend = Callable[[np.ndarray], dict]


def predict_image(backend: Backend, image: np.ndarray,
                  descriptor: datasets.DatasetDescriptor,
                  image_name: Optional[str] = None) -> Prediction:
    """Runs the back-end on one uint8 [H, W, 3] image."""
    return prediction_from_maps(backend(image), image, descriptor,
                                image_name)


@dataclasses.dataclass
class PredictResult:
    """Output names written, and (input path, reason) of skipped images."""
    written: list
    skipped: list


def predict_images(backend: Backend, descriptor: datasets.DatasetDescriptor,
                   image_paths: Sequence[str], output_dir: str,
                   progress: Optional[progress_lib.Progress] = None
                   ) -> PredictResult:
    """Predicts and writes every image; unreadable ones are skipped.

    progress: by default a line redrawn on a terminal's stderr, silent
    elsewhere (logs get the caller's summary).
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f'Output folder {output_dir} is a file.')
    os.makedirs(output_dir, exist_ok=True)
    names = output_names(image_paths)
    progress = progress or progress_lib.Progress(len(image_paths),
                                                 unit='image')
    result = PredictResult([], [])
    for path in image_paths:
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
        progress.advance(detail=os.path.basename(path))
    return result


def run(config_file: str, input_pattern: str, output_dir: str,
        checkpoint_path: Optional[str] = None,
        exported: Optional[str] = None,
        config_overrides: Iterable[str] = (),
        progress: Optional[progress_lib.Progress] = None,
        precision: Optional[str] = None) -> PredictResult:
    """What scripts/predict.py does: config -> back-end -> every image.

    The eval dataset (built-in or a spec file) is looked up once; its
    descriptor names the classes and drives post-processing. precision:
    the checkpoint model's (model/precision.py).

    Raises:
      ConfigError: among others, a model with an instance branch on a
        semantic-only dataset (before images are searched or the model
        built)."""
    config = config_lib.load_config(config_file, config_overrides)
    descriptor = datasets.eval_dataset_descriptor(config, config_file)
    builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                      descriptor)
    # Find the images first: a wrong glob should fail before model loading.
    image_paths = find_images(input_pattern, exclude_dir=output_dir)
    backend = build_predictor(config, checkpoint_path, exported,
                              config_name=str(config_file),
                              descriptor=descriptor, precision=precision)
    return predict_images(backend, descriptor, image_paths, output_dir,
                          progress)
