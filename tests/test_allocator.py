"""allocator.keep_large_blocks: freed multi-megabyte blocks are reused
instead of mapped afresh (page faults counted in a fresh process)."""

import os
import subprocess
import sys

import pytest

_SCRIPT = '''
import resource, sys
import numpy as np
from deeplab2 import allocator
if sys.argv[1] == 'keep':
    assert allocator.keep_large_blocks()
def example():
    # Blocks alive together, of sizes like one example's tensors (MB).
    return [np.ones(size << 18, np.float32) for size in (8, 25, 3, 16)]
for _ in range(3):
    example()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    example()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
'''


def _page_faults_per_example(mode: str, **environment) -> int:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('MALLOC_')}
    env.update(environment)
    result = subprocess.run([sys.executable, '-c', _SCRIPT, mode],
                            capture_output=True, text=True, env=env,
                            check=True)
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='glibc malloc only')
def test_freed_blocks_are_reused_without_page_faults():
    # 52 MB are touched per example: ~13000 pages when mapped afresh.
    assert _page_faults_per_example('default') > 1000
    assert _page_faults_per_example('keep') < 100


def test_a_users_own_threshold_wins(monkeypatch):
    from deeplab2 import allocator
    monkeypatch.setenv('MALLOC_TRIM_THRESHOLD_', '0')
    assert not allocator.keep_large_blocks()
