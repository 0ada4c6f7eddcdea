"""progress: the one reporter's line, checked against hand-made counts."""

import io
import logging

from deeplab2 import progress as progress_lib


def test_format_duration():
    assert progress_lib.format_duration(3725.9) == '1:02:05'
    assert progress_lib.format_duration(-3) == '0:00:00'


def test_live_line_redraws_and_ends_with_newline(monkeypatch):
    clock = iter([100.0, 102.0, 104.0])
    monkeypatch.setattr(progress_lib.time, 'perf_counter', lambda: next(clock))
    stream = io.StringIO()
    reporter = progress_lib.Progress(2, label='Converting train',
                                     unit='image', stream=stream, live=True)
    reporter.advance(detail='a.png')
    reporter.advance(detail='b.png')
    assert stream.getvalue() == (
        '\rConverting train 1/2 2.00 s/image ETA 0:00:02 a.png\033[K'
        '\rConverting train 2/2 2.00 s/image ETA 0:00:00 b.png\033[K\n')


def test_resumed_counts_only_new_units_and_quiet_logs(monkeypatch, caplog):
    clock = iter([0.0, 30.0])
    monkeypatch.setattr(progress_lib.time, 'perf_counter', lambda: next(clock))
    stream = io.StringIO()
    reporter = progress_lib.Progress(100, label='step', unit='step', done=40,
                                     stream=stream, live=False,
                                     log_when_quiet=True)
    with caplog.at_level(logging.INFO):
        reporter.update(50, 'loss=1.0000')
    assert stream.getvalue() == ''
    # 10 steps in 30 s: 3 s/step, 50 left: 150 s.
    assert caplog.messages == ['step 50/100 3.00 s/step ETA 0:02:30 loss=1.0000']


def test_clear_erases_a_drawn_line_only(monkeypatch):
    """Before the first update and after the last there is no live line
    to erase; in between, the line goes so a log line starts at column 0."""
    monkeypatch.setattr(progress_lib.time, 'perf_counter', lambda: 0.0)
    stream = io.StringIO()
    reporter = progress_lib.Progress(2, label='x', stream=stream, live=True)
    reporter.clear()
    assert stream.getvalue() == ''
    reporter.advance()
    reporter.clear()
    assert stream.getvalue().endswith('\033[K\r\033[K')
    reporter.advance()
    written = stream.getvalue()
    reporter.clear()
    assert stream.getvalue() == written
    quiet = progress_lib.Progress(2, stream=io.StringIO(), live=False)
    quiet.advance()
    quiet.clear()
    assert quiet.stream.getvalue() == ''
