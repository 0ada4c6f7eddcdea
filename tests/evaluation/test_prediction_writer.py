"""PredictionWriter: its files decode to what was predicted, and
cityscapesscripts' official evaluators accept them and agree with our
metrics (panoptic and pixel-level numbers equal; instance-level runs)."""

import contextlib
import io
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from deeplab2 import common
from deeplab2.data import datasets
from deeplab2.data import demo
from deeplab2.evaluation import MeanIoU
from deeplab2.evaluation import PanopticQuality
from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format
from deeplab2.evaluation import prediction_writer

CITYSCAPES = datasets.CITYSCAPES_PANOPTIC
DIVISOR = CITYSCAPES.panoptic_label_divisor
VOID = CITYSCAPES.ignore_label * DIVISOR
# Train id -> label id, written out independently of the descriptor.
LABEL_ID = {0: 7, 1: 8, 2: 11, 10: 23, 11: 24, 13: 26, 18: 33}


def _hand_prediction():
    panoptic = np.full((6, 8), 0, np.int64)          # road
    panoptic[0, :] = 10 * DIVISOR                     # sky
    panoptic[1:3, 1:3] = 13 * DIVISOR + 1             # car 1
    panoptic[1:3, 5:8] = 13 * DIVISOR + 2             # car 2
    panoptic[4:6, 6:8] = 11 * DIVISOR + 1             # person 1
    panoptic[5, 0] = VOID
    scores = np.zeros(panoptic.shape)
    scores[panoptic == 13001] = 0.9
    scores[1:3, 5:8] = [[0.2, 0.4, 0.6], [0.2, 0.4, 0.6]]   # mean 0.4
    scores[panoptic == 11001] = 0.75
    semantic = panoptic // DIVISOR
    return {common.PRED_PANOPTIC_KEY: panoptic,
            common.PRED_SEMANTIC_KEY: semantic,
            common.PRED_INSTANCE_KEY: panoptic % DIVISOR,
            common.PRED_INSTANCE_SCORES_KEY: scores,
            common.PRED_CENTER_HEATMAP_KEY: scores}


def _image(shape):
    return np.random.default_rng(0).integers(0, 256, shape + (3,), np.uint8)


def _read(path):
    with Image.open(path) as image:
        return np.asarray(image)


def _no_temporaries(folder):
    return not [p for p in pathlib.Path(folder).rglob('*') if '.tmp' in p.name]


@pytest.mark.parametrize('raw_format', prediction_writer.RAW_PANOPTIC_FORMATS)
def test_raw_files_by_hand(tmp_path, raw_format):
    prediction = _hand_prediction()
    writer = prediction_writer.PredictionWriter(
        CITYSCAPES, str(tmp_path), save_raw=True,
        raw_panoptic_format=raw_format, convert_to_eval_ids=True)
    writer.write('frankfurt_000000_000294.png', _image((6, 8)), prediction)
    writer.close()
    panoptic = prediction[common.PRED_PANOPTIC_KEY]
    expected_labels = np.vectorize(lambda c: LABEL_ID.get(c, 0))(
        panoptic // DIVISOR)

    semantic = _read(tmp_path / 'raw_semantic' / 'frankfurt_000000_000294.png')
    assert semantic.dtype == np.uint8
    np.testing.assert_array_equal(semantic, expected_labels)

    raw = tmp_path / 'raw_panoptic' / 'frankfurt_000000_000294'
    if raw_format == 'two_channel_numpy_array':
        channels = np.load(str(raw) + '.npy')
        assert channels.shape == (6, 8, 2)
        instances = channels[..., 1]
    else:
        channels = _read(str(raw) + '.png')
        instances = (channels[..., 1] if raw_format == 'two_channel_png'
                     else channels[..., 1].astype(int) * 256 + channels[..., 2])
    np.testing.assert_array_equal(channels[..., 0], expected_labels)
    np.testing.assert_array_equal(instances, panoptic % DIVISOR)

    # COCO panoptic: segments back to the (label-id) panoptic map.
    annotations = json.loads((tmp_path / 'raw_panoptic_coco.json').read_text())
    (annotation,) = annotations['annotations']
    assert annotation['image_id'] == 'frankfurt_000000_000294'
    segment_ids = panoptic_png.read(
        str(tmp_path / 'raw_panoptic_coco' / annotation['file_name']))
    to_train = {label: train for train, label in LABEL_ID.items()}
    back = coco_panoptic_format.segments_to_panoptic(
        segment_ids, annotation['segments_info'], DIVISOR, 255,
        CITYSCAPES.thing_class_ids, category_to_class=to_train)
    np.testing.assert_array_equal(back, panoptic)
    assert {c['id'] for c in annotations['categories']} == set(
        CITYSCAPES.eval_ids)

    # Instance masks and scores, one line per thing segment.
    lines = (tmp_path / 'raw_instance' /
             'frankfurt_000000_000294.txt').read_text().splitlines()
    entries = {line.split()[0]: line.split()[1:] for line in lines}
    assert entries == {
        'instance_masks/frankfurt_000000_000294_class_26_instance_1.png':
            ['26', '0.900000'],
        'instance_masks/frankfurt_000000_000294_class_26_instance_2.png':
            ['26', '0.400000'],
        'instance_masks/frankfurt_000000_000294_class_24_instance_1.png':
            ['24', '0.750000'],
    }
    mask = _read(tmp_path / 'raw_instance' / 'instance_masks' /
                 'frankfurt_000000_000294_class_26_instance_2.png')
    np.testing.assert_array_equal(mask != 0, panoptic == 13002)
    assert _no_temporaries(tmp_path)


def test_train_ids_kept_without_conversion(tmp_path):
    writer = prediction_writer.PredictionWriter(
        CITYSCAPES, str(tmp_path), save_raw=True, convert_to_eval_ids=False)
    prediction = _hand_prediction()
    writer.write('a_000000_000001', _image((6, 8)), prediction)
    semantic = _read(tmp_path / 'raw_semantic' / 'a_000000_000001.png')
    np.testing.assert_array_equal(
        semantic, prediction[common.PRED_SEMANTIC_KEY].clip(0, 255))
    line = (tmp_path / 'raw_instance' / 'a_000000_000001.txt').read_text()
    assert ' 13 0.900000' in line


def test_pictures_for_the_first_images_only(tmp_path):
    writer = prediction_writer.PredictionWriter(CITYSCAPES, str(tmp_path),
                                                num_vis_samples=1)
    prediction = _hand_prediction()
    labels = {common.GT_SEMANTIC_RAW: prediction[common.PRED_SEMANTIC_KEY],
              common.GT_PANOPTIC_RAW: prediction[common.PRED_PANOPTIC_KEY]}
    image = _image((6, 8))
    writer.write('a', image, prediction, labels)
    writer.write('b', image, prediction, labels)
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f'000000_{kind}.png' for kind in (
        'image', 'semantic_prediction', 'instance_prediction',
        'center_prediction', 'panoptic_prediction', 'semantic_label',
        'panoptic_label'))
    np.testing.assert_array_equal(_read(tmp_path / '000000_image.png'), image)
    semantic = _read(tmp_path / '000000_semantic_prediction.png')
    # Road pixels in Cityscapes' road color, void black.
    assert semantic[3, 0].tolist() == [128, 64, 128]
    assert semantic[5, 0].tolist() == [0, 0, 0]
    instances = _read(tmp_path / '000000_instance_prediction.png')
    assert instances[3, 0].tolist() == [0, 0, 0]
    assert instances[1, 1].tolist() != instances[1, 5].tolist()


def test_bad_settings_and_overflow_are_named(tmp_path):
    with pytest.raises(ValueError, match='raw_panoptic_format'):
        prediction_writer.PredictionWriter(CITYSCAPES, str(tmp_path),
                                           save_raw=True,
                                           raw_panoptic_format='jpeg')
    writer = prediction_writer.PredictionWriter(CITYSCAPES, str(tmp_path),
                                                save_raw=True)
    prediction = _hand_prediction()
    prediction[common.PRED_PANOPTIC_KEY][0, 0] = 13 * DIVISOR + 300
    with pytest.raises(ValueError, match=r"'b_1_2'.*two_channel_numpy_array"):
        writer.write('b_1_2', _image((6, 8)), prediction)


def test_from_config_follows_evaluator_options(tmp_path):
    from deeplab2 import config as config_lib
    config = config_lib.load_config(
        'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto')
    config.evaluator_options.save_predictions = False
    assert prediction_writer.PredictionWriter.from_config(
        config, str(tmp_path), CITYSCAPES) is None
    config.evaluator_options.save_raw_predictions = True
    writer = prediction_writer.PredictionWriter.from_config(
        config, str(tmp_path), CITYSCAPES)
    assert writer.save_dir == str(tmp_path / 'vis')
    assert writer.num_vis_samples == 0 and writer.save_raw
    config.evaluator_options.save_predictions = True
    config.evaluator_options.num_vis_samples = 3
    config.evaluator_options.override_save_dir = str(tmp_path / 'elsewhere')
    writer = prediction_writer.PredictionWriter.from_config(
        config, str(tmp_path), CITYSCAPES)
    assert writer.save_dir == str(tmp_path / 'elsewhere')
    assert writer.num_vis_samples == 3


# ---- the official evaluators on the writer's files -------------------------

@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def official_panoptic(gt_fine: pathlib.Path, save_dir: pathlib.Path,
                      work: pathlib.Path, monkeypatch) -> dict:
    """cityscapesscripts' PQ of the writer's COCO files against label-id
    ground truth made by cityscapesscripts' own converter."""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as pq
    from cityscapesscripts.preparation import createPanopticImgs
    work.mkdir(exist_ok=True)
    with _quiet():
        createPanopticImgs.convert2panoptic(str(gt_fine), str(work),
                                            useTrainId=False,
                                            setNames=['val'])
    monkeypatch.setattr(
        pq, 'pq_compute_multi_core',
        lambda pairs, gt, pred, cats: pq.pq_compute_single_core(
            0, pairs, gt, pred, cats))
    with _quiet():
        return pq.evaluatePanoptic(
            str(work / 'cityscapes_panoptic_val.json'),
            str(work / 'cityscapes_panoptic_val'),
            str(save_dir / 'raw_panoptic_coco.json'),
            str(save_dir / 'raw_panoptic_coco'),
            str(work / 'panoptic_result.json'))


def official_pixel_level(gt_fine: pathlib.Path, save_dir: pathlib.Path,
                         monkeypatch) -> dict:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling
    args = evalPixelLevelSemanticLabeling.args
    for name, value in (('predictionPath', str(save_dir / 'raw_semantic')),
                        ('predictionWalk', None),
                        ('evalInstLevelScore', False), ('JSONOutput', False),
                        ('quiet', True)):
        monkeypatch.setattr(args, name, value)
    gts = sorted(map(str, gt_fine.glob('val/*/*_gtFine_labelIds.png')))
    predictions = [evalPixelLevelSemanticLabeling.getPrediction(args, gt)
                   for gt in gts]
    with _quiet():
        return evalPixelLevelSemanticLabeling.evaluateImgLists(
            predictions, gts, args)


def official_instance_level(gt_fine: pathlib.Path, save_dir: pathlib.Path,
                            work: pathlib.Path, monkeypatch) -> dict:
    from cityscapesscripts.evaluation import \
        evalInstanceLevelSemanticLabeling as instance
    args = instance.args
    for name, value in (
            ('predictionPath', os.path.abspath(save_dir / 'raw_instance')),
            ('predictionWalk', None),
            ('gtInstancesFile', str(work / 'gtInstances.json')),
            ('JSONOutput', False), ('quiet', True)):
        monkeypatch.setattr(args, name, value)
    monkeypatch.chdir(work)  # it writes matches.json to the working folder
    # cityscapesscripts 2.2 still calls np.in1d, which NumPy 2.4 removed;
    # np.isin is the same test (the caller reshapes).
    if not hasattr(np, 'in1d'):
        monkeypatch.setattr(np, 'in1d', np.isin, raising=False)
    # ... and its json dumps fail on NumPy integers in its debug files.
    monkeypatch.setattr(instance, 'writeDict2JSON', _write_json)
    gts = sorted(map(str, gt_fine.glob('val/*/*_gtFine_instanceIds.png')))
    predictions = [instance.getPrediction(gt, args) for gt in gts]
    with _quiet():
        return instance.evaluateImgLists(predictions, gts, args)


def _write_json(content, path):
    with open(path, 'w') as f:
        json.dump(content, f, default=lambda o: o.item() if hasattr(
            o, 'item') else o.__dict__)


def _scores(panoptic):
    """A made-up score per segment, constant over it."""
    return ((panoptic * 7919) % 97 + 1) / 100.0


def _load_val(gt_fine: pathlib.Path):
    from deeplab2.data import cityscapes_annotations
    with open(gt_fine / 'cityscapes_panoptic_val_trainId.json') as f:
        annotations = json.load(f)['annotations']
    folder = gt_fine / 'cityscapes_panoptic_val_trainId'
    to_label = cityscapes_annotations.panoptic_label_from_annotation
    return [(a['image_id'], to_label(
        str(folder / a['file_name']), a['segments_info'],
        treat_crowd_as_ignore=False).astype(np.int64)) for a in annotations]


@pytest.fixture(scope='module')
def demo_gt_fine(tmp_path_factory):
    """The embedded demo dataset (its default size), built in a temp cache."""
    shards = demo.materialize_demo_dataset(
        cache_dir=str(tmp_path_factory.mktemp('demo_cache')))
    return pathlib.Path(shards).parent / 'cityscapes' / 'gtFine'


@pytest.fixture(params=['fixture_mini', 'demo'])
def gt_fine(request, fixtures_dir):
    if request.param == 'demo':
        return request.getfixturevalue('demo_gt_fine')
    return fixtures_dir / 'data' / 'cityscapes_mini' / 'gtFine'


def test_official_evaluators_agree(gt_fine, scenario, scenarios, tmp_path,
                                   monkeypatch):
    rng = np.random.default_rng(sorted(scenarios).index(scenario))
    save_dir = tmp_path / 'vis'
    # Scenario instance ids go past 255: three channels hold them.
    writer = prediction_writer.PredictionWriter(
        CITYSCAPES, str(save_dir), save_raw=True,
        raw_panoptic_format='three_channel_png')
    pq = PanopticQuality(19, 255, DIVISOR, CITYSCAPES.thing_class_ids)
    miou = MeanIoU(19, 255)
    for image_id, gt in _load_val(gt_fine):
        panoptic = scenarios[scenario](gt, rng)
        semantic = panoptic // DIVISOR
        writer.write(image_id, np.zeros(gt.shape + (3,), np.uint8), {
            common.PRED_PANOPTIC_KEY: panoptic,
            common.PRED_SEMANTIC_KEY: semantic,
            common.PRED_INSTANCE_SCORES_KEY: _scores(panoptic)})
        pq.update_state(gt, panoptic, image_name=image_id)
        miou.update_state(gt // DIVISOR, semantic, image_name=image_id)
    writer.close()
    ours = {**pq.result(), **miou.result()}

    official = official_panoptic(gt_fine, save_dir, tmp_path / 'work',
                                 monkeypatch)
    for suffix, name in (('', 'All'), ('_thing', 'Things'),
                         ('_stuff', 'Stuff')):
        for key in ('pq', 'sq', 'rq'):
            assert ours[key + suffix] == pytest.approx(
                official[name][key], abs=1e-6), key + suffix
    for train_id, label_id in enumerate(CITYSCAPES.eval_ids):
        if ours['per_class_valid'][train_id]:
            assert ours['per_class_pq'][train_id] == pytest.approx(
                official['per_class'][label_id]['pq'], abs=1e-6)

    pixel = official_pixel_level(gt_fine, save_dir, monkeypatch)
    assert ours['miou'] == pytest.approx(pixel['averageScoreClasses'],
                                         abs=1e-6)

    if scenario in ('perfect', 'shifted'):
        instance = official_instance_level(gt_fine, save_dir,
                                           tmp_path / 'work', monkeypatch)
        ap = instance['averages']['allAp']
        if scenario == 'perfect':
            assert ap == pytest.approx(1.0)
        else:
            assert 0.0 <= ap < 1.0


def test_eval_run_writes_files_the_official_tools_score_alike(
        tmp_path, monkeypatch):
    """train_and_eval on a tiny demo with saving on: a picture set per
    visualized image, raw files for every image, and cityscapesscripts' PQ
    and mIoU on those files equal to the run's own."""
    from deeplab2 import config as config_lib
    from deeplab2.trainer import runner
    shards = pathlib.Path(demo.materialize_demo_dataset(
        cache_dir=str(tmp_path / 'cache'), num_train=2, num_val=3))
    gt_fine = shards.parent / 'cityscapes' / 'gtFine'
    config = config_lib.load_config(
        'configs/demo/panoptic_deeplab_mobilenet_v3_small_os16.textproto', [
            f'train_dataset_options.file_pattern={shards}/train-*',
            f'eval_dataset_options.file_pattern={shards}/val-*',
            'train_dataset_options.crop_size=65,129',
            'model_options.backbone.backbone_width_multiplier=0.35',
            'trainer_options.solver_options.training_number_of_steps=1',
            'trainer_options.solver_options.warmup_steps=0',
            'trainer_options.steps_per_loop=1',
            'evaluator_options.eval_interval=1',
            'evaluator_options.save_predictions=true',
            'evaluator_options.num_vis_samples=2',
            'evaluator_options.save_raw_predictions=true',
            # A low threshold so the untrained model predicts instances.
            'evaluator_options.center_score_threshold=0.0',
            # With no threshold the untrained model's instance count is
            # decided by rounding (399 of 400 on one CI host); at most 200
            # centers keep every instance id within two_channel_png's 255.
            'evaluator_options.keep_k_centers=200',
        ])
    model_dir = tmp_path / 'model'
    metrics = runner.run(config, 'train_and_eval', str(model_dir), seed=0)
    vis_dir = model_dir / 'vis'
    assert len(list(vis_dir.glob('*_image.png'))) == 2
    names = sorted(p.stem.replace('_gtFine_labelIds', '')
                   for p in gt_fine.glob('val/*/*_gtFine_labelIds.png'))
    assert len(names) == 3
    for folder in ('raw_semantic', 'raw_panoptic', 'raw_panoptic_coco'):
        assert sorted(p.stem for p in (vis_dir / folder).glob('*.png')) == (
            names)
    assert sorted(p.stem for p in (vis_dir / 'raw_instance').glob(
        '*.txt')) == names
    semantic = _read(vis_dir / 'raw_semantic' / f'{names[0]}.png')
    assert semantic.shape == (256, 512)
    assert set(np.unique(semantic)) <= set(CITYSCAPES.eval_ids) | {0}

    official = official_panoptic(gt_fine, vis_dir, tmp_path / 'work',
                                 monkeypatch)
    assert metrics['pq'] == pytest.approx(official['All']['pq'], abs=1e-6)
    assert metrics['pq_thing'] == pytest.approx(official['Things']['pq'],
                                                abs=1e-6)
    pixel = official_pixel_level(gt_fine, vis_dir, monkeypatch)
    assert metrics['miou'] == pytest.approx(pixel['averageScoreClasses'],
                                            abs=1e-6)
    assert _no_temporaries(vis_dir)


def test_pictures_of_a_spec_dataset_use_its_class_colors():
    spec = datasets.DatasetDescriptor(
        name='mine', splits_to_sizes={}, num_classes=2, ignore_label=9,
        panoptic_label_divisor=10, class_has_instances_list=(1,),
        colormap=datasets.SPEC_COLORMAP,
        class_colors=((10, 20, 30), (200, 100, 0)))
    image = np.zeros((1, 3, 3), np.uint8)
    drawn = prediction_writer.pictures(
        spec, image, {common.PRED_SEMANTIC_KEY: np.array([[1, 0, 9]])},
        {common.GT_PANOPTIC_RAW: np.array([[0, 0, 90]])})
    assert drawn['semantic_prediction'].tolist() == [
        [[200, 100, 0], [10, 20, 30], [0, 0, 0]]]
    # Stuff and void overlaid half and half on the black image.
    assert drawn['panoptic_label'].tolist() == [
        [[5, 10, 15], [5, 10, 15], [0, 0, 0]]]
