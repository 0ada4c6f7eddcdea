"""MultiWorkerMirroredStrategy: two local worker processes (TF_CONFIG on
127.0.0.1) train together and end with the same weights."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

_WORKER = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    from deeplab2.trainer.train import create_strategy
    strategy = create_strategy(None, 0)
    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    import keras
    from deeplab2 import common, config as config_lib
    from deeplab2.data import datasets
    from deeplab2.loss import build_loss
    from deeplab2.model import builder
    from deeplab2.trainer import schedules, trainer as trainer_lib
    config = config_lib.load_config(sys.argv[1], [
        'model_options.backbone.backbone_width_multiplier=0.35'])
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = builder.build_model(config)
        optimizer = schedules.build_optimizer(
            config.trainer_options.solver_options)
    rng = np.random.RandomState(0)
    shape = [4, 33, 49]
    batch = {
        common.IMAGE: rng.uniform(0, 255, shape + [3]).astype('float32'),
        common.GT_SEMANTIC_KEY: rng.choice([0, 1, 11], size=shape).astype('int32'),
        common.GT_INSTANCE_CENTER_KEY: rng.uniform(0, 1, shape).astype('float32'),
        common.GT_INSTANCE_REGRESSION_KEY: rng.normal(0, 5, shape + [2]).astype('float32'),
        common.SEMANTIC_LOSS_WEIGHT_KEY: np.ones(shape, 'float32'),
        common.CENTER_LOSS_WEIGHT_KEY: np.ones(shape, 'float32'),
        common.REGRESSION_LOSS_WEIGHT_KEY: np.ones(shape, 'float32'),
    }
    trainer = trainer_lib.Trainer(
        strategy, model, build_loss(config, datasets.CITYSCAPES_PANOPTIC),
        optimizer, global_batch_size=4)
    data = strategy.distribute_datasets_from_function(
        lambda context: tf.data.Dataset.from_tensors(
            {k: v[:2] for k, v in batch.items()}).repeat())
    losses = trainer.train(iter(data), 2)
    total = sum(float(np.sum(v.numpy())) for v in model.trainable_variables)
    print('RESULT', losses['total_loss'], total)
''')


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_local_workers_agree():
    config = (REPO_ROOT / 'configs/demo/'
              'panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    workers = [f'127.0.0.1:{port}' for port in _free_ports(2)]
    processes = []
    for index in range(2):
        env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', 'TF_CONFIG':
               json.dumps({'cluster': {'worker': workers},
                           'task': {'type': 'worker', 'index': index}})}
        processes.append(subprocess.Popen(
            [sys.executable, '-c', _WORKER, str(config)], env=env,
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    results = []
    for process in processes:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        line = next(l for l in out.splitlines() if l.startswith('RESULT'))
        results.append([float(x) for x in line.split()[1:]])
    assert results[0] == results[1]
