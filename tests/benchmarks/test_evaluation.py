"""The eval benchmark on a tiny budget: both evaluators read the same files
and agree; its scene pairs hold every case PQ distinguishes."""

import numpy as np

from deeplab2.benchmarks import evaluation
from deeplab2.benchmarks import scenes

_KEYS = {'images', 'size', 'precision', 'cpu_count', 'ours_in_memory_s',
         'ours_in_memory_runs_s', 'ours_from_files_s',
         'ours_from_files_runs_s', 'reading_files_s',
         'reading_files_runs_s', 'speedup_bound_by_reading',
         'cityscapesscripts_s',
         'cityscapesscripts_runs_s', 'speedup_in_memory',
         'speedup_from_files', 'pq', 'miou', 'cityscapesscripts_pq',
         'max_pq_sq_rq_difference', 'same_result_from_files'}


def test_eval_speed_small(tmp_path):
    result = evaluation.eval_speed(str(tmp_path), num_images=2, height=129,
                                   width=257, runs=1)
    assert set(result) == _KEYS
    assert (result['images'], result['size']) == (2, [129, 257])
    assert result['max_pq_sq_rq_difference'] < 1e-9
    assert result['same_result_from_files']
    # The flaws cost quality, and some segments still match.
    assert 0 < result['pq'] < 1 and 0 < result['miou'] < 1
    assert abs(result['cityscapesscripts_pq'] - result['pq']) < 1e-9
    for name in ('ours_in_memory', 'ours_from_files', 'reading_files',
                 'cityscapesscripts'):
        runs = result[f'{name}_runs_s']
        assert len(runs) == 1 and result[f'{name}_s'] == runs[0]
        assert 0 < runs[0] < 60  # seconds
    assert result['speedup_in_memory'] == (result['cityscapesscripts_s']
                                           / result['ours_in_memory_s'])
    assert result['speedup_bound_by_reading'] == (
        result['cityscapesscripts_s'] / result['reading_files_s'])


def test_pairs_hold_every_case():
    pairs = [evaluation.evaluation_pair(seed, 257, 513, num_things=12)
             for seed in range(4)]
    gts = np.stack([gt for gt, _ in pairs])
    predictions = np.stack([prediction for _, prediction in pairs])
    assert gts.shape == predictions.shape == (4, 257, 513)
    classes = set(np.unique(gts // 1000).tolist())
    assert 255 in classes and {0, 1, 2, 8, 10} <= classes
    is_thing = np.isin(gts // 1000, scenes.THING_CLASSES)
    assert (is_thing & (gts % 1000 == 0)).any()  # a crowd
    # 12 free-standing things and a touching pair each, few fully hidden.
    assert all(len(np.unique(gt[thing & (gt % 1000 > 0)])) >= 10
               for gt, thing in zip(gts, is_thing))
    assert not (predictions // 1000 == 255).any()  # networks label all
    extra = predictions % 1000 >= 500
    assert extra.any() and not (gts % 1000 >= 500).any()
