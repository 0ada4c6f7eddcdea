"""Accuracy of an exported model, measured as training measures it.

`evaluate_export` runs a SavedModel folder, a .tflite file (LiteRT) or an
.onnx file (ONNX Runtime) over the config's eval dataset with the same
input pipeline, `trainer.evaluator.Evaluator` and metrics (PQ, mIoU, AP) as
`--mode=eval`, so the figures of a checkpoint and of each of its exports
(float, float16, int8) compare directly. What scripts/evaluate_export.py
runs.

The eval pipeline's images are float32 (padded with 127.5 up to the eval
crop size); exports take uint8, so they are rounded (a padded pixel
becomes 128). A .tflite or .onnx file must have been exported at the eval
crop size.
"""

import numpy as np
import tensorflow as tf

from deeplab2 import config as config_lib
from deeplab2.data import datasets
from deeplab2.data import input_pipeline
from deeplab2.predictor import Predictor
from deeplab2.trainer import evaluator as evaluator_lib


def evaluate_export(config_file, model_path, overrides=(),
                    num_threads: int | None = None,
                    eval_steps: int | None = None) -> dict:
    """{'model', metric scalars..., 'per_class'} of the export at
    model_path on the config's eval dataset (eval_steps batches; default:
    the config's evaluator_options.eval_steps, -1 for all)."""
    config = config_lib.load_config(str(config_file), list(overrides))
    descriptor = datasets.eval_dataset_descriptor(config, config_file)
    predictor = Predictor.from_export(model_path, num_threads)
    files, dataset = input_pipeline.build_eval_dataset(config, descriptor)

    def predict(images):
        return predictor(np.round(np.clip(images, 0, 255)).astype(np.uint8))

    evaluator = evaluator_lib.Evaluator(tf.distribute.get_strategy(),
                                        predict, descriptor, on_host=True)
    if eval_steps is None:
        eval_steps = config.evaluator_options.eval_steps
    with input_pipeline.explained_read_errors(files):
        metrics = evaluator.evaluate(dataset, eval_steps)
    scalars = {key: float(value) for key, value in metrics.items()
               if np.ndim(value) == 0}
    return {'model': str(model_path), **scalars,
            'per_class': evaluator_lib.per_class_by_name(metrics,
                                                         descriptor)}
