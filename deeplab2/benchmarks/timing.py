"""The one timer of the benchmarks, and the device the times are for."""

import statistics
import sys
import time
from typing import Callable


def timed_runs(fn: Callable[[], object], runs: int,
               warmup: int = 0) -> tuple[list, object]:
    """Calls fn `warmup` times untimed, then `runs` times timed.

    Returns:
      (seconds of each timed run, the last run's result).
    """
    for _ in range(warmup):
        _wait_for(fn())
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        _wait_for(result)
        times.append(time.perf_counter() - start)
    return times, result


def median_seconds(fn: Callable[[], object], runs: int, warmup: int) -> dict:
    """{'median_s', 'min_s', 'max_s', 'runs', 'warmup'} of timed_runs."""
    times, _ = timed_runs(fn, runs, warmup)
    return {'median_s': statistics.median(times), 'min_s': min(times),
            'max_s': max(times), 'runs': runs, 'warmup': warmup}


def _wait_for(result) -> None:
    # Tensors are computed asynchronously on accelerators: a run ends when
    # its tensors are ready. Without TensorFlow loaded there are none (and
    # the NumPy-only benchmarks do not pay for importing it).
    tf = sys.modules.get('tensorflow')
    if tf is None:
        return
    for value in tf.nest.flatten(result):
        if isinstance(value, tf.Tensor):
            value.numpy()


def device_name() -> str:
    """The first GPU's name, else 'CPU'."""
    import tensorflow as tf
    gpus = tf.config.list_logical_devices('GPU')
    return gpus[0].name if gpus else 'CPU'
