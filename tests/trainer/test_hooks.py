"""The training loop's chunking and its after-step hooks, fed hand-made
chunks (the loop itself runs in test_runner)."""

import json
import logging

import tensorflow as tf

from deeplab2.trainer import hooks


def _chunk(step, total_steps=6, num_steps=1, seconds=0.5):
    return hooks.Chunk(step=step, total_steps=total_steps,
                       num_steps=num_steps, seconds=seconds,
                       losses={'total_loss': 0.5, 'center_loss': 0.25},
                       learning_rate=0.01, batch_size=4)


def test_steps_to_next_boundary():
    assert hooks.steps_to_next_boundary(0, 100, 10, [25, 40]) == 10
    assert hooks.steps_to_next_boundary(20, 100, 10, [25, 40]) == 5
    assert hooks.steps_to_next_boundary(95, 100, 10, [200]) == 5
    # 0: a hook acting after every chunk sets no boundary.
    assert hooks.steps_to_next_boundary(0, 100, 10, [0, 0]) == 10


def test_due_at_multiples_and_at_the_end():
    assert [step for step in range(1, 7) if hooks.is_due(step, 6, 4)] == [
        4, 6]
    # 0: only at the end, as DeepLab2's eval_interval (it used to divide by
    # zero).
    assert [step for step in range(1, 7) if hooks.is_due(step, 6, 0)] == [6]


def test_chunk_speeds():
    chunk = _chunk(4, num_steps=2, seconds=0.5)
    assert chunk.steps_per_s == 4 and chunk.images_per_s == 16


def test_train_log_appends_one_line_per_chunk(tmp_path):
    log = hooks.TrainLogHook(str(tmp_path / 'train_log.jsonl'))
    for step in (1, 2):
        log(_chunk(step))
    lines = (tmp_path / 'train_log.jsonl').read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {'step': step, 'learning_rate': 0.01, 'total_loss': 0.5,
         'center_loss': 0.25} for step in (1, 2)]


def test_checkpoints_are_numbered_by_step_at_multiples_and_the_end():
    class Manager:
        def __init__(self):
            self.saved = []

        def save(self, checkpoint_number):
            self.saved.append(checkpoint_number)

    manager = Manager()
    hook = hooks.CheckpointHook(manager, every=4)
    for step in range(1, 7):
        hook(_chunk(step, total_steps=6))
    assert manager.saved == [4, 6]


def test_eval_keeps_the_last_metrics():
    results = iter([{'pq': 0.1}, {'pq': 0.2}])
    hook = hooks.EvalHook(lambda: next(results), every=3)
    for step in range(1, 3):
        hook(_chunk(step))
    assert hook.metrics == {}
    for step in range(3, 7):
        hook(_chunk(step))
    assert hook.metrics == {'pq': 0.2}


def test_summaries_hold_losses_learning_rate_and_speed(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    hook = hooks.SummaryHook(writer, every=2)
    for step in (1, 2, 3):
        hook(_chunk(step, total_steps=3))
    written = {}
    for path in tmp_path.glob('events*'):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                written.setdefault(value.tag, []).append(event.step)
    assert written == {tag: [2, 3] for tag in (
        'total_loss', 'center_loss', 'learning_rate', 'steps_per_s',
        'images_per_s')}


def test_progress_is_logged_with_losses_lr_and_speed(caplog):
    hook = hooks.ProgressHook(total_steps=10, start_step=2)
    with caplog.at_level(logging.INFO):
        hook(_chunk(3, total_steps=10))
    [line] = [record.getMessage() for record in caplog.records]
    assert line.startswith('step 3/10 ')
    assert line.endswith('total_loss=0.5000 center_loss=0.2500 lr=0.01 '
                         '8.0 images/s')
    assert 'ETA' in line
