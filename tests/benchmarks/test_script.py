"""scripts/benchmark.py: its table of benchmarks and its JSON output."""

import json
import subprocess
import sys


def _run(repo_root, *arguments):
    return subprocess.run(
        [sys.executable, str(repo_root / 'scripts' / 'benchmark.py'),
         *arguments], cwd=repo_root, capture_output=True, text=True)


def test_unknown_benchmark_is_rejected_with_the_names(repo_root):
    result = _run(repo_root, 'training')
    assert result.returncode != 0
    assert ('Name one benchmark: network, postprocess, input, train, eval, '
            'serve') in result.stderr


def test_eval_writes_the_printed_json(tmp_path, repo_root):
    output = tmp_path / 'eval.json'
    result = _run(repo_root, 'eval', '--num_images=1', '--height=65',
                  '--width=129', '--runs=1', f'--output={output}')
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads(output.read_text())
    assert written == json.loads(result.stdout)
    assert set(written['host']) == {'cpu_model', 'cpu_flags_bf16',
                                    'cpu_count'}
    [run] = written['eval']
    assert (run['images'], run['size']) == (1, [65, 129])
    assert len(run['ours_in_memory_runs_s']) == 1
    assert run['max_pq_sq_rq_difference'] < 1e-9
