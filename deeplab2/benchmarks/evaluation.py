"""Speed of PQ + mIoU against cityscapesscripts' panoptic evaluator.

Both read the same files: ground truth and flawed predictions of synthetic
1024x2048 street scenes (`scenes`), written in the COCO panoptic format
(RGB-encoded segment PNGs plus a json) that cityscapesscripts'
`evaluatePanoptic` takes. Ours is timed twice: from the label maps in
memory (what the evaluator does during training) and from the same files
(PNG decoding included), so the comparison is like for like. Reading the
files alone is timed too: decoding PNGs (Pillow) is most of both sides'
time, so its share bounds what any evaluator reading these files can gain.
"""

import concurrent.futures
import contextlib
import io
import json
import multiprocessing
import os
import statistics

import numpy as np

from deeplab2.benchmarks import scenes
from deeplab2.benchmarks import timing
from deeplab2.data import cityscapes_labels
from deeplab2.evaluation import MeanIoU
from deeplab2.evaluation import PanopticQuality
from deeplab2 import panoptic_png
from deeplab2.evaluation import coco_panoptic_format

_DIVISOR = cityscapes_labels.LABEL_DIVISOR
_IGNORE = cityscapes_labels.IGNORE_LABEL
_NUM_CLASSES = cityscapes_labels.NUM_CLASSES
_THINGS = tuple(sorted(cityscapes_labels.THING_CLASSES))
NUM_THINGS = 40


def evaluation_pair(seed: int, height: int = 1024, width: int = 2048,
                    num_things: int = NUM_THINGS):
    """(ground truth, prediction) int64 panoptic maps: a street scene with
    `num_things` free-standing things, and scenes.flawed_prediction of it."""
    _, gt = scenes.scene(seed, height, width, num_things)
    gt = gt.astype(np.int64)
    return gt, scenes.flawed_prediction(gt, seed)


def _categories():
    from cityscapesscripts.helpers import labels
    return [{'id': label.trainId, 'name': label.name, 'color': label.color,
             'supercategory': label.category,
             'isthing': int(label.trainId in _THINGS)}
            for label in labels.labels if 0 <= label.trainId < _NUM_CLASSES]


def write_split(folder: str, name: str, maps: list, image_ids: list,
                categories=None) -> tuple:
    """Writes maps as `<folder>/<name>/*.png` + `<folder>/<name>.json`."""
    png_folder = os.path.join(folder, name)
    os.makedirs(png_folder, exist_ok=True)
    annotations = []
    for image_id, panoptic in zip(image_ids, maps):
        segment_ids, segments = coco_panoptic_format.panoptic_to_segments(
            panoptic, _NUM_CLASSES, _IGNORE, _DIVISOR, image_name=image_id)
        for segment in segments:
            class_id = segment['category_id']
            segment['iscrowd'] = int(
                class_id in _THINGS and segment['id'] % _DIVISOR == 1)
        file_name = f'{image_id}_panoptic.png'
        panoptic_png.write(
            os.path.join(png_folder, file_name), segment_ids)
        annotations.append(coco_panoptic_format.annotation(image_id, file_name,
                                                        segments))
    json_path = os.path.join(folder, name + '.json')
    coco_panoptic_format.write_panoptic_json(json_path, annotations,
                                             categories)
    return json_path, png_folder


def _read_annotation(annotation: dict, png_folder: str) -> np.ndarray:
    path = os.path.join(png_folder, annotation['file_name'])
    return coco_panoptic_format.read_panoptic(
        path, annotation['segments_info'], _DIVISOR, _IGNORE, _THINGS)


def _annotations(json_path: str) -> dict:
    with open(json_path) as f:
        return {a['image_id']: a for a in json.load(f)['annotations']}


def _read_split(json_path: str, png_folder: str) -> dict:
    """image_id -> panoptic map of every annotation in a split's json."""
    return {image_id: _read_annotation(annotation, png_folder)
            for image_id, annotation in _annotations(json_path).items()}


def _metrics():
    return (PanopticQuality(_NUM_CLASSES, _IGNORE, _DIVISOR, _THINGS),
            MeanIoU(_NUM_CLASSES, _IGNORE))


def _update(metrics, image_id, gt, prediction, gt_semantic=None,
            predicted_semantic=None):
    """Adds one image; without semantic maps (files in the COCO panoptic
    format hold none), mIoU is of the panoptic maps' classes. The evaluator
    gets semantic maps from the model and the dataset."""
    pq, miou = metrics
    pq.update_state(gt, prediction, image_name=image_id)
    if gt_semantic is None:
        miou.update_state(gt, prediction, image_name=image_id,
                          label_divisor=_DIVISOR)
    else:
        miou.update_state(gt_semantic, predicted_semantic,
                          image_name=image_id)


def _parallel_metrics(jobs: list, work, workers: int) -> dict:
    """Runs `work(metrics, job)` for every job on `workers` threads, each
    thread with its own metrics, merged at the end (NumPy and PNG decoding
    release the GIL, so threads use every core)."""
    per_thread = [_metrics() for _ in range(workers)]

    def run(thread):
        for job in jobs[thread::workers]:
            work(per_thread[thread], job)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, range(workers)))
    pq, miou = per_thread[0]
    pq.merge_state(*(metrics[0] for metrics in per_thread[1:]))
    miou.merge_state(*(metrics[1] for metrics in per_thread[1:]))
    return {**pq.result(), **miou.result()}


def our_metrics(images, workers: int = 1) -> dict:
    """PQ + mIoU of (image_id, gt, prediction[, gt semantic, predicted
    semantic]) tuples of maps."""
    return _parallel_metrics(list(images),
                             lambda metrics, job: _update(metrics, *job),
                             workers)


def _ours_from_files(gt_files, pred_files, workers: int) -> dict:
    """PQ + mIoU read from the same json + PNG files as cityscapesscripts."""
    gt_annotations = _annotations(gt_files[0])
    pred_annotations = _annotations(pred_files[0])

    def work(metrics, image_id):
        _update(metrics, image_id,
                _read_annotation(gt_annotations[image_id], gt_files[1]),
                _read_annotation(pred_annotations[image_id], pred_files[1]))

    return _parallel_metrics(list(gt_annotations), work, workers)


def _read_files(gt_files, pred_files, workers: int) -> int:
    """Reads every ground truth and prediction as `_ours_from_files` does,
    on as many threads, and nothing else. Returns the number of maps.

    Each map is dropped once read, as `_ours_from_files` drops it once
    scored: holding all of them (800 MB at 1024x2048) would make every
    read fault in fresh pages and overstate the time reading takes."""
    jobs = [(annotation, files[1]) for files in (gt_files, pred_files)
            for annotation in _annotations(files[0]).values()]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return sum(1 for _ in pool.map(lambda job: _read_annotation(*job),
                                       jobs))


def _cityscapes(gt_files, pred_files, folder) -> dict:
    from cityscapesscripts.evaluation import evalPanopticSemanticLabeling
    with contextlib.redirect_stdout(io.StringIO()):
        return evalPanopticSemanticLabeling.evaluatePanoptic(
            gt_files[0], gt_files[1], pred_files[0], pred_files[1],
            os.path.join(folder, 'cityscapes_result.json'))


def _median_time(fn, runs: int):
    times, result = timing.timed_runs(fn, runs)
    return statistics.median(times), times, result


def eval_speed(folder: str, num_images: int = 50, height: int = 1024,
               width: int = 2048, runs: int = 3) -> dict:
    """Times ours (in memory, from files) and cityscapesscripts on the same
    `num_images` synthetic pairs; checks the PQs agree."""
    image_ids = [f'synthetic_{i:06d}_000019' for i in range(num_images)]
    pairs = [evaluation_pair(seed, height, width)
             for seed in range(num_images)]
    gt_files = write_split(folder, 'groundtruth', [p[0] for p in pairs],
                           image_ids, _categories())
    pred_files = write_split(folder, 'prediction', [p[1] for p in pairs],
                             image_ids)
    # In memory: the maps as read back from the files (crowd handling and
    # instance numbering as the files say).
    gts, predictions = _read_split(*gt_files), _read_split(*pred_files)
    in_memory = [(i, gts[i], predictions[i], gts[i] // _DIVISOR,
                  predictions[i] // _DIVISOR) for i in image_ids]

    # As many workers as cityscapesscripts' pool (one per CPU).
    workers = multiprocessing.cpu_count()
    ours_memory, times_memory, ours = _median_time(
        lambda: our_metrics(in_memory, workers), runs)
    ours_files, times_files, ours_read = _median_time(
        lambda: _ours_from_files(gt_files, pred_files, workers), runs)
    reading, times_reading, _ = _median_time(
        lambda: _read_files(gt_files, pred_files, workers), runs)
    official, times_official, theirs = _median_time(
        lambda: _cityscapes(gt_files, pred_files, folder), runs)
    difference = _max_pq_difference(ours, theirs)
    return {
        'images': num_images, 'size': [height, width],
        'precision': 'exact (integer pixel counts)',
        'cpu_count': multiprocessing.cpu_count(),
        'ours_in_memory_s': ours_memory, 'ours_in_memory_runs_s': times_memory,
        'ours_from_files_s': ours_files, 'ours_from_files_runs_s': times_files,
        'reading_files_s': reading, 'reading_files_runs_s': times_reading,
        'cityscapesscripts_s': official,
        'cityscapesscripts_runs_s': times_official,
        'speedup_in_memory': official / ours_memory,
        'speedup_from_files': official / ours_files,
        # What an evaluator that did nothing but read the files would reach.
        'speedup_bound_by_reading': official / reading,
        'pq': ours['pq'], 'miou': ours['miou'],
        'cityscapesscripts_pq': theirs['All']['pq'],
        'max_pq_sq_rq_difference': difference,
        # PQ and mIoU alike: from files, mIoU is of the panoptic maps'
        # classes (MeanIoU's label_divisor), in memory of divided maps.
        'same_result_from_files': (ours_read['pq'] == ours['pq']
                                   and ours_read['miou'] == ours['miou']),
    }


def _max_pq_difference(ours: dict, theirs: dict) -> float:
    return max(abs(ours[key + suffix] - theirs[name][key])
               for suffix, name in (('', 'All'), ('_thing', 'Things'),
                                    ('_stuff', 'Stuff'))
               for key in ('pq', 'sq', 'rq'))
