"""The run modes (see `modes`) around Trainer and Evaluator: building the
model, optimizer and checkpoint manager, restoring or resuming, the
training loop (its after-step work is in `hooks`) and evaluation.

`run(config, mode, model_dir, strategy)` is what the CLI calls. It looks
the datasets up once (a built-in name or a dataset spec file) and hands
their descriptors to the input pipeline, loss, post-processing, metrics
and prediction writer, none of which looks a dataset up again. A
semantic-only dataset (no instances) trains and evaluates a model without
an instance branch (mIoU alone); one with an instance branch is refused
before anything is built or written.
"""

import dataclasses
import json
import os
import re
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from deeplab2 import compat
from deeplab2 import files
from deeplab2 import loss as loss_lib
from deeplab2.data import datasets
from deeplab2.data import input_pipeline
from deeplab2.evaluation import prediction_writer
from deeplab2.model import builder
from deeplab2.model import inference as inference_lib
from deeplab2.model.layers import training_noise
from deeplab2.trainer import evaluator as evaluator_lib
from deeplab2.trainer import hooks as hooks_lib
from deeplab2.trainer import schedules
from deeplab2.trainer import trainer as trainer_lib
from deeplab2.trainer.modes import MODES

CHECKPOINT_NAME = 'ckpt'
TRAIN_LOG = 'train_log.jsonl'

# What a save killed half way leaves in model_dir: TensorFlow stages a
# sharded save in `<prefix>_temp/` before merging it into `<prefix>.index`,
# and writes the `checkpoint` state file via `checkpoint.tmp<uuid hex>`.
_STALE_CHECKPOINT_TEMPORARIES = (
    re.compile(rf'{CHECKPOINT_NAME}-\d+_temp'),
    re.compile(r'checkpoint\.tmp[0-9a-f]{32}'),
)


@dataclasses.dataclass
class _Session:
    """Everything built once per run.

    `train_dataset` and `eval_dataset` are the descriptors of the config's
    datasets, looked up once; None for the one the mode does not read.
    """
    model: object
    optimizer: object
    global_step: tf.Variable
    manager: tf.train.CheckpointManager
    train_dataset: datasets.DatasetDescriptor | None = None
    eval_dataset: datasets.DatasetDescriptor | None = None


def run(config, mode: str, model_dir: str,
        strategy: tf.distribute.Strategy | None = None,
        seed: int | None = None) -> dict:
    """Runs `mode`; returns the last evaluation metrics (or train losses)."""
    if mode not in MODES:
        raise ValueError(f'--mode must be one of {", ".join(MODES)}, got '
                         f'{mode!r}.')
    strategy = strategy or tf.distribute.get_strategy()
    # Before anything is built or written: a bad dataset spec, or a model
    # the dataset cannot train, fails first.
    train_dataset, eval_dataset = _dataset_descriptors(config, mode)
    if mode in ('train_and_eval', 'continuous_eval'):
        # A wrong eval file_pattern fails now, not after training or at the
        # first checkpoint ('eval' reads the files right away).
        input_pipeline.resolve_files(config.eval_dataset_options,
                                     'eval_dataset_options',
                                     is_training=False,
                                     descriptor=eval_dataset)
    os.makedirs(model_dir, exist_ok=True)
    session = _build_session(config, model_dir, strategy, seed)
    session.train_dataset, session.eval_dataset = train_dataset, eval_dataset
    if mode == 'eval':
        if not _restore_latest(session):
            raise FileNotFoundError(
                f'--mode=eval found no checkpoint in {model_dir}; train '
                'first or point --model_dir at a training run.')
        return _evaluate(config, session, strategy, model_dir)
    if mode == 'continuous_eval':
        return _continuous_eval(config, session, strategy, model_dir)
    # Only training writes checkpoints: an evaluator watching the same
    # model_dir must not touch a save in progress.
    _remove_stale_checkpoint_temporaries(model_dir)
    _restore_or_initialize(config, session)
    _drop_log_lines_after(os.path.join(model_dir, TRAIN_LOG),
                          int(session.global_step.numpy()))
    return _train(config, session, strategy, model_dir, seed,
                  evaluate=mode == 'train_and_eval')


def _dataset_descriptors(config, mode: str):
    """(train, eval) DatasetDescriptor of `config`, each looked up only if
    `mode` reads that dataset (else None).

    Raises:
      ConfigError: a model with an instance branch on a semantic-only
        dataset (`builder.check_model_suits_dataset`).
    """
    def lookup(field):
        descriptor = datasets.get_dataset_descriptor(
            getattr(config, field).dataset)
        builder.check_model_suits_dataset(config, field, descriptor)
        return descriptor
    trains = mode in ('train', 'train_and_eval')
    evaluates = mode != 'train'
    return (lookup('train_dataset_options') if trains else None,
            lookup('eval_dataset_options') if evaluates else None)


def _build_session(config, model_dir, strategy, seed) -> _Session:
    trainer_options = config.trainer_options
    with strategy.scope():
        model = builder.build_model(config)
        optimizer = schedules.build_optimizer(trainer_options.solver_options)
        if keras.mixed_precision.global_policy().name == 'mixed_float16':
            # float16 gradients underflow without dynamic loss scaling.
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False,
                                  name='global_step')
        # Dropout / drop path draw from it; checkpointed so that a resumed
        # run continues the same random stream.
        noise = training_noise.create_generator(seed)
        checkpoint = tf.train.Checkpoint(global_step=global_step,
                                         optimizer=optimizer,
                                         training_noise=noise,
                                         **model.checkpoint_items)
        manager = tf.train.CheckpointManager(
            checkpoint, model_dir, checkpoint_name=CHECKPOINT_NAME,
            max_to_keep=trainer_options.num_checkpoints_to_keep)
    return _Session(model, optimizer, global_step, manager)


def _restore_latest(session) -> bool:
    latest = session.manager.latest_checkpoint
    if latest:
        _read_checkpoint(session, latest)
        logging.info('Restored %s (step %d).', latest,
                     int(session.global_step.numpy()))
    return bool(latest)


def _read_checkpoint(session, path):
    """Restores the whole training state; a damaged checkpoint is one
    CorruptCheckpointError naming it."""
    with compat.unreadable_is_corrupt(path):
        session.manager.checkpoint.read(path).expect_partial()


def _restore_or_initialize(config, session):
    if not _restore_latest(session):
        summary = compat.restore_initial_checkpoint(
            session.model, config.model_options)
        if summary is not None:
            logging.info('%s', summary)


def _remove_stale_checkpoint_temporaries(model_dir):
    """Deletes what checkpoint saves killed half way left in model_dir
    (only TensorFlow's temporary names, only at the top of model_dir)."""
    for name in os.listdir(model_dir):
        if not any(pattern.fullmatch(name)
                   for pattern in _STALE_CHECKPOINT_TEMPORARIES):
            continue
        path = os.path.join(model_dir, name)
        logging.info('Removing %s, left by an interrupted checkpoint save.',
                     path)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _drop_log_lines_after(log_path, step):
    """Keeps the train log's lines up to `step`, the restored checkpoint.

    A run killed after its last checkpoint logged steps that the resumed run
    trains (and logs) again; a kill while appending can also leave a torn
    last line. Both go, so that every step is logged once. The file is
    rewritten atomically: a kill now loses nothing.
    """
    if not os.path.exists(log_path):
        return
    with open(log_path) as f:
        lines = f.read().splitlines()
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) == len(lines):
        return
    logging.info('Dropping %d lines past step %d from %s.',
                 len(lines) - len(kept), step, log_path)

    def write(path):
        with open(path, 'w') as f:
            f.writelines(line + '\n' for line in kept)

    files.write_atomically(log_path, write)


def _logged_step(line) -> float:
    """The step of a train log line; infinity for a torn line (unreadable
    lines come only from a kill while appending, after the last save)."""
    try:
        return json.loads(line)['step']
    except (ValueError, KeyError, TypeError):
        return float('inf')


def _train(config, session, strategy, model_dir, seed, evaluate):
    """Trains from the restored step to training_number_of_steps, in chunks
    of up to steps_per_loop steps that end at every hook's boundary; returns
    the last metrics (train_and_eval) or the last chunk's losses."""
    trainer_options = config.trainer_options
    total_steps = trainer_options.solver_options.training_number_of_steps
    start_step = int(session.global_step.numpy())
    trainer, iterator, files = _build_trainer(config, session, strategy,
                                              seed, start_step)
    evaluation = hooks_lib.EvalHook(
        lambda: _evaluate(config, session, strategy, model_dir),
        config.evaluator_options.eval_interval)
    hooks = _training_hooks(config, session, model_dir, start_step) + (
        [evaluation] if evaluate else [])
    step, losses = start_step, {}
    while step < total_steps:
        num_steps = hooks_lib.steps_to_next_boundary(
            step, total_steps, max(1, trainer_options.steps_per_loop),
            [hook.every for hook in hooks])
        started = time.perf_counter()
        with input_pipeline.explained_read_errors(files):
            losses = trainer.train(iterator, num_steps)
        trainer_lib.check_finite(losses, step + num_steps)
        step += num_steps
        session.global_step.assign(step)
        chunk = hooks_lib.Chunk(
            step, total_steps, num_steps, time.perf_counter() - started,
            losses, _current_learning_rate(session.optimizer),
            config.train_dataset_options.batch_size)
        for hook in hooks:
            hook(chunk)
    return evaluation.metrics if evaluate else losses


def _build_trainer(config, session, strategy, seed, start_step):
    """(Trainer, iterator over the training batches from start_step on,
    the resolved input files)."""
    dataset_options = config.train_dataset_options
    descriptor = session.train_dataset
    files = input_pipeline.resolve_files(dataset_options,
                                         descriptor=descriptor)
    dataset = strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.build_dataset(
            dataset_options, is_training=True, input_context=context,
            seed=seed, skip_batches=start_step, files=files,
            descriptor=descriptor))
    trainer = trainer_lib.Trainer(
        strategy, session.model, _build_loss(config, descriptor),
        session.optimizer, global_batch_size=dataset_options.batch_size,
        gradient_transform=schedules.gradient_transform(
            config.trainer_options.solver_options,
            session.model.encoder.trainable_variables))
    return trainer, iter(dataset), files


def _training_hooks(config, session, model_dir, start_step) -> list:
    """Progress, train log, summaries and checkpoints, in that order."""
    trainer_options = config.trainer_options
    total_steps = trainer_options.solver_options.training_number_of_steps
    writer = tf.summary.create_file_writer(os.path.join(model_dir, 'train'))
    return [
        hooks_lib.ProgressHook(total_steps, start_step),
        hooks_lib.TrainLogHook(os.path.join(model_dir, TRAIN_LOG)),
        hooks_lib.SummaryHook(writer, trainer_options.save_summaries_steps),
        hooks_lib.CheckpointHook(session.manager,
                                 trainer_options.save_checkpoints_steps),
    ]


def _build_loss(config, descriptor):
    return loss_lib.build_loss(config, descriptor)


def _current_learning_rate(optimizer) -> float:
    rate = optimizer.learning_rate
    if callable(rate):
        rate = rate(optimizer.iterations)
    return float(rate)


def _evaluate(config, session, strategy, model_dir) -> dict:
    descriptor = session.eval_dataset
    files, dataset = input_pipeline.build_eval_dataset(config, descriptor)
    inference = inference_lib.build_inference(config, session.model,
                                              descriptor=descriptor)
    evaluator = evaluator_lib.Evaluator(strategy, inference, descriptor)
    step = int(session.global_step.numpy())
    writer = tf.summary.create_file_writer(os.path.join(model_dir, 'eval'))
    summarize = _image_summaries(writer, step, descriptor,
                                 config.evaluator_options.num_vis_samples)
    predictions_writer = prediction_writer.PredictionWriter.from_config(
        config, model_dir, descriptor)

    def on_image(*image_results):
        summarize(*image_results)
        if predictions_writer is not None:
            predictions_writer.write(*image_results)

    try:
        with input_pipeline.explained_read_errors(files):
            metrics = evaluator.evaluate(
                dataset, config.evaluator_options.eval_steps,
                on_image=on_image)
    finally:
        if predictions_writer is not None:
            predictions_writer.close()
    scalars = {key: float(value) for key, value in metrics.items()
               if _is_scalar(value)}
    hooks_lib.write_scalars(writer, step, scalars)
    logging.info('eval at step %d: %s', step, ' '.join(
        f'{key}={value:.4f}' for key, value in sorted(scalars.items())))
    # One line per evaluation: the scalars, then each class's values under
    # its name (a spec dataset's own class names).
    per_class = evaluator_lib.per_class_by_name(metrics, descriptor)
    with open(os.path.join(model_dir, 'eval_results.json'), 'a') as f:
        f.write(json.dumps({'step': step, **scalars,
                            'per_class': per_class}) + '\n')
    return scalars


def _image_summaries(writer, step, descriptor, num_samples):
    """on_image callback writing the first num_samples eval images with
    their colored predictions and ground truth to TensorBoard."""
    written = [0]
    shown = ('image', 'semantic_prediction', 'panoptic_prediction',
             'panoptic_label')

    def write(name, image, predictions, labels):
        if written[0] >= num_samples:
            return
        drawn = prediction_writer.pictures(descriptor, image, predictions,
                                           labels)
        panels = [drawn[kind] for kind in shown if kind in drawn]
        with writer.as_default():
            tf.summary.image(f'eval/sample_{written[0]}',
                             np.concatenate(panels, axis=1)[None], step=step)
        written[0] += 1

    return write


def _is_scalar(value) -> bool:
    try:
        return tf.convert_to_tensor(value).shape.rank == 0
    except (TypeError, ValueError):
        return False


def _continuous_eval(config, session, strategy, model_dir) -> dict:
    timeout = config.evaluator_options.continuous_eval_timeout
    total = config.trainer_options.solver_options.training_number_of_steps
    metrics = {}
    for path in tf.train.checkpoints_iterator(
            model_dir, timeout=None if timeout < 0 else timeout):
        _read_checkpoint(session, path)
        metrics = _evaluate(config, session, strategy, model_dir)
        if int(session.global_step.numpy()) >= total:
            break
    return metrics
