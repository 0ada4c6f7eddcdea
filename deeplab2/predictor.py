"""`Predictor`: RGB images in, panoptic maps out, numpy on both sides.

    predictor = Predictor.from_checkpoint('config.textproto', '/ckpt')
    maps = predictor(image)            # uint8 [H, W, 3] -> {key: [H, W]}
    maps = predictor(images)           # uint8 [B, H, W, 3] -> {key: [B, H, W]}

The maps are `serving.PREDICTION_KEYS`: `panoptic_pred` (class *
label_divisor + instance), `semantic_pred`, `instance_pred`,
`instance_center_pred` and `instance_scores` (a semantic-only model has the
semantic map only). Images of any size run at that size (ASPP pooling is
global); one batch holds images of one size.

The back-ends give the same maps: the config's model with a checkpoint's
weights (through `deeplab2.model.inference`), an exported SavedModel's
`serving_default` signature (deeplab2.export), or an exported .tflite or
.onnx file run by LiteRT or ONNX Runtime (`deeplab2.runtimes`; these take
the size they were exported at). An export carries no label space:
`predictor.config` is None then, and callers that name classes need the
training config.
"""

import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import runtimes
from deeplab2 import serving
from deeplab2.compat import checkpoint as checkpoint_lib
from deeplab2.model import builder
from deeplab2.model import inference

# uint8 [B, H, W, 3] -> {key: [B, H, W] numpy}
BatchFunction = Callable[[np.ndarray], dict]


class Predictor:
    """Runs a restored model, or an exported one, on numpy images.

    Build one with `from_checkpoint` or `from_export`; the constructor
    takes any function of a uint8 batch to a dict of batched numpy maps.

    Attributes:
      config: the ExperimentOptions (None for a SavedModel).
      model: the restored Keras model, the loaded SavedModel object, or a
        `runtimes.ExportedFile`.
    """

    def __init__(self, predict_batch: BatchFunction, config=None,
                 model=None):
        self._predict_batch = predict_batch
        self.config = config
        # Also what keeps a loaded SavedModel alive: its signatures do not.
        self.model = model

    @classmethod
    def from_checkpoint(cls, config_or_path, checkpoint, overrides=(),
                        config_name: str = '', descriptor=None,
                        precision: Optional[str] = None) -> 'Predictor':
        """The model of a config (an ExperimentOptions, or a textproto path
        with `overrides`) with weights from a checkpoint: ours or
        DeepLab2's, a prefix, a folder or a model-zoo .tar.gz.

        config_name names the config in a mismatch error (default: the
        path, when one is given). descriptor: the eval dataset's
        DatasetDescriptor when the caller has looked it up (default: looked
        up from the config). precision: 'float32' or 'bfloat16'
        (model/precision.py; None: the global Keras policy).
        """
        if isinstance(config_or_path, (str, os.PathLike)):
            config = config_lib.load_config(config_or_path, list(overrides))
            config_name = config_name or str(config_or_path)
        else:
            config = config_or_path
        model = builder.build_model(config, precision=precision)
        checkpoint_lib.restore_checkpoint(model, str(checkpoint),
                                          expected=config_name)
        # One trace for every batch and size: the shape is left unknown.
        run = tf.function(
            inference.build_inference(config, model, descriptor=descriptor),
            input_signature=[tf.TensorSpec([None, None, None, 3],
                                           tf.float32)])

        def predict_batch(images):
            outputs = run(tf.constant(images, tf.float32))
            return {key: outputs[key].numpy()
                    for key in serving.PREDICTION_KEYS if key in outputs}

        return cls(predict_batch, config, model)

    @classmethod
    def from_saved_model(cls, path) -> 'Predictor':
        """An export of deeplab2.export: its `serving_default` signature,
        checked to take `images` and return every prediction key (a
        semantic-only model's export: `semantic_pred` alone)."""
        path = str(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f'SavedModel folder {path} not found.')
        loaded = tf.saved_model.load(path)
        serve = _serving_signature(loaded, path)

        def predict_batch(images):
            outputs = serve(**{serving.IMAGES_INPUT: tf.constant(
                images, tf.uint8)})
            return {key: outputs[key].numpy()
                    for key in serving.PREDICTION_KEYS if key in outputs}

        return cls(predict_batch, model=loaded)

    @classmethod
    def from_export(cls, path, num_threads: Optional[int] = None
                    ) -> 'Predictor':
        """An export of deeplab2.export: a SavedModel folder, or a .tflite
        or .onnx file run by its runtime (num_threads: the runtime's CPU
        threads, None: its default), checked to return the maps."""
        path = str(path)
        if os.path.isdir(path):
            return cls.from_saved_model(path)
        exported = runtimes.load(path, num_threads)
        _check_prediction_outputs(exported.output_names, path)

        def predict_batch(images):
            outputs = exported(images)
            return {key: outputs[key] for key in serving.PREDICTION_KEYS
                    if key in outputs}

        return cls(predict_batch, model=exported)

    def __call__(self, images) -> dict:
        """uint8 RGB [H, W, 3] -> {key: [H, W]}, or [B, H, W, 3] ->
        {key: [B, H, W]}.

        Raises:
          TypeError: not uint8 (a float image's range is ambiguous).
          ValueError: not one or a batch of non-empty RGB images.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError('Predictor takes uint8 RGB images (0-255); got '
                            f'dtype {images.dtype}.')
        single = images.ndim == 3
        batch = images[np.newaxis] if single else images
        if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape:
            raise ValueError('Predictor takes RGB images [H, W, 3] or '
                             f'[B, H, W, 3]; got shape {images.shape}.')
        outputs = self._predict_batch(batch)
        if single:
            return {key: value[0] for key, value in outputs.items()}
        return outputs


def _serving_signature(loaded, path: str):
    """The `serving_default` function, after checking the contract."""
    signatures = loaded.signatures
    name = serving.DEFAULT_SIGNATURE
    if name not in signatures:
        raise ValueError(
            f'SavedModel {path} has no {name!r} signature; '
            f'it has {sorted(signatures.keys())}.')
    serve = signatures[name]
    inputs = serve.structured_input_signature[1]
    if serving.IMAGES_INPUT not in inputs:
        raise ValueError(
            f'SavedModel {path}: {name} takes {sorted(inputs)}, expected an '
            f'{serving.IMAGES_INPUT!r} input.')
    _check_prediction_outputs(serve.structured_outputs,
                              f'SavedModel {path}: {name}')
    return serve


def _check_prediction_outputs(outputs, what: str) -> None:
    """Refuses an export whose output names lack the maps: a
    network-only export (--nowith_postprocessing), or a panoptic one that
    lacks some. A semantic-only model exports its semantic map alone."""
    semantic_only = (set(serving.PREDICTION_KEYS) & set(outputs)
                     == {common.PRED_SEMANTIC_KEY})
    missing = [] if semantic_only else [
        key for key in serving.PREDICTION_KEYS if key not in outputs]
    if missing:
        raise ValueError(
            f'{what} lacks outputs {missing}; it returns {sorted(outputs)}'
            ' (an export --nowith_postprocessing holds the network outputs '
            'only).')


def build_predictor(config, checkpoint_path: Optional[str] = None,
                    exported: Optional[str] = None,
                    config_name: str = '', descriptor=None,
                    precision: Optional[str] = None) -> Predictor:
    """From exactly one of `checkpoint_path` and `exported` (a SavedModel
    folder, .tflite or .onnx file; `descriptor`, `precision`: see
    `Predictor.from_checkpoint`; an export computes in the precision it
    was exported in)."""
    if bool(checkpoint_path) == bool(exported):
        raise ValueError('Give exactly one of checkpoint_path and exported '
                         f'(got {checkpoint_path!r} and {exported!r}).')
    if exported:
        if precision not in (None, 'float32'):
            raise ValueError(f'precision {precision!r} applies to a '
                             'checkpoint; an export computes in the precision '
                             'it was exported with (scripts/export_model.py '
                             '--precision).')
        return Predictor.from_export(exported)
    return Predictor.from_checkpoint(config, checkpoint_path,
                                     config_name=config_name,
                                     descriptor=descriptor,
                                     precision=precision)
