"""The eval benchmark on a tiny budget: it runs both evaluators on the same
files and they agree."""

import json
import subprocess
import sys

from deeplab2.evaluation import benchmark


def test_eval_speed_small(tmp_path):
    result = benchmark.eval_speed(str(tmp_path), num_images=2, height=129,
                                  width=257, runs=1)
    assert result['images'] == 2
    assert result['max_pq_sq_rq_difference'] < 1e-9
    assert result['same_result_from_files']
    assert 0 < result['pq'] < 1 and 0 < result['miou'] < 1
    for key in ('ours_in_memory_s', 'ours_from_files_s',
                'cityscapesscripts_s'):
        assert result[key] > 0


def test_synthetic_pair_has_every_case():
    gt, prediction = benchmark.synthetic_pair(0, 257, 513, num_instances=12)
    assert gt.shape == prediction.shape == (257, 513)
    classes = set((gt // 1000).ravel().tolist())
    assert 255 in classes and {0, 1, 2, 8, 10} <= classes
    crowd = (gt // 1000 == 11) & (gt % 1000 == 0)
    assert crowd.any()
    assert not (gt == prediction).all()


def test_cli_writes_json(tmp_path, repo_root):
    output = tmp_path / 'eval.json'
    subprocess.run([sys.executable, str(repo_root / 'scripts' / 'benchmark.py'),
                    'eval', '--num_images=1', '--height=65', '--width=129',
                    '--runs=1', f'--output={output}'], check=True,
                   cwd=repo_root, capture_output=True)
    result = json.loads(output.read_text())['eval'][0]
    assert result['max_pq_sq_rq_difference'] < 1e-9
