# -*- coding: utf-8 -*-
"""store_cleanup's engine on real file stores: interrupted imports, failed records, unreferenced slices."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer import sources

from image_files import leftovers, stored_slices
from killed_run import kill_group, start_paused


def interrupt_after(monkeypatch, reads):
    """The import is interrupted (Ctrl-C, as when ansible-playbook is stopped) after ``reads`` slice reads."""
    original = sources.LocalFileReader.read_into
    calls = []

    def read_into(self, view):
        calls.append(1)
        if len(calls) > reads:
            raise KeyboardInterrupt()
        return original(self, view)
    monkeypatch.setattr(sources.LocalFileReader, 'read_into', read_into)


def cleanup(registry, name, check_mode=False, max_age=86400):
    return StoreCleanup(registry.open(name), max_age).run(check_mode)


def test_interrupted_import_staging_is_kept_for_a_rerun_then_expires(registry, declare, image_request, make_raw, monkeypatch):
    path = declare('central')
    src = make_raw('a.raw', [1, 2, 3, 4, 5, 6])
    interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        image_request(name='img', src=src, stores=['central']).present(check_mode=False)
    monkeypatch.undo()
    partial = [name for name in os.listdir(os.path.join(path, 'staging')) if name.endswith('.partial')]
    assert len(partial) == 1 and os.listdir(os.path.join(path, 'staging', partial[0]))
    # young staging data stays: a re-run would adopt it
    changed, report = cleanup(registry, 'central')
    assert changed is False and report['removed_staging'] == []
    # once older than staging_max_age it goes; check mode first predicts without touching
    changed, report = cleanup(registry, 'central', check_mode=True, max_age=0)
    assert changed is True and report['removed_staging'] == ['staging/%s' % partial[0]]
    assert os.path.isdir(os.path.join(path, 'staging', partial[0]))
    changed, report = cleanup(registry, 'central', max_age=0)
    assert changed is True and report['released_bytes'] > 0
    assert os.listdir(os.path.join(path, 'staging')) == []
    assert cleanup(registry, 'central', max_age=0)[0] is False


def test_failed_records_and_unreferenced_slices_go_live_transfers_stay(registry, declare, image_request, make_raw):
    path = declare('central')
    keep = make_raw('keep.raw', [1, 2])
    assert image_request(name='keep', src=keep, stores=['central']).present(check_mode=False)
    store = registry.open('central').backend
    # A record left 'importing' by a run that died, and one a live run holds right now
    store.write_record('3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11', {'id': '3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11', 'status': 'importing'})
    store.write_record('4f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11', {'id': '4f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11', 'status': 'importing'})
    # Slices nobody references (a crash between removing an image and collecting its slices)
    writer = store.slice_writer('5f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11')
    writer.put('a' * 64, b'x' * 4096)
    os.rename(os.path.join(writer.directory, 'a' * 64), os.path.join(writer.directory, 'b' * 64))
    writer.staged = {'b' * 64: os.path.join(writer.directory, 'b' * 64)}
    writer.commit()
    before = set(stored_slices(path))
    with store.image_lock('4f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11'):
        changed, report = cleanup(registry, 'central')
    assert changed is True
    assert report['removed_images'] == ['3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11']
    assert report['skipped'] == ['image 4f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11: a run is importing it now']
    assert report['removed_slices'] == 1 and report['released_bytes'] == 4096
    assert set(stored_slices(path)) == before - set(['b' * 64])
    assert store.read_record('3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11') is None
    assert store.read_record('4f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11')['status'] == 'importing'
    # the image that was kept is whole: its two slices are there and a re-run has nothing to do
    kept = [image_id for image_id, record in store.read_records().items() if record.get('name') == 'keep'][0]
    assert all(store.has_slice(digest) for digest in store.read_slice_list(kept).digests())
    assert image_request(name='keep', src=keep, stores=['central']).present(check_mode=False) is False


def only(path, directory):
    names = os.listdir(os.path.join(path, directory))
    assert len(names) == 1, names
    return names[0]


def test_a_killed_import_is_resumed_at_once_though_its_pid_is_a_zombie(registry, declare, image_request, make_raw, locks_never_wait):
    """kill -9 of a real import's process group while it stages slices: the re-run neither waits on the dead run's
    lock (its pid is a zombie: kill(pid, 0) still reaches it) nor sends again what it had staged."""
    path = declare('central')
    src = make_raw('a.raw', list(range(1, 9)))
    run, pid = start_paused(registry, 'img', src, ['central'], 'slices:3')
    image_id = only(path, 'images')
    assert only(path, 'staging') == '%s.partial' % image_id and os.path.exists(os.path.join(path, 'locks', '%s.lock' % image_id))
    kill_group(run)
    try:
        os.kill(pid, 0)  # still "there" for the old check
        again = image_request(name='img', src=src, stores=['central'])
        assert again.present(check_mode=False)  # locks_never_wait: a lock judged live would fail here
        assert again.image_id == image_id and 'resumed: ' in again.actions[-1]
    finally:
        run.wait()
    assert leftovers(path) == ['images/%s' % image_id]
    assert cleanup(registry, 'central')[0] is False


@pytest.mark.parametrize('point', ['record', 'slices:3'])
def test_store_cleanup_removes_what_a_killed_import_left(registry, declare, make_raw, point):
    """Killed before its record was in place (a directory holding a temporary file, and a lock), or while staging
    (an 'importing' record, staged slices, a lock): store_cleanup removes all of it at once, and says so."""
    path = declare('central')
    src = make_raw('a.raw', list(range(1, 9)))
    run, _pid = start_paused(registry, 'img', src, ['central'], point)
    image_id = only(path, 'images')
    # while the run lives, nothing of it is touched, however old (store_cleanup would wait for its slice guard)
    assert registry.open('central').backend.clean_staging(0, check_mode=False) == [] and leftovers(path) != []
    kill_group(run)
    run.wait()
    # Killed before its 'importing' record was written, the run still held the lock of the new image's name, and its
    # name index entry, written just before, names no image either (tests/faults kill -9 points).
    name_lock = 'locks/name-%s.lock' % hashlib.sha256(b'img').hexdigest()
    entry = 'names/%s/%s (no image)' % (hashlib.sha256(b'img').hexdigest(), image_id)
    expected_staging = ['images/%s (no record)' % image_id, name_lock, entry] if point == 'record' else ['staging/%s.partial' % image_id]
    expected_images = [] if point == 'record' else [image_id]
    changed, report = cleanup(registry, 'central', check_mode=True)
    assert changed is True and report['removed_staging'] == expected_staging and report['removed_images'] == expected_images
    assert leftovers(path) != []
    changed, report = cleanup(registry, 'central')
    assert changed is True and report['removed_staging'] == expected_staging and report['removed_images'] == expected_images
    assert leftovers(path) == [] and stored_slices(path) == [] and os.listdir(os.path.join(path, 'names')) == ['complete.json']
    assert cleanup(registry, 'central')[0] is False


HOLD_LOCK = """
import sys, time
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
for path in sys.argv[1:]:
    ExpiringLock(path, path).acquire()
print('HELD', flush=True)
time.sleep(600)
"""


def test_store_cleanup_removes_the_locks_a_killed_run_left_alone(registry, declare, image_request, make_raw):
    """kill -9 of an import before it wrote anything but its locks (tests/faults, import3 seed 4711 point 1), or of a
    deletion in a store the re-run no longer touches: the dead locks are all that is left, and no run takes them again.
    store_cleanup removes them (and a break's temporary file), never a live lock nor anything of the image."""
    path = declare('central')
    image_request(name='img', src=make_raw('a.raw', [1, 2]), stores=['central']).present(check_mode=False)
    image_id = only(path, 'images')
    locks = os.path.join(path, 'locks')
    killed = [os.path.join(locks, '%s.lock' % name) for name in ('5f1dd3aa-ad40-4cc6-934f-e34b8d29ce3b', image_id)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(entry for entry in sys.path if entry))
    run = subprocess.Popen([sys.executable, '-c', HOLD_LOCK] + killed, stdout=subprocess.PIPE, env=env, universal_newlines=True)
    assert run.stdout.readline().strip() == 'HELD'
    run.kill()
    run.wait()
    shutil.copy(killed[0], killed[0] + '.broken-0123456789abcdef')  # a breaker killed between its rename and unlink
    live = ExpiringLock(os.path.join(locks, 'b4b0b8a6-6c1e-4e8e-9a53-0d1f2b7c9e11.lock'), 'live').acquire()
    try:
        changed, report = cleanup(registry, 'central', check_mode=True)
        assert changed is True and len(os.listdir(locks)) == 5
        changed, report = cleanup(registry, 'central')
        assert changed is True and sorted(report['removed_staging']) == sorted(
            'locks/%s' % os.path.basename(name) for name in killed + [killed[0] + '.broken-0123456789abcdef'])
        assert leftovers(path) == ['images/%s' % image_id, 'locks/b4b0b8a6-6c1e-4e8e-9a53-0d1f2b7c9e11.lock']
        assert registry.open('central').backend.read_record(image_id)['status'] == 'active'
        assert cleanup(registry, 'central')[0] is False
    finally:
        live.release()


def test_store_cleanup_removes_temporary_files_of_killed_writes_under_the_image_lock(registry, declare, image_request, make_raw):
    """kill -9 while a record, slice list or name index entry was being written (tests/faults, KILL_SEED=259465
    import3 point 9: names/<sha256>/.<id>.tmp-<random>) leaves its temporary file, invisible to every reader. store_cleanup
    removes it under the image's lock; an image whose lock a live run holds keeps its own."""
    path = declare('central')
    ids = []
    for name in ('one', 'two'):
        request = image_request(name=name, src=make_raw('%s.raw' % name, [1]), stores=['central'])
        request.present(check_mode=False)
        ids.append(request.image_id)
    temporaries = []
    for image_id, name in zip(ids, ('one', 'two')):
        digest = hashlib.sha256(name.encode('utf-8')).hexdigest()
        for temporary in ('images/%s/.record.json.tmp-0123456789ab' % image_id, 'names/%s/.%s.tmp-0123456789ab' % (digest, image_id)):
            with open(os.path.join(path, temporary), 'wb') as handle:
                handle.write(b'{"status": "imp')
            temporaries.append(temporary)
    live = registry.open('central').backend.image_lock(ids[1], wait=0).acquire()  # a run works on 'two' now
    try:
        changed, report = cleanup(registry, 'central', max_age=0)
    finally:
        live.release()
    assert changed is True and report['removed_staging'] == temporaries[:2]
    assert [name for name in temporaries if os.path.exists(os.path.join(path, name))] == temporaries[2:]
    assert [image_request(name=name, stores=['central']).present(check_mode=False) for name in ('one', 'two')] == [False, False]
