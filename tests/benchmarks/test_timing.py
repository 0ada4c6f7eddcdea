"""The benchmarks' timer and memory probe measure what they say."""

import time

import numpy as np
import pytest

from deeplab2.benchmarks import memory
from deeplab2.benchmarks import timing


def test_timed_runs_warm_up_then_time_each_call():
    calls = []

    def call():
        calls.append(len(calls))
        time.sleep(0.01 if len(calls) > 2 else 0)
        return len(calls)

    times, last = timing.timed_runs(call, runs=3, warmup=2)
    assert calls == [0, 1, 2, 3, 4] and last == 5
    # Seconds, the sleep included; the untimed warm-up runs not counted.
    assert len(times) == 3
    assert all(0.01 <= t < 1 for t in times)


def test_median_seconds_summarises_the_timed_runs():
    result = timing.median_seconds(lambda: time.sleep(0.005), runs=3,
                                   warmup=1)
    assert set(result) == {'median_s', 'min_s', 'max_s', 'runs', 'warmup'}
    assert (result['runs'], result['warmup']) == (3, 1)
    assert 0.005 <= result['min_s'] <= result['median_s'] <= result[
        'max_s'] < 1


def test_memory_is_in_bytes_and_the_peak_follows_an_allocation():
    if not memory.reset_peak_rss():
        pytest.skip('/proc/self/clear_refs is not writable here')
    before = memory.rss_bytes()
    assert 10 * 2**20 < before < 2**40  # bytes, not kB or pages
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, every page touched
    assert memory.peak_rss_bytes() - before >= 60 * 2**20
    del block
