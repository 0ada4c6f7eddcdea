"""What the training loop does after each chunk of steps, one concern per
hook: the progress line, the train log, TensorBoard scalars, checkpoints
and evaluation.

A hook is a callable taking the `Chunk` of steps just run, with an
`every` attribute: the interval it acts at (0: none), which the loop also
stops at so that no chunk steps over one. `runner._train` calls
`Trainer.train` for the steps up to the next boundary
(`steps_to_next_boundary`) and then each hook in turn.
"""

import dataclasses
import json

import tensorflow as tf

from deeplab2 import progress


@dataclasses.dataclass(frozen=True)
class Chunk:
    """The steps one `Trainer.train` call just ran.

    Attributes:
      step: the global step after them.
      total_steps: training_number_of_steps.
      num_steps: how many steps the call ran.
      seconds: how long it took.
      losses: {term: mean over the chunk}.
      learning_rate: the learning rate now.
      batch_size: examples per step over all replicas.
    """
    step: int
    total_steps: int
    num_steps: int
    seconds: float
    losses: dict
    learning_rate: float
    batch_size: int

    @property
    def steps_per_s(self) -> float:
        return self.num_steps / self.seconds

    @property
    def images_per_s(self) -> float:
        return self.num_steps * self.batch_size / self.seconds


def is_due(step: int, total_steps: int, every: int) -> bool:
    """At multiples of `every` and at the end; `every` 0: at the end only
    (eval_interval 0 means that in DeepLab2)."""
    return step == total_steps or (every > 0 and step % every == 0)


def steps_to_next_boundary(step: int, total_steps: int, steps_per_loop: int,
                           boundaries) -> int:
    """Steps for the next tf.function call: up to steps_per_loop, stopping
    at the next multiple of each boundary (0: none) and at the end."""
    stop = min([total_steps, step + steps_per_loop] + [
        (step // every + 1) * every for every in boundaries if every > 0])
    return stop - step


class ProgressHook:
    """The progress line after every chunk: a live bar on terminals, logged
    lines otherwise, with the losses, learning rate and images/s."""

    every = 0

    def __init__(self, total_steps: int, start_step: int):
        self.progress = progress.Progress(total_steps, label='step',
                                          unit='step', done=start_step,
                                          log_when_quiet=True)

    def __call__(self, chunk: Chunk) -> None:
        terms = ' '.join(f'{key}={value:.4f}'
                         for key, value in chunk.losses.items())
        self.progress.update(
            chunk.step, f'{terms} lr={chunk.learning_rate:.3g} '
            f'{chunk.images_per_s:.1f} images/s')


class TrainLogHook:
    """Appends `{"step", "learning_rate", <losses>}` to the JSON-lines train
    log after every chunk (resume trims the lines past its checkpoint)."""

    every = 0

    def __init__(self, path: str):
        self.path = path

    def __call__(self, chunk: Chunk) -> None:
        with open(self.path, 'a') as f:
            f.write(json.dumps({'step': chunk.step,
                                'learning_rate': chunk.learning_rate,
                                **chunk.losses}) + '\n')


class SummaryHook:
    """Losses, learning rate and speed as TensorBoard scalars, every
    save_summaries_steps and at the end."""

    def __init__(self, writer, every: int):
        self.writer, self.every = writer, every

    def __call__(self, chunk: Chunk) -> None:
        if is_due(chunk.step, chunk.total_steps, self.every):
            write_scalars(self.writer, chunk.step, {
                **chunk.losses, 'learning_rate': chunk.learning_rate,
                'steps_per_s': chunk.steps_per_s,
                'images_per_s': chunk.images_per_s})


class CheckpointHook:
    """Saves `ckpt-N`, N the step, every save_checkpoints_steps and at the
    end. Numbered by step as DeepLab2 does: the manager's own interval
    counts from the first save instead (ckpt-1, ckpt-3, ...)."""

    def __init__(self, manager: tf.train.CheckpointManager, every: int):
        self.manager, self.every = manager, every

    def __call__(self, chunk: Chunk) -> None:
        if is_due(chunk.step, chunk.total_steps, self.every):
            self.manager.save(checkpoint_number=chunk.step)


class EvalHook:
    """Calls `evaluate()` (returning the metrics) every eval_interval steps
    and at the end; keeps the last metrics in `metrics`."""

    def __init__(self, evaluate, every: int):
        self.evaluate, self.every = evaluate, every
        self.metrics = {}

    def __call__(self, chunk: Chunk) -> None:
        if is_due(chunk.step, chunk.total_steps, self.every):
            self.metrics = self.evaluate()


def write_scalars(writer, step: int, values: dict) -> None:
    """Writes `values` as scalars at `step` and flushes, so TensorBoard (and
    a run killed next) sees them."""
    with writer.as_default():
        for key, value in values.items():
            tf.summary.scalar(key, value, step=step)
    writer.flush()
