# -*- coding: utf-8 -*-
"""Live progress files: written while a transfer runs, read by another process, gone at the end."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import multiprocessing
import os
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.progress import (
    PERIOD, Progress, progress_path, read_progress, remove_dead_progress)
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import pipeline


class FakeClock:
    """The progress object's clock only (rate and write period); the file itself is real."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_is_written_rate_limited_and_removed(tmp_path):
    clock = FakeClock()
    progress = Progress(str(tmp_path), 'img-1', ['central', 'edge'], clock=clock)
    progress.set_total(1000)
    seen = read_progress(str(tmp_path), 'img-1')
    assert seen['bytes_total'] == 1000 and seen['bytes_done'] == 0 and seen['stores_left'] == 2 and seen['eta'] is None
    clock.now += 0.1
    progress.advance_to(100)
    assert read_progress(str(tmp_path), 'img-1')['bytes_done'] == 0  # within PERIOD: not rewritten
    clock.now += PERIOD
    progress.advance_to(400)
    seen = read_progress(str(tmp_path), 'img-1')
    assert seen['bytes_done'] == 400 and seen['rate'] == int(400 / (0.1 + PERIOD))
    assert seen['eta'] == round(600 / float(seen['rate']))
    progress.store_done()
    seen = read_progress(str(tmp_path), 'img-1')
    assert seen['stores_done'] == 1 and seen['stores_left'] == 1
    progress.advance_to(5000)  # never past the total
    progress.close()
    assert not os.path.exists(progress_path(str(tmp_path), 'img-1'))
    assert read_progress(str(tmp_path), 'img-1') is None


def _write_and_exit(directory):
    Progress(directory, 'img-2', ['central']).set_total(10)


def test_progress_of_a_dead_writer_is_ignored(tmp_path):
    process = multiprocessing.Process(target=_write_and_exit, args=(str(tmp_path),))
    process.start()
    process.join()
    path = progress_path(str(tmp_path), 'img-2')
    assert json.load(open(path))['bytes_total'] == 10  # the file is there ...
    assert read_progress(str(tmp_path), 'img-2') is None  # ... but its writer is gone


def test_unwritable_registry_does_not_fail_the_transfer(tmp_path):
    blocker = tmp_path / 'registry'
    blocker.write_text(u'a file where the directory should be')
    progress = Progress(str(blocker), 'img-3', ['central'])
    progress.set_total(10)
    progress.advance_to(5)
    progress.close()
    assert progress.disabled


def test_image_info_sees_progress_of_a_running_import(declare, registry, image_request, make_raw, monkeypatch):
    """A real import into two stores, looked at as image_info does after every slice: progress moves, then is gone."""
    declare('central')
    declare('edge')
    src = make_raw('big.raw', list(range(1, 13)))
    image_id = '2b8f0c8e-6f7a-4b59-9d44-8f1e2a3b4c5d'
    request = image_request(id=image_id, name='big', src=src, stores=['central', 'edge'])
    seen = []
    real_run = pipeline.run

    def run_and_look(reader, sinks, **kwargs):
        on_slice = kwargs['on_slice']

        def look(index):
            on_slice(index)
            time.sleep(PERIOD / 2)
            catalog = Catalog(registry)
            seen.append(catalog.find(image_id).describe(progress=catalog.progress(image_id)))
        kwargs['on_slice'] = look
        return real_run(reader, sinks, **kwargs)
    monkeypatch.setattr(pipeline, 'run', run_and_look)
    request.present(False)
    assert all(info['status'] == 'importing' and info['importing_to_stores'] == ['central', 'edge'] for info in seen)
    progress = [info['progress'] for info in seen]
    assert progress[0]['bytes_total'] == os.path.getsize(src) and progress[0]['stores'] == ['central', 'edge']
    assert progress[-1]['bytes_done'] > progress[0]['bytes_done'] and progress[-1]['rate'] > 0
    assert all(entry['stores_left'] == 2 and entry['stores_done'] == 0 for entry in progress)
    assert os.listdir(os.path.join(registry.directory, 'progress')) == []
    info = Catalog(registry).find(image_id).describe(progress=Catalog(registry).progress(image_id))
    assert info['status'] == 'active' and 'progress' not in info


def test_a_stalled_transfer_still_refreshes_its_progress(tmp_path):
    progress = Progress(str(tmp_path), 'img-4', ['central']).start()
    try:
        progress.set_total(100)
        progress.advance_to(50)
        first = read_progress(str(tmp_path), 'img-4')
        time.sleep(3 * PERIOD)  # no byte moves meanwhile
        later = read_progress(str(tmp_path), 'img-4')
        assert later['elapsed'] >= 1 and later['bytes_done'] == 50
        assert later['rate'] < first['rate'] or first['rate'] == 0
    finally:
        progress.close()
    assert read_progress(str(tmp_path), 'img-4') is None


def test_store_cleanup_removes_the_progress_files_of_killed_transfers(tmp_path):
    """A transfer killed with -9 never reaches close(): its file (and a temporary one cut short) would stay for ever."""
    registry = str(tmp_path / 'registry')
    live = Progress(registry, 'live-image', ['central']).start()
    try:
        dead = progress_path(registry, 'dead-image')
        with open(dead, 'w') as handle:
            json.dump({'pid': 2 ** 22 + 7, 'image_id': 'dead-image'}, handle)  # above pid_max: no such process
        young, old = (os.path.join(registry, 'progress', name) for name in ('.a.json.tmp-0123456789ab', '.b.json.tmp-ba9876543210'))
        for path in (young, old):
            open(path, 'w').close()
        os.utime(old, (1, 1))
        assert remove_dead_progress(registry) == ['.b.json.tmp-ba9876543210', 'dead-image.json']
        assert sorted(os.listdir(os.path.join(registry, 'progress'))) == ['.a.json.tmp-0123456789ab', 'live-image.json']
    finally:
        live.close()
