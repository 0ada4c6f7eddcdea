"""Every published COCO config end to end on DeepLab2-written COCO records
(fixtures/data/tfrecord/coco_mini): 2 training steps, evaluation with PQ,
AP and mIoU under COCO's class names, `predict` on the val JPEGs, and the
COCO panoptic files scored by the official evaluator (cityscapesscripts'
copy of panopticapi's pq_compute) against the fixture's own ground-truth
json.

Crops are shrunk to 65x65 (both output strides divide 64) so that a
ResNet-50 step takes a fraction of a second; everything else is the
config's own (its augmentations, loss weights, post-processing).
"""

import contextlib
import io
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab2 import common
from deeplab2 import config as config_lib
from deeplab2 import predict
from deeplab2.data import datasets
from deeplab2.data import tfrecord
from deeplab2.evaluation import PanopticQuality
from deeplab2.evaluation import prediction_writer
from deeplab2.trainer import runner

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
COCO_CONFIGS = sorted((REPO_ROOT / 'configs' / 'coco').rglob('*.textproto'))
COCO = datasets.COCO_PANOPTIC
# Crowd kept as class * 256 (--treat_crowd_as_ignore=false): the official
# evaluator knows crowd regions from the json's iscrowd, so our PQ can equal
# its only when the records keep them too.
RECORDS = 'crowd_as_ignore_false'
CROP = 65


@pytest.fixture(scope='module')
def coco_mini(fixtures_dir):
    data = fixtures_dir / 'data'
    return {'records': data / 'tfrecord' / 'coco_mini' / RECORDS,
            'root': data / 'coco_mini'}


def _overrides(records: pathlib.Path) -> list:
    small = [f'{options}.{field}'
             for options in ('train_dataset_options', 'eval_dataset_options')
             for field in ('crop_size', 'min_resize_value',
                           'max_resize_value')]
    return [
        f'train_dataset_options.file_pattern={records}/train-*',
        f'eval_dataset_options.file_pattern={records}/val-*',
        'train_dataset_options.batch_size=1',
        'model_options.initial_checkpoint=',
        'trainer_options.solver_options.training_number_of_steps=2',
        'trainer_options.solver_options.warmup_steps=0',
        'trainer_options.steps_per_loop=1',
        'trainer_options.save_checkpoints_steps=2',
        'trainer_options.save_summaries_steps=2',
        'evaluator_options.eval_interval=2',
        'evaluator_options.save_raw_predictions=true',
        'evaluator_options.num_vis_samples=1',
        # A 2-step model's segments are small and its centers faint: keep
        # them, so that predictions hold segments for the files to carry.
        'evaluator_options.stuff_area_limit=0',
        'evaluator_options.center_score_threshold=0.0001',
    ] + [f'{key}={CROP},{CROP}' if key.endswith('crop_size')
         else f'{key}={CROP}' for key in small]


def _gt_json(root: pathlib.Path) -> dict:
    with open(root / 'annotations' / 'panoptic_val2017.json') as f:
        return json.load(f)


def official_pq(root: pathlib.Path, save_dir: pathlib.Path,
                work: pathlib.Path, monkeypatch) -> dict:
    """pq_compute on the writer's raw_panoptic_coco against the fixture's
    own val json and PNGs (single process)."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as pq
    monkeypatch.setattr(
        pq, 'pq_compute_multi_core',
        lambda pairs, gt, pred, cats: pq.pq_compute_single_core(
            0, pairs, gt, pred, cats))
    work.mkdir(exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        return pq.evaluatePanoptic(
            str(root / 'annotations' / 'panoptic_val2017.json'),
            str(root / 'annotations' / 'panoptic_val2017'),
            str(save_dir / 'raw_panoptic_coco.json'),
            str(save_dir / 'raw_panoptic_coco'),
            str(work / 'result.json'))


def _assert_pq_equal(ours: dict, official: dict):
    for suffix, name in (('', 'All'), ('_thing', 'Things'),
                         ('_stuff', 'Stuff')):
        for key in ('pq', 'sq', 'rq'):
            assert ours[key + suffix] == pytest.approx(
                official[name][key], abs=1e-6), key + suffix
        assert ours['num_classes' + suffix] == official[name]['n'], suffix


# The four configs differ in two ways, the stem (beta or not) and the output
# stride; the default run covers both with two of them, the slow group
# (`pytest -m slow`) runs the other two.
_DEFAULT_RUN = ('resnet50_os32', 'resnet50_beta_os16')


@pytest.mark.parametrize('config_path', [
    pytest.param(path, id=path.stem, marks=() if path.stem in _DEFAULT_RUN
                 else pytest.mark.slow) for path in COCO_CONFIGS])
def test_config_trains_evaluates_and_is_scored_officially(
        config_path, coco_mini, tmp_path, monkeypatch):
    config = config_lib.load_config(config_path,
                                    _overrides(coco_mini['records']))
    model_dir = tmp_path / 'model'
    metrics = runner.run(config, 'train_and_eval', str(model_dir), seed=0)

    assert {'pq', 'pq_thing', 'pq_stuff', 'miou', 'ap'} <= set(metrics)
    for key in ('pq', 'miou', 'ap'):
        assert 0.0 <= metrics[key] <= 1.0, key
    last = json.loads((model_dir / 'eval_results.json').read_text()
                      .splitlines()[-1])
    assert last['step'] == 2
    # COCO's names; 'void' (label 0) is a class of the model, so the mean
    # IoU counts it where it is predicted, as DeepLab2's does.
    coco_names = {c['name'] for c in _gt_json(coco_mini['root'])['categories']}
    assert last['per_class'] and set(last['per_class']) <= coco_names | {
        'void'}
    assert set(last['per_class'].get('void', {})) <= {'iou'}

    # The same files the evaluator wrote, scored by the official tool.
    save_dir = model_dir / 'vis'
    annotations = json.loads(
        (save_dir / 'raw_panoptic_coco.json').read_text())['annotations']
    assert sorted(a['image_id'] for a in annotations) == [139, 285, 632]
    official = official_pq(coco_mini['root'], save_dir, tmp_path / 'pq',
                           monkeypatch)
    _assert_pq_equal(metrics, official)

    if config_path.stem == 'resnet50_os32':
        _check_predict(config_path, model_dir, coco_mini, tmp_path)


def _check_predict(config_path, model_dir, coco_mini, tmp_path):
    """predict on the val JPEGs names segments by COCO category id and name
    (the fixture json's own table, not ours)."""
    output_dir = tmp_path / 'predictions'
    result = predict.run(str(config_path),
                         str(coco_mini['root'] / 'val2017' / '*.jpg'),
                         str(output_dir), checkpoint_path=str(model_dir),
                         config_overrides=_overrides(coco_mini['records']))
    assert len(result.written) == 3 and not result.skipped
    names = {c['id']: c['name']
             for c in _gt_json(coco_mini['root'])['categories']}
    segments = [segment for path in output_dir.glob('*_segments.json')
                for segment in json.loads(path.read_text())['segments']]
    assert segments
    for segment in segments:
        assert segment['category_name'] == names[segment['eval_id']]
        assert segment['category_id'] == COCO.eval_ids.index(
            segment['eval_id'])


def _perturbed(panoptic: np.ndarray, rng) -> np.ndarray:
    """Ground truth with errors of every kind the metrics weigh: a shifted
    band of pixels, a thing split in two, an instance relabelled to another
    class, and a fake segment over void and crowd."""
    prediction = panoptic.copy()
    height, width = prediction.shape
    prediction[:, :width // 5] = np.roll(prediction[:, :width // 5],
                                         int(rng.integers(3, 9)), axis=0)
    things = [i for i in np.unique(panoptic)
              if 1 <= i // 256 <= 80 and i % 256]
    if things:
        first = things[0]
        ys, xs = np.nonzero(prediction == first)
        right = xs > np.median(xs)
        prediction[ys[right], xs[right]] = first + 50
    if len(things) > 1:
        prediction[prediction == things[1]] = (things[1] // 256 % 80 + 1) * 256 + 7
    void_or_crowd = (panoptic % 256 == 0) & (panoptic // 256 <= 80)
    prediction[void_or_crowd] = 3 * 256 + 99  # car 99, where gt has none
    return prediction


def test_writer_files_score_officially_as_our_pq(coco_mini, tmp_path,
                                                 monkeypatch):
    """Predictions with real errors (PQ well inside (0, 1)) at the raw size
    through PanopticQuality and the PredictionWriter: the official
    evaluator on the written files agrees to 1e-6."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    metric = PanopticQuality(COCO.num_classes, COCO.ignore_label,
                             COCO.panoptic_label_divisor,
                             COCO.class_has_instances_list)
    writer = prediction_writer.PredictionWriter(
        COCO, str(tmp_path / 'vis'), save_raw=True, convert_to_eval_ids=True)
    for path in sorted(coco_mini['records'].glob('val-*')):
        for record in tf.data.TFRecordDataset(str(path)):
            decoded = tfrecord.decode_example(record)
            name = decoded[common.IMAGE_NAME].numpy().decode()
            gt = decoded['label'].numpy()[..., 0].astype(np.int64)
            prediction = _perturbed(gt, rng)
            metric.update_state(gt, prediction, image_name=name)
            writer.write(name, decoded[common.IMAGE].numpy(), {
                common.PRED_SEMANTIC_KEY: prediction // 256,
                common.PRED_PANOPTIC_KEY: prediction,
                common.PRED_INSTANCE_SCORES_KEY: np.ones(prediction.shape,
                                                         np.float32)})
    writer.close()
    ours = metric.result()
    assert 0.2 < ours['pq'] < 0.9 and ours['num_classes'] > 5
    official = official_pq(coco_mini['root'], tmp_path / 'vis',
                           tmp_path / 'pq', monkeypatch)
    _assert_pq_equal(ours, official)
