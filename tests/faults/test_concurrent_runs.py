# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Eight real ansible-playbook runs at once on one registry and the same file stores.

What an operator expects when eight jobs (AWX, cron, a catalog applied twice) hit the same image together:

- the same import eight times: every job succeeds, one imports, the others find the image there (one image id,
  one copy of each slice, no lock left behind; a later run changes nothing);
- copies to a store racing deletes from it: each job succeeds or says clearly why it did not, and the store ends
  with a whole, byte-identical copy or none at all, with nothing left over once store_cleanup ran;
- imports of images that share most of their slices racing store_cleanup and a delete: no slice an image needs
  goes missing, every surviving image exports byte-identical, and a final cleanup leaves no orphan.

The checks walk the store directories (records, slice lists, slice files, the name index, staging, locks) rather
than trusting the engine's report.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.vmimages.multistore.tests.faults.playbooks import run, start
from ansible_collections.vmimages.multistore.tests.faults.storewalk import (
    SLICE, StoreWalk, declare_stores, play, random_bytes, sha256_file, slice_digests, variant, write_file)

RUNS = 8
HANG_GUARD = 600  # seconds: a run that takes longer is stuck, not slow


@pytest.fixture
def stores(tmp_path):
    """A registry with file stores a and b; returns (workdir, extravars, {name: path})."""
    workdir = str(tmp_path)
    paths = {'a': os.path.join(workdir, 'stores', 'a'), 'b': os.path.join(workdir, 'stores', 'b')}
    extravars = {'registry': os.path.join(workdir, 'registry')}
    done = run(play('Declare the stores', declare_stores(paths)), workdir, extravars, name='declare.yml')
    assert done.rc == 0, done.describe()
    return workdir, extravars, paths


def _image_task(title, **options):
    body = ''.join('        %s: %s\n' % (key, value) for key, value in options.items())
    return '    - name: %s\n      vmimages.multistore.image:\n%s' % (title, body)


def _run_all(workdir, extravars, plays):
    """Start every (name, play text) at once, then wait for all of them."""
    started = [start(text, workdir, extravars, name=name) for name, text in plays]
    return [each.wait(HANG_GUARD) for each in started]


def _cleanup(workdir, extravars, store_names, name='cleanup.yml', verify=False):
    text = play('Clean up', '    - name: Clean up\n      vmimages.multistore.store_cleanup: {stores: %s, staging_max_age: 0%s}\n'
                % (list(store_names), ', verify: true' if verify else ''))
    done = run(text, workdir, extravars, name=name)
    assert done.rc == 0, done.describe()
    return dict((report['store'], report) for report in done.results[0][1]['stores'])


def _export(workdir, extravars, image, store, dest, name='export.yml'):
    task = ('    - name: Export\n      vmimages.multistore.image_export: {name: %s, store: %s, dest: "%s"}\n' % (image, store, dest))
    done = run(play('Export', task), workdir, extravars, name=name)
    assert done.rc == 0, done.describe()
    return sha256_file(dest)


def _export_all(workdir, extravars, images, store):
    """Export every image of ``images`` from ``store`` in one playbook; {image: sha256 of the exported file}."""
    task = ('    - name: Export\n      vmimages.multistore.image_export: {name: "{{ item }}", store: %s, dest: "%s/out-{{ item }}.raw"}\n'
            '      loop: %s\n' % (store, workdir, list(images)))
    done = run(play('Export', task), workdir, extravars, name='export-all.yml')
    assert done.rc == 0, done.describe()
    return dict((image, sha256_file(os.path.join(workdir, 'out-%s.raw' % image))) for image in images)


def _clear_message(msg):
    """A failure an operator can act on: words, not a Python traceback or a module crash."""
    text = str(msg or '')
    return bool(text) and 'Traceback' not in text and 'MODULE FAILURE' not in text and 'Exception' not in text


def test_the_same_import_eight_times_gives_one_image(stores):
    workdir, extravars, paths = stores
    data = random_bytes(1, 10 * SLICE + 12345)
    src = write_file(os.path.join(workdir, 'base.raw'), data)
    task = _image_task('Import', name='base', src='"%s"' % src, disk_format='raw', stores='[a, b]')
    runs = _run_all(workdir, extravars, [('import-%d.yml' % index, play('Import %d' % index, task)) for index in range(RUNS)])

    for each in runs:
        assert each.rc == 0, each.describe()
    # One run imported; the others waited for it (its name's lock, or the image's) and found the image there.
    changed = [result for each in runs for _name, result in each.results if result.get('changed')]
    assert len(changed) == 1, [result.get('actions') for each in runs for _name, result in each.results]
    for each in runs:
        for _name, result in each.results:
            if not result.get('changed'):
                assert not result['actions'] or 'another run completed it in a, b meanwhile' in result['actions'][-1], result['actions']
    image_ids = set(result['image']['id'] for each in runs for _name, result in each.results)
    assert len(image_ids) == 1, image_ids

    expected_slices = slice_digests(data)
    for name, path in sorted(paths.items()):
        walk = StoreWalk(path)
        assert walk.ids_named('base') == sorted(image_ids), (name, walk.records)
        assert walk.names == {next(iter(walk.names)): sorted(image_ids)}, (name, walk.names)
        assert set(walk.slice_files) == expected_slices, name
        assert walk.corrupt_slices() == [], name
        assert walk.problems() == [], name

    again = run(play('Import again', task), workdir, extravars, name='again.yml')
    assert again.rc == 0 and again.changed_tasks() == [], again.describe()
    for name in sorted(paths):
        assert _export(workdir, extravars, 'base', name, os.path.join(workdir, 'out-%s.raw' % name)) == sha256_file(src)


def test_the_same_clone_eight_times_gives_one_image(stores):
    workdir, extravars, paths = stores
    src = write_file(os.path.join(workdir, 'base.raw'), random_bytes(4, 2 * SLICE))
    done = run(play('Import', _image_task('Import', name='base', src='"%s"' % src, disk_format='raw', stores='[a, b]')), workdir,
               extravars, name='import.yml')
    assert done.rc == 0, done.describe()
    task = _image_task('Clone', name='golden', clone_from='base', state='cloned')
    runs = _run_all(workdir, extravars, [('clone-%d.yml' % index, play('Clone %d' % index, task)) for index in range(RUNS)])
    for each in runs:
        assert each.rc == 0, each.describe()
    assert len([each for each in runs if each.changed_tasks()]) == 1, [each.results for each in runs]
    for name, path in sorted(paths.items()):
        walk = StoreWalk(path)
        assert len(walk.ids_named('golden')) == 1 and walk.problems() == [], (name, walk.records, walk.problems())
        assert walk.slice_lists[walk.ids_named('golden')[0]] == walk.slice_lists[walk.ids_named('base')[0]]


def test_copies_racing_deletes_leave_a_whole_copy_or_none(stores):
    workdir, extravars, paths = stores
    data = random_bytes(2, 10 * SLICE + 4321)
    src = write_file(os.path.join(workdir, 'img.raw'), data)
    done = run(play('Import', _image_task('Import', name='img', src='"%s"' % src, disk_format='raw', stores='[a]')), workdir, extravars,
               name='import.yml')
    assert done.rc == 0, done.describe()
    copy = play('Copy', _image_task('Copy to b', name='img', stores='[b]'))
    delete = play('Delete', _image_task('Delete from b', name='img', stores='[b]', state='absent'))
    plays = []
    for index in range(RUNS // 2):
        plays += [('copy-%d.yml' % index, copy), ('delete-%d.yml' % index, delete)]
    runs = _run_all(workdir, extravars, plays)

    copied = [each for each in runs if 'copy' in each.path and each.changed_tasks()]
    assert copied, [each.describe() for each in runs]  # at least one copy ran (and maybe a delete after it)
    for each in runs:
        if each.rc != 0:
            failures = each.failures()
            assert failures, each.describe()  # a failed task, not a crashed playbook
            for _task, msg in failures:
                assert _clear_message(msg), each.describe()
    _cleanup(workdir, extravars, ['a', 'b'])

    a, b = StoreWalk(paths['a']), StoreWalk(paths['b'])
    assert a.problems() == [] and b.problems() == [], (a.problems(), b.problems())
    (image_id,) = a.ids_named('img')
    assert a.active() == [image_id] and set(a.slice_files) == slice_digests(data)
    if b.records:
        assert b.active() == [image_id], b.records
        assert set(b.slice_files) == slice_digests(data)
        assert _export(workdir, extravars, 'img', 'b', os.path.join(workdir, 'out-b.raw')) == sha256_file(src)
    else:
        assert b.slice_files == {} and b.names == {}, (b.slice_files, b.names)
    assert _export(workdir, extravars, 'img', 'a', os.path.join(workdir, 'out-a.raw')) == sha256_file(src)


def test_imports_sharing_slices_race_cleanup_and_a_delete(stores):
    workdir, extravars, paths = stores
    base = random_bytes(3, 10 * SLICE)
    # v0 has one slice of its own (9). v1..v5 each change one slice of the base, and all change slice 8 the same way: the
    # five imports stage that new slice at once, and share the seven others with v0, which is being deleted.
    common = variant(base, 'common', [8])
    images = dict(('v%d' % index, variant(common, index, [index])) for index in range(1, 6))
    images['v0'] = variant(base, 0, [9])
    sources = dict((name, write_file(os.path.join(workdir, '%s.raw' % name), data)) for name, data in images.items())
    done = run(play('Import v0', _image_task('Import', name='v0', src='"%s"' % sources['v0'], disk_format='raw', stores='[a]')),
               workdir, extravars, name='import-v0.yml')
    assert done.rc == 0, done.describe()

    # Each cleanup runs several times in a row, to overlap the imports' staging, placeholders and commits.
    cleanup = play('Clean up', '    - name: Clean up\n      vmimages.multistore.store_cleanup: {stores: [a], staging_max_age: 0}\n'
                   '      loop: [1, 2, 3, 4, 5, 6]\n')
    plays = [('import-v%d.yml' % index, play('Import v%d' % index, _image_task(
        'Import', name='v%d' % index, src='"%s"' % sources['v%d' % index], disk_format='raw', stores='[a]'))) for index in (1, 2, 3)]
    plays += [('cleanup-1.yml', cleanup), ('delete-v0.yml', play('Delete v0', _image_task('Delete', name='v0', state='absent')))]
    plays += [('import-v%d.yml' % index, play('Import v%d' % index, _image_task(
        'Import', name='v%d' % index, src='"%s"' % sources['v%d' % index], disk_format='raw', stores='[a]'))) for index in (4, 5)]
    plays += [('cleanup-2.yml', cleanup)]
    runs = _run_all(workdir, extravars, plays)

    for each in runs:
        if 'import' in each.path:
            assert each.rc == 0, each.describe()
        elif each.rc != 0:  # a cleanup or the delete may give up on a busy store, and must say so
            assert each.failures() and all(_clear_message(msg) for _task, msg in each.failures()), each.describe()
    survivors = ['v%d' % index for index in range(1, 6)]
    walk = StoreWalk(paths['a'])
    assert walk.missing_slices() == [], walk.missing_slices()  # before any further cleanup: nothing an image needs is gone
    reports = _cleanup(workdir, extravars, ['a'], name='verify.yml', verify=True)
    assert reports['a']['corrupt'] == [], reports
    if any('delete' in each.path and each.rc != 0 for each in runs):
        run(play('Delete v0', _image_task('Delete', name='v0', state='absent')), workdir, extravars, name='delete-again.yml')
        _cleanup(workdir, extravars, ['a'], name='cleanup-again.yml')

    walk = StoreWalk(paths['a'])
    assert walk.problems() == [], walk.problems()
    assert sorted(record['name'] for record in walk.records.values()) == survivors
    assert set(walk.slice_files) == set().union(*(slice_digests(images[name]) for name in survivors))
    assert walk.corrupt_slices() == []
    exported = _export_all(workdir, extravars, survivors, 'a')
    assert exported == dict((name, sha256_file(sources[name])) for name in survivors)
