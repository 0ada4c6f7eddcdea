"""Cityscapes mini-fixture ground truth and prediction scenarios built on it."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from deeplab2.data import cityscapes_annotations
from deeplab2.data import cityscapes_labels

NUM_CLASSES = cityscapes_labels.NUM_CLASSES
IGNORE_LABEL = cityscapes_labels.IGNORE_LABEL
LABEL_DIVISOR = cityscapes_labels.LABEL_DIVISOR
THING_CLASSES = tuple(sorted(cityscapes_labels.THING_CLASSES))
STUFF_CLASSES = tuple(range(11))
VOID = IGNORE_LABEL * LABEL_DIVISOR


@dataclasses.dataclass
class GroundTruthSplit:
    json_path: pathlib.Path
    folder: pathlib.Path
    image_ids: list
    panoptic: list  # int64 [H, W] maps, crowd kept as instance 0


def _load_split(fixtures_dir, split):
    root = fixtures_dir / 'data' / 'cityscapes_mini' / 'gtFine'
    json_path = root / f'cityscapes_panoptic_{split}_trainId.json'
    folder = root / f'cityscapes_panoptic_{split}_trainId'
    with open(json_path) as f:
        annotations = json.load(f)['annotations']
    maps = [cityscapes_annotations.panoptic_label_from_annotation(
        str(folder / a['file_name']), a['segments_info'],
        treat_crowd_as_ignore=False).astype(np.int64) for a in annotations]
    return GroundTruthSplit(json_path, folder,
                            [a['image_id'] for a in annotations], maps)


@pytest.fixture(scope='session', params=['val', 'train'])
def groundtruth_split(request, fixtures_dir):
    return _load_split(fixtures_dir, request.param)


# ---- prediction scenarios: gt panoptic map + rng -> predicted panoptic map --

def _thing_ids(panoptic):
    ids = np.unique(panoptic)
    classes, instances = ids // LABEL_DIVISOR, ids % LABEL_DIVISOR
    return ids[np.isin(classes, THING_CLASSES) & (instances > 0)]


def perfect(gt, rng):
    return gt.copy()


def shifted(gt, rng):
    return np.roll(gt, (3, 7), axis=(0, 1))


def merged(gt, rng):
    pred = gt.copy()
    for thing in _thing_ids(gt):
        pred[gt == thing] = thing // LABEL_DIVISOR * LABEL_DIVISOR + 1
    return pred


def split(gt, rng):
    pred = gt.copy()
    for k, thing in enumerate(_thing_ids(gt)):
        rows, cols = np.nonzero(gt == thing)
        right = cols > np.median(cols) + rng.integers(-2, 3)
        pred[rows[right], cols[right]] = (
            thing // LABEL_DIVISOR * LABEL_DIVISOR + 500 + k)
    return pred


def missing(gt, rng):
    pred = gt.copy()
    for thing in _thing_ids(gt)[::2]:
        pred[gt == thing] = VOID
    classes = gt // LABEL_DIVISOR
    pred[classes == 8] = 2 * LABEL_DIVISOR  # vegetation predicted as building
    pred[classes == 1] = VOID  # sidewalk missed
    return pred


def _boxes(pred, rng, count, labels):
    height, width = pred.shape
    for k in range(count):
        h, w = rng.integers(4, 40, size=2)
        y, x = rng.integers(0, height - h), rng.integers(0, width - w)
        pred[y:y + h, x:x + w] = labels(k)
    return pred


def extra(gt, rng):
    pred = gt.copy()
    _boxes(pred, rng, 12, lambda k: int(rng.choice(THING_CLASSES))
           * LABEL_DIVISOR + 600 + k)
    _boxes(pred, rng, 4, lambda k: int(rng.choice(STUFF_CLASSES))
           * LABEL_DIVISOR)
    return pred


def crowd_and_void(gt, rng):
    """Predictions on crowd and void: same-class pieces, other classes."""
    pred = gt.copy()
    classes, instances = gt // LABEL_DIVISOR, gt % LABEL_DIVISOR
    crowd = np.isin(classes, THING_CLASSES) & (instances == 0)
    rows, cols = np.nonzero(crowd)
    # Crowd pixels as several instances of the crowd's class, with a strip
    # of another thing class.
    pred[rows, cols] = (classes[rows, cols] * LABEL_DIVISOR + 700
                        + (cols // 8) % 4)
    strip = rows % 9 == 0
    pred[rows[strip], cols[strip]] = 17 * LABEL_DIVISOR + 3
    void = classes == IGNORE_LABEL
    rows, cols = np.nonzero(void)
    pred[rows, cols] = np.where(cols % 3 == 0, 10 * LABEL_DIVISOR,
                                18 * LABEL_DIVISOR + 800 + cols // 64)
    # A segment half on void, half on a car: the rule's edge.
    _boxes(pred, rng, 6, lambda k: 13 * LABEL_DIVISOR + 900 + k)
    return pred


def relabelled(gt, rng):
    pred = gt.copy()
    for thing in _thing_ids(gt)[1::3]:
        pred[gt == thing] = 14 * LABEL_DIVISOR + thing % LABEL_DIVISOR
    return pred


def noisy(gt, rng):
    """Random 8x8 blocks replaced by random segments, void included."""
    pred = gt.copy()
    height, width = gt.shape
    choices = np.array([c * LABEL_DIVISOR + i for c in range(NUM_CLASSES)
                        for i in (0, 1, 2)] + [VOID])
    blocks = rng.random((height // 8, width // 8)) < 0.3
    values = rng.choice(choices, size=blocks.shape)
    full = np.kron(np.where(blocks, values, -1), np.ones((8, 8), np.int64))
    return np.where(full >= 0, full, pred)


SCENARIOS = {f.__name__: f for f in (perfect, shifted, merged, split, missing,
                                     extra, crowd_and_void, relabelled, noisy)}


def pytest_generate_tests(metafunc):
    if 'scenario' in metafunc.fixturenames:
        metafunc.parametrize('scenario', sorted(SCENARIOS))


@pytest.fixture(scope='session')
def scenarios():
    """name -> function(gt panoptic map, numpy Generator) -> prediction."""
    return SCENARIOS
