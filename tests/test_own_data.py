"""The README's "Train on your own data" section, run as written.

The test runs each ```bash block of the section once (one `bash` per
block, one python process per command in it, python being this
interpreter) on two small datasets generated here, one per format, with the
README's placeholder paths pointed at them and a tiny training budget
appended to the training and eval commands:

  convert (COCO panoptic: train, val) -> train_and_eval, fine-tuning as the
      section says from a 19-class demo-config checkpoint -> eval (saving
      raw predictions) -> predict
  convert (label folders: train, val) -> its records decoded here

Training is the slow part (~40 s a run on two shared cores), so it runs
once, on the COCO-panoptic data: the label-folder dataset is converted and
checked, not trained.

The scenes are not the demo's: four categories with ids 77, 3, 21, 10
(train ids 0..3 in json order), images of 33x47, 41x29, 37x31 and 29x43
pixels (two grayscale PNGs, two JPEGs), a crowd segment in each split and a
void strip in every image; the label-folder copy adds a fifth class.

Acceptance (issue 15): the PQ, SQ and RQ (all, things, stuff, per class)
the eval command reports equal cityscapesscripts' `pq_compute` on the
predictions it saved (COCO format, original category ids) against the
COCO-format ground truth generated here, to 1e-6; class names appear in
eval_results.json and in predict's segments JSON with the original ids.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = 'Train on your own data'
DEMO_CONFIG = (REPO_ROOT / 'configs' / 'demo' /
               'panoptic_deeplab_mobilenet_v3_small_os16.textproto')

# json order = train ids 0..3; the ids are the original (eval) ids.
CATEGORIES = [
    {'id': 77, 'name': 'meadow', 'isthing': 0},
    {'id': 3, 'name': 'sheep', 'isthing': 1},
    {'id': 21, 'name': 'fence', 'isthing': 0},
    {'id': 10, 'name': 'dog', 'isthing': 1},
]
# The label-folder copy's fifth class, drawn in each split's first image.
GATE = {'id': 42, 'name': 'gate', 'isthing': 0}
GATE_REGION = (slice(0, 6), slice(0, 10))
VOID_ROWS = 2  # the last rows of every image belong to no segment
# split -> image file -> (PIL mode, (height, width), segments), a segment
# being (segment id, category id, iscrowd, rows, cols); later segments
# paint over earlier ones.
SCENES = {
    'train': {
        'pasture.jpg': ('RGB', (33, 47), [
            (1, 77, 0, (0, 33), (0, 47)),
            (2, 3, 0, (4, 14), (5, 17)),
            (3, 3, 0, (18, 29), (25, 40)),
            (4, 21, 0, (0, 4), (0, 47)),
        ]),
        'flock.png': ('L', (41, 29), [
            (7, 77, 0, (0, 41), (0, 29)),
            (260, 3, 1, (20, 36), (3, 26)),  # a crowd of sheep
            (9, 10, 0, (3, 15), (4, 14)),
        ]),
    },
    'val': {
        'gate.jpg': ('RGB', (37, 31), [
            (5, 77, 0, (0, 37), (0, 31)),
            (6, 21, 0, (10, 17), (0, 31)),
            (8, 3, 0, (20, 33), (8, 22)),
        ]),
        'dusk.png': ('L', (29, 43), [
            (11, 77, 0, (0, 29), (0, 43)),
            (12, 10, 0, (5, 18), (20, 35)),
            (13, 3, 1, (19, 26), (2, 20)),  # a crowd of sheep
        ]),
    },
}

# The README's placeholders -> paths under the test's tmp folder. The
# fine-tuning source, the README's demo model (19 classes), is a checkpoint
# of the demo config's network written by the fixture.
PLACEHOLDERS = {
    '/data/mine': 'coco',
    '/data/folders': 'folders',
    '/tmp/mine_model': 'coco_model',
    '/tmp/mine_predictions': 'predictions',
    '/tmp/deeplab2_demo': 'demo_model/ckpt',
}
STEPS = 3
TRAIN_BUDGET = [
    f'trainer_options.solver_options.training_number_of_steps={STEPS}',
    'trainer_options.solver_options.warmup_steps=0',
    'trainer_options.steps_per_loop=1',
    f'trainer_options.save_checkpoints_steps={STEPS}',
    f'evaluator_options.eval_interval={STEPS}',
    'train_dataset_options.crop_size=65,65',
    'train_dataset_options.batch_size=1',
    'eval_dataset_options.crop_size=65,65',
]
EVAL_BUDGET = ['eval_dataset_options.crop_size=65,65']


# ---- the generated datasets -------------------------------------------------

def _segment_ids(size, segments) -> np.ndarray:
    ids = np.zeros(size, np.int64)
    for segment_id, _, _, rows, cols in segments:
        ids[slice(*rows), slice(*cols)] = segment_id
    ids[-VOID_ROWS:] = 0
    return ids


def _image(rng, ids, mode) -> Image.Image:
    """Each segment a flat shade plus noise (something to learn)."""
    shade = np.where(ids > 0, ids * 37 % 200, 240)
    noise = rng.integers(0, 40, ids.shape + (3,))
    rgb = np.clip(shade[..., None] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def _write_coco(root: pathlib.Path, rng) -> None:
    """images/, panoptic_<split>/ and panoptic_<split>.json."""
    (root / 'images').mkdir(parents=True)
    for split, scenes in SCENES.items():
        (root / f'panoptic_{split}').mkdir()
        images, annotations = [], []
        for image_id, (name, (mode, size, segments)) in enumerate(
                scenes.items(), start=101):
            ids = _segment_ids(size, segments)
            _image(rng, ids, mode).save(root / 'images' / name)
            png = pathlib.Path(name).stem + '.png'
            rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1)
            Image.fromarray(rgb.astype(np.uint8)).save(
                root / f'panoptic_{split}' / png)
            images.append({'id': image_id, 'file_name': name,
                           'height': size[0], 'width': size[1]})
            annotations.append({'image_id': image_id, 'file_name': png,
                                'segments_info': [
                {'id': s, 'category_id': c, 'iscrowd': crowd,
                 'area': int((ids == s).sum())}
                for s, c, crowd, _, _ in segments]})
        (root / f'panoptic_{split}.json').write_text(json.dumps(
            {'images': images, 'annotations': annotations,
             'categories': CATEGORIES}))


def _write_folders(root: pathlib.Path, coco_root: pathlib.Path) -> None:
    """<split>/{images,classes,instances}/ and classes.json: the same
    scenes (and image files) as label PNGs, void = 0, a crowd = thing
    pixels of instance 0, plus a gate (stuff) in each split's first image."""
    things = {c['id'] for c in CATEGORIES if c['isthing']}
    for split, scenes in SCENES.items():
        for kind in ('images', 'classes', 'instances'):
            (root / split / kind).mkdir(parents=True)
        for index, (name, (_, size, segments)) in enumerate(scenes.items()):
            ids = _segment_ids(size, segments)
            classes = np.zeros(size, np.uint8)
            instances = np.zeros(size, np.uint8)
            counts = {}
            for segment_id, category, crowd, _, _ in segments:
                where = ids == segment_id
                classes[where] = category
                if category in things and not crowd:
                    counts[category] = counts.get(category, 0) + 1
                    instances[where] = counts[category]
            if index == 0:
                classes[GATE_REGION], instances[GATE_REGION] = GATE['id'], 0
            stem = pathlib.Path(name).stem
            Image.fromarray(classes).save(root / split / 'classes' /
                                          f'{stem}.png')
            Image.fromarray(instances).save(root / split / 'instances' /
                                            f'{stem}.png')
            (root / split / 'images' / name).write_bytes(
                (coco_root / 'images' / name).read_bytes())
    (root / 'classes.json').write_text(json.dumps({
        'classes': [{'name': c['name'], 'id': c['id'],
                     'thing': bool(c['isthing'])}
                    for c in CATEGORIES + [GATE]],
        'ignore_id': 0}))


# ---- the README's commands --------------------------------------------------

def _readme_section() -> str:
    text = (REPO_ROOT / 'README.md').read_text()
    heading = f'\n## {SECTION}\n'
    assert heading in text, f'README has no "## {SECTION}" section'
    return text.split(heading, 1)[1].split('\n## ', 1)[0]


def _blocks_by_role(section: str) -> dict[str, str]:
    """The section's ```bash blocks by what they do."""
    roles = {}
    for block in re.findall(r'^```bash\n(.*?)^```', section,
                            re.MULTILINE | re.DOTALL):
        if '--format=coco_panoptic' in block:
            role = 'convert_coco'
        elif '--format=label_folders' in block:
            role = 'convert_folders'
        elif 'scripts/predict.py' in block:
            role = 'predict'
        elif '--mode=eval ' in block:
            role = 'eval'
        elif '--mode=train_and_eval ' in block:
            role = 'train'
        else:
            raise AssertionError(f'unexpected README block: {block}')
        assert role not in roles, f'two {role} blocks in the README'
        roles[role] = block.strip()
    assert sorted(roles) == ['convert_coco', 'convert_folders', 'eval',
                             'predict', 'train'], sorted(roles)
    return roles


def _fine_tuning_override(section: str) -> str:
    """The override the section's prose adds for fine-tuning."""
    (override,) = re.findall(
        r'`--config_override=(model_options\.initial_checkpoint=[^`\s]+)`',
        section)
    return override


def _run(block: str, root: pathlib.Path, overrides=(), flags=()) -> str:
    """Runs one README block in bash from the repository root (stopping
    at a failing command), with its placeholders replaced, this interpreter
    as python and, for a single command, `overrides` and `flags` appended
    (later overrides win); returns its stderr."""
    if overrides or flags:
        assert block.count('.venv/bin/python') == 1, block
    block += ''.join(f' --config_override={o}' for o in overrides)
    block += ''.join(f' {flag}' for flag in flags)
    for placeholder, path in PLACEHOLDERS.items():
        block = block.replace(placeholder, str(root / path))
    block = block.replace('.venv/bin/python', sys.executable)
    result = subprocess.run(
        ['bash', '-e', '-c', block], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=600,
        env={**os.environ, 'DEEPLAB2_CACHE': str(root / 'cache')})
    assert result.returncode == 0, (block, result.stderr[-4000:])
    return result.stderr


def _write_demo_checkpoint(prefix: pathlib.Path) -> None:
    """Random weights of the demo config's network (19 classes): what the
    README's first command trains."""
    import keras
    import deeplab2
    from deeplab2 import compat
    keras.utils.set_random_seed(0)  # with --seed=0: a repeatable run
    model = deeplab2.build_model(deeplab2.load_config(DEMO_CONFIG))
    compat.save_model_checkpoint(model, prefix)


def _last_eval(model_dir: pathlib.Path) -> dict:
    lines = (model_dir / 'eval_results.json').read_text().splitlines()
    return json.loads(lines[-1])


@pytest.fixture(scope='module')
def readme_run(tmp_path_factory):
    """Generates both datasets and runs the section's commands once:
    (tmp root, {role: stderr})."""
    root = tmp_path_factory.mktemp('own_data')
    _write_coco(root / 'coco', np.random.default_rng(15))
    _write_folders(root / 'folders', root / 'coco')
    _write_demo_checkpoint(root / PLACEHOLDERS['/tmp/deeplab2_demo'])
    section = _readme_section()
    blocks = _blocks_by_role(section)
    fine_tuning = _fine_tuning_override(section)
    for placeholder in PLACEHOLDERS:
        assert placeholder in section, placeholder
    logs = {
        'convert_coco': _run(blocks['convert_coco'], root),
        # Seeded, so that the predictions (and what PQ matches) repeat.
        'train': _run(blocks['train'], root, [fine_tuning, *TRAIN_BUDGET],
                      flags=['--seed=0']),
        'eval': _run(blocks['eval'], root, EVAL_BUDGET),
        'predict': _run(blocks['predict'], root),
        'convert_folders': _run(blocks['convert_folders'], root),
    }
    return root, logs


# ---- checks -----------------------------------------------------------------

def test_specs_keep_original_ids_and_names(readme_run):
    root, _ = readme_run
    coco_spec = json.loads((root / 'coco/records/dataset.json').read_text())
    assert [(c['name'], c['eval_id'], c['thing'])
            for c in coco_spec['classes']] == [
        (c['name'], c['id'], bool(c['isthing'])) for c in CATEGORIES]
    assert {s: v['num_examples'] for s, v in coco_spec['splits'].items()
            } == {'train': 2, 'val': 2}
    folder_spec = json.loads(
        (root / 'folders/records/dataset.json').read_text())
    assert [(c['name'], c['eval_id'], c['thing'])
            for c in folder_spec['classes']] == [
        (c['name'], c['id'], bool(c['isthing']))
        for c in CATEGORIES + [GATE]]
    assert folder_spec['eval_void_id'] == 0
    assert {s: v['num_examples'] for s, v in folder_spec['splits'].items()
            } == {'train': 2, 'val': 2}


def _expected_folder_label(size, segments, with_gate, divisor):
    """The panoptic label of a label-folder image, from the drawn regions:
    train id * divisor + instance (numbered per class in listing order),
    void and crowds (the converter's default) 255 * divisor."""
    train_id = {c['id']: index for index, c in enumerate(CATEGORIES)}
    label = np.full(size, 255 * divisor, np.int64)
    counts = {}
    for _, category, crowd, rows, cols in segments:
        region = (slice(*rows), slice(*cols))
        if crowd:
            label[region] = 255 * divisor
        elif CATEGORIES[train_id[category]]['isthing']:
            counts[category] = counts.get(category, 0) + 1
            label[region] = train_id[category] * divisor + counts[category]
        else:
            label[region] = train_id[category] * divisor
    label[-VOID_ROWS:] = 255 * divisor
    if with_gate:
        label[GATE_REGION] = len(CATEGORIES) * divisor
    return label


def test_label_folder_records_decode_to_the_labels(readme_run):
    """The README's label-folder conversion: every record holds its image
    (grey ones as RGB) and the label worked out from the drawn regions."""
    from deeplab2.data import tfrecord
    root, _ = readme_run
    spec = json.loads((root / 'folders/records/dataset.json').read_text())
    divisor = spec['panoptic_label_divisor']
    for split, scenes in SCENES.items():
        records = {}
        for path in sorted((root / 'folders/records').glob(f'{split}-*')):
            for example in tfrecord.read_examples(str(path)):
                decoded = tfrecord.decode_example(
                    example.SerializeToString(), is_panoptic=True)
                records[decoded['image_name'].numpy().decode()] = decoded
        assert sorted(records) == sorted(
            pathlib.Path(name).stem for name in scenes)
        for index, (name, (_, size, segments)) in enumerate(scenes.items()):
            decoded = records[pathlib.Path(name).stem]
            image = np.asarray(Image.open(
                root / 'folders' / split / 'images' / name).convert('RGB'))
            # JPEG decoders differ by a few levels; PNGs are exact.
            tolerance = 4 if name.endswith('.jpg') else 0
            np.testing.assert_allclose(decoded['image'].numpy(), image,
                                       atol=tolerance, rtol=0)
            np.testing.assert_array_equal(
                decoded['label'].numpy()[..., 0],
                _expected_folder_label(size, segments, index == 0, divisor))


def test_training_fine_tuned_all_but_the_classifier(readme_run):
    """The training command, with the section's fine-tuning override, ran
    to its last step and evaluated; from the 19-class checkpoint it
    restored everything but the semantic classifier (128 head channels in
    the demo config), whose two variables the log names with both
    shapes."""
    root, logs = readme_run
    results = (root / 'coco_model' / 'eval_results.json').read_text()
    assert json.loads(results.splitlines()[0])['step'] == STEPS
    log = logs['train']
    assert re.search(r' 2 model variables skipped', log), log[-3000:]
    skipped = re.findall(
        r'^\s+(\S+) \(checkpoint (\[[\d, ]*\]), model (\[[\d, ]*\])\)$',
        log, re.MULTILINE)
    suffix = '/.ATTRIBUTES/VARIABLE_VALUE'
    assert sorted(skipped) == [
        ('semantic_last_layer/_kernel' + suffix, '[1, 1, 128, 19]',
         '[1, 1, 128, 4]'),
        ('semantic_last_layer/bias' + suffix, '[19]', '[4]')]


def test_class_names_in_eval_results_and_segments(readme_run):
    root, _ = readme_run
    names = [c['name'] for c in CATEGORIES]
    # Every class is in the val ground truth, so each has values.
    for line in (root / 'coco_model' / 'eval_results.json').read_text(
            ).splitlines():
        assert sorted(json.loads(line)['per_class']) == sorted(names)
    eval_id = {c['name']: c['id'] for c in CATEGORIES}
    predictions = root / 'predictions'
    for scenes in SCENES.values():
        for name, (_, size, _) in scenes.items():
            stem = pathlib.Path(name).stem
            png = Image.open(predictions / f'{stem}_panoptic.png')
            assert png.size == (size[1], size[0])
            described = json.loads(
                (predictions / f'{stem}_segments.json').read_text())
            assert (described['height'], described['width']) == size
            assert described['segments'], name
            for segment in described['segments']:
                assert segment['category_name'] == names[
                    segment['category_id']]
                assert segment['eval_id'] == eval_id[
                    segment['category_name']]


def test_pq_equals_cityscapesscripts(readme_run):
    """cityscapesscripts' pq_compute on the eval command's saved COCO
    predictions and the original ground truth (json and PNGs as generated
    here, category ids 77/3/21/10) gives the PQ, SQ and RQ the eval
    reported. (The val split keeps its crowd as a crowd region, as the
    README converts it: with the default --treat_crowd_as_ignore the
    crowd pixels become void and leave the union of whatever overlaps them,
    where cityscapesscripts counts them.)"""
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling as cs
    root, _ = readme_run
    saved = root / 'coco_model' / 'vis'
    predicted = json.loads((saved / 'raw_panoptic_coco.json').read_text())
    truth = json.loads((root / 'coco' / 'panoptic_val.json').read_text())
    # Predictions are keyed by image name; the ground truth by its own ids.
    names = {image['id']: pathlib.Path(image['file_name']).stem
             for image in truth['images']}
    by_name = {a['image_id']: a for a in predicted['annotations']}
    assert sorted(by_name) == sorted(names.values())
    pairs = [(a, by_name[names[a['image_id']]])
             for a in truth['annotations']]
    categories = {c['id']: c for c in truth['categories']}
    with contextlib.redirect_stdout(io.StringIO()):
        stats = cs.pq_compute_single_core(
            0, pairs, str(root / 'coco' / 'panoptic_val'),
            str(saved / 'raw_panoptic_coco'), categories)
    official = cs.average_pq(stats, categories)
    assert official['All']['pq'] > 0  # something matched: not 0 == 0
    ours = _last_eval(root / 'coco_model')
    for group, suffix in (('All', ''), ('Things', '_thing'),
                          ('Stuff', '_stuff')):
        for metric in ('pq', 'sq', 'rq'):
            assert ours[metric + suffix] == pytest.approx(
                official[group][metric], abs=1e-6), (group, metric)
        assert ours['num_classes' + suffix] == official[group]['n']
    for category_id, values in official['per_class'].items():
        name = categories[category_id]['name']
        counts = stats[category_id]
        if counts.tp + counts.fp + counts.fn == 0:
            # cityscapesscripts reports 0 for a class in neither ground
            # truth nor predictions; ours leaves it undefined (out).
            assert 'pq' not in ours['per_class'].get(name, {}), name
            continue
        for metric in ('pq', 'sq', 'rq'):
            assert ours['per_class'][name][metric] == pytest.approx(
                values[metric], abs=1e-6), (name, metric)
