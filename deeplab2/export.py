"""Export a trained model for serving: SavedModel, TFLite or ONNX.

The SavedModel is a `serving_module.ServingModule`: signatures
`serving_default` (uint8 `images` [batch, height, width, 3], any batch and
size) and `serving_encoded` (one JPEG/PNG string), returning the
post-processed maps and, on request, the raw network outputs. ASPP image
pooling is global at every input size (see model/decoder/aspp.py), so any
size behaves as in eval. TFLite and ONNX (`export_formats`) hold the same
signature at a fixed input size (TFLite: batch 1; ONNX: any batch), with
post-processing built from ops their converters lower
(model/portable_ops.py), or the network outputs only.

Every format is staged under a hidden name next to `output_path` and
renamed at the end (deeplab2.files): a failed export leaves nothing at
`output_path`, and the next successful export to that path removes what a
killed one left. Overwriting replaces a file, an empty folder or a
SavedModel, never another folder.
"""

import dataclasses
import pathlib
import tempfile

from absl import logging
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2 import files
from deeplab2.compat import checkpoint as checkpoint_lib
from deeplab2.data import datasets
from deeplab2.data import tfrecord
from deeplab2.export_formats import convert_to_onnx
from deeplab2.export_formats import convert_to_tflite
from deeplab2.model import builder
from deeplab2.model import precision as precision_lib
from deeplab2.serving_module import ExportOptions
from deeplab2.serving_module import ServingModule
from deeplab2.serving_module import build_predict_fn
from deeplab2.serving_module import save_serving_module

from deeplab2.serving import FORMATS
from deeplab2.serving import QUANTIZATIONS

# What tf.saved_model.save writes: a folder holding one of these is ours to
# replace (with --overwrite).
_SAVED_MODEL_FILES = ('saved_model.pb', 'saved_model.pbtxt')


def load_model(config, checkpoint_path, expected: str = '',
               precision: str | None = None):
    """The config's model with a checkpoint's weights (ours or DeepLab2's),
    computing in `precision` (model/precision.py; None: the global policy).

    checkpoint_path None keeps the random initial weights (benchmarks);
    the command line always asks for a checkpoint.
    """
    model = builder.build_model(config, precision=precision)
    if checkpoint_path is not None:
        summary = checkpoint_lib.restore_checkpoint(model, checkpoint_path,
                                                    expected=expected)
        logging.info('%s', summary)
    return model


def export_from_config(config_file, checkpoint_path, output_path,
                       export_format: str = 'saved_model',
                       options: ExportOptions = ExportOptions(),
                       overrides=(), overwrite: bool = False,
                       calibration_file_pattern: str | None = None,
                       calibration_images: int = 100,
                       precision: str | None = None) -> str:
    """What scripts/export_model.py runs: config file (+ overrides) and a
    checkpoint -> an export at output_path. An int8 export calibrates on
    the first `calibration_images` images of the records matching
    `calibration_file_pattern`. precision: the network's compute type
    (model/precision.py); bfloat16 is for SavedModels."""
    config = config_lib.load_config(str(config_file), list(overrides))
    _check_precision(export_format, precision)
    images = None
    if options.quantize == 'int8':
        _format_options(export_format, options)  # fail before reading
        images = read_calibration_images(calibration_file_pattern,
                                         calibration_images,
                                         options.input_size)
    # Looked up before the model is built: a bad dataset spec, or a model
    # with an instance branch on a semantic-only dataset, fails fast.
    descriptor = datasets.get_dataset_descriptor(
        config.eval_dataset_options.dataset)
    builder.check_model_suits_dataset(config, 'eval_dataset_options',
                                      descriptor)
    model = load_model(config, checkpoint_path, expected=str(config_file),
                       precision=precision)
    return export_model(config, model, output_path, export_format, options,
                        overwrite=overwrite, descriptor=descriptor,
                        calibration_images=images)


def read_calibration_images(file_pattern: str | None, count: int,
                            size) -> list:
    """The first `count` images of the TFRecords matching file_pattern
    (DeepLab2's format), as uint8 [height, width, 3] at `size` (resized
    bilinearly when a record's image has another size).

    Raises:
      ValueError: no pattern, or a count < 1.
      FileNotFoundError: no file matches.
    """
    if not file_pattern:
        raise ValueError('--quantize=int8 needs --calibration_file_pattern '
                         '(TFRecords of the target domain, e.g. the train '
                         'split).')
    if count < 1:
        raise ValueError(f'--calibration_images must be >= 1; got {count}.')
    paths = sorted(tf.io.gfile.glob(file_pattern))
    if not paths:
        raise FileNotFoundError(
            f'--calibration_file_pattern {file_pattern!r} matches no file.')
    records = tf.data.TFRecordDataset(paths).take(count).map(
        lambda record: tfrecord.decode_example(record, decode_label=False))
    images = []
    for example in records:
        image = example['image']
        if tuple(image.shape[:2]) != tuple(size):
            image = tf.cast(tf.round(tf.clip_by_value(tf.image.resize(
                image, size), 0, 255)), tf.uint8)
        images.append(image.numpy())
    return images


def export_model(config, model, output_path, export_format='saved_model',
                 options: ExportOptions = ExportOptions(),
                 overwrite: bool = False, descriptor=None,
                 calibration_images=None) -> str:
    """Writes `model` (built and restored) as `export_format` at
    output_path; returns output_path. `descriptor`: the eval dataset's
    (default: looked up from the config), whose thing classes, label
    divisor and void label the post-processing uses.
    calibration_images: uint8 [H, W, 3] images at the export size, for
    `options.quantize == 'int8'`.

    Raises:
      ValueError: unknown format, or options the format cannot hold.
      FileExistsError: output_path exists and overwrite is False, or it is
        a non-empty folder that is not a SavedModel.
    """
    if export_format not in FORMATS:
        raise ValueError(f'Unknown export format {export_format!r}; choose '
                         f'one of {", ".join(FORMATS)}.')
    output_path = pathlib.Path(output_path)
    if output_path.exists() and not overwrite:
        raise FileExistsError(f'{output_path} exists; remove it or pass '
                              'overwrite=True (--overwrite).')
    _check_replaceable(output_path)
    options = _format_options(export_format, options)
    _check_precision(export_format, precision_lib.of_model(model))
    if options.quantize == 'int8' and not calibration_images:
        raise ValueError('int8 quantization needs calibration images '
                         '(--calibration_file_pattern).')
    runtime = {'saved_model': 'tensorflow', 'onnx': 'onnx'}.get(
        export_format,
        'tflite_int8' if options.quantize == 'int8' else 'tflite')
    module = ServingModule(
        model, build_predict_fn(config, model, options, descriptor,
                                runtime=runtime),
        options.input_size,
        batch_size=1 if export_format == 'tflite' else None)
    if export_format == 'saved_model':
        with files.staged_folder(output_path, replace=overwrite) as staging:
            save_serving_module(module, staging)
    else:
        _write_file(output_path, _converted(module, export_format,
                                            options.quantize,
                                            calibration_images))
    # Only now: until the new export is in place, an old one moved aside by
    # an interrupted replacement may be the only copy.
    for stale in files.remove_stale_siblings(output_path):
        logging.info('Removed %s, left by an interrupted export.', stale)
    return str(output_path)


def _converted(module: ServingModule, export_format: str, quantize=None,
               calibration_images=None) -> bytes:
    if export_format == 'onnx':
        return convert_to_onnx(module)
    with tempfile.TemporaryDirectory() as folder:
        save_serving_module(module, folder, encoded=False)
        return convert_to_tflite(folder, quantize, calibration_images)


def _write_file(output_path: pathlib.Path, content: bytes) -> None:
    """Writes a TFLite/ONNX file through a staging sibling, so that it is
    removed with the others if this process is killed half way."""
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.is_dir():
        output_path.rmdir()  # empty: _check_replaceable let it through
    # The kind files.staged_folder uses: remove_stale_siblings knows it.
    staging = files.sibling_path(output_path, 'staging')
    files.write_atomically(
        str(output_path), lambda path: pathlib.Path(path).write_bytes(content),
        temporary=str(staging))


def _format_options(export_format: str, options: ExportOptions
                    ) -> ExportOptions:
    """options with the format's defaults filled in (post-processing: on);
    refuses what the format cannot hold."""
    if options.quantize is not None and export_format != 'tflite':
        raise ValueError(f'--quantize is for --format=tflite; got '
                         f'--format={export_format}.')
    if options.quantize is not None and options.quantize not in (
            QUANTIZATIONS):
        raise ValueError(f'Unknown --quantize={options.quantize}; choose one '
                         f'of {", ".join(QUANTIZATIONS)}.')
    if options.with_postprocessing is None:
        options = dataclasses.replace(options, with_postprocessing=True)
    if (export_format != 'saved_model' and options.with_postprocessing
            and options.input_size is None):
        raise ValueError(
            f'--format={export_format} with post-processing needs a fixed '
            'input size: pass --crop_size=height,width (the size of the '
            'images it will take), or --nowith_postprocessing for the '
            'network outputs at any size.')
    return options


def _check_precision(export_format: str, precision: str | None):
    """bfloat16 (or float16) compute goes into SavedModels only: LiteRT and
    ONNX Runtime have no bfloat16 convolutions on CPU; TFLite has
    --quantize for smaller types."""
    if precision in (None, 'float32') or export_format == 'saved_model':
        return
    raise ValueError(f'--precision={precision} is for --format=saved_model; '
                     f'--format={export_format} computes in float32 (see '
                     '--quantize for TFLite).')


def _check_replaceable(output_path: pathlib.Path):
    """Refuses to let an export replace a folder that holds something else.

    --overwrite is meant for an earlier export; a typo in --output_path must
    not delete, say, a dataset. An empty folder or a SavedModel can go.
    """
    if not output_path.is_dir() or not any(output_path.iterdir()):
        return
    if any((output_path / name).is_file() for name in _SAVED_MODEL_FILES):
        return
    raise FileExistsError(
        f'{output_path} is a folder that is not a SavedModel (it has no '
        'saved_model.pb); --overwrite replaces only an earlier export or an '
        'empty folder. Remove it yourself or choose another --output_path.')
