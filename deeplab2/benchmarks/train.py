"""Time of one training step (forward, loss, backward, optimizer update)
for a config's model, loss and solver."""

import numpy as np
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2.benchmarks import timing
from deeplab2.model import builder


def _random_batch(batch_size: int, height: int, width: int,
                  num_classes: int) -> dict:
    rng = np.random.RandomState(0)
    shape = [batch_size, height, width]
    return {
        common.IMAGE: rng.uniform(0, 255, shape + [3]).astype(np.float32),
        common.GT_SEMANTIC_KEY: rng.randint(0, num_classes, shape).astype(
            np.int32),
        common.GT_INSTANCE_CENTER_KEY: rng.uniform(0, 1, shape).astype(
            np.float32),
        common.GT_INSTANCE_REGRESSION_KEY: rng.normal(
            0, 10, shape + [2]).astype(np.float32),
        common.SEMANTIC_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
        common.CENTER_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
        common.REGRESSION_LOSS_WEIGHT_KEY: np.ones(shape, np.float32),
    }


def train_step(config_path: str, height: int = 257, width: int = 513,
               batch_size: int = 1, runs: int = 7, warmup: int = 2,
               precision: str = 'float32') -> dict:
    """{'config', 'input_shape', 'precision', 'device', 'step':
    timing.median_seconds} on a random batch (the step's cost does not
    depend on the values); the model computes in `precision`
    (model/precision.py: float32 weights either way)."""
    from deeplab2.data import datasets
    from deeplab2.loss import build_loss
    from deeplab2.trainer import schedules
    from deeplab2.trainer import trainer as trainer_lib
    config = config_lib.load_config(config_path)
    model = builder.build_model(config, precision=precision)
    optimizer = schedules.build_optimizer(
        config.trainer_options.solver_options)
    descriptor = datasets.get_dataset_descriptor(
        config.train_dataset_options.dataset)
    loss = build_loss(config, descriptor)
    trainer = trainer_lib.Trainer(tf.distribute.get_strategy(), model, loss,
                                  optimizer, batch_size)
    iterator = iter(tf.data.Dataset.from_tensors(
        _random_batch(batch_size, height, width,
                      descriptor.num_classes)).repeat())
    result = {'config': str(config_path),
              'input_shape': [batch_size, height, width, 3],
              'precision': precision, 'device': timing.device_name()}
    result['step'] = timing.median_seconds(lambda: trainer.train(iterator, 1),
                                           runs, warmup)
    return result
