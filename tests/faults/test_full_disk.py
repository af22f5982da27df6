# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A file store on a filesystem that really fills up (a 96 MiB ext4 on a loop device), with real ansible-playbook runs.

- An import bigger than the free space fails with a message naming the store and "No space", leaves nothing an
  operator could see (no record, image_info does not show the image there), and store_cleanup finds nothing left
  behind; once space is freed the same task succeeds and the image exports byte-identical.
- A copy into the small store from a roomy one fails the same way; the re-run writes only the slices the store
  lacked: the slice files it already had are not rewritten (same inode, same mtime).

Needs root (losetup, mkfs.ext4, mount); skipped otherwise.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess

import pytest

from ansible_collections.vmimages.multistore.tests.faults.playbooks import run
from ansible_collections.vmimages.multistore.tests.faults.storewalk import (
    SLICE, StoreWalk, declare_stores, play, random_bytes, sha256_file, slice_digests, variant, write_file)

FS_SIZE = 96 * 1024 * 1024

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('losetup') or not shutil.which('mkfs.ext4'),
                                reason='a loop filesystem needs root, losetup and mkfs.ext4')


@pytest.fixture
def small_fs(tmp_path):
    """A 96 MiB ext4 (no reserved blocks) mounted on tmp_path/small; unmounted and detached even when the test fails."""
    image = str(tmp_path / 'small.ext4')
    mount_point = str(tmp_path / 'small')
    os.mkdir(mount_point)
    with open(image, 'wb') as handle:
        handle.truncate(FS_SIZE)
    device = subprocess.check_output(['losetup', '--find', '--show', image], universal_newlines=True).strip()
    mounted = False
    try:
        subprocess.check_call(['mkfs.ext4', '-q', '-F', '-m', '0', device])
        subprocess.check_call(['mount', device, mount_point])
        mounted = True
        yield mount_point
    finally:
        if mounted and subprocess.call(['umount', mount_point]) != 0:
            subprocess.call(['umount', '-l', mount_point])
        subprocess.call(['losetup', '-d', device])


def free_bytes(path):
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def fill(mount_point, leave):
    """A filler file that leaves about ``leave`` bytes free; returns its path."""
    path = os.path.join(mount_point, 'filler')
    size = free_bytes(mount_point) - leave
    with open(path, 'wb') as handle:
        handle.truncate(0)
    subprocess.check_call(['fallocate', '-l', str(size), path])
    return path


def _image_task(title, **options):
    body = ''.join('        %s: %s\n' % (key, value) for key, value in options.items())
    return '    - name: %s\n      vmimages.multistore.image:\n%s' % (title, body)


def _info(workdir, extravars, image):
    done = run(play('Info', '    - name: Info\n      vmimages.multistore.image_info: {name: %s}\n' % image), workdir, extravars, name='info.yml')
    assert done.rc == 0, done.describe()
    return done.results[0][1]['images']


def _cleanup(workdir, extravars):
    done = run(play('Clean up', '    - name: Clean up\n      vmimages.multistore.store_cleanup: {stores: [small], staging_max_age: 0}\n'),
               workdir, extravars, name='cleanup.yml')
    assert done.rc == 0, done.describe()
    return done.results[0][1]['stores'][0]


def _export(workdir, extravars, image, store):
    dest = os.path.join(workdir, 'out-%s-%s.raw' % (image, store))
    task = '    - name: Export\n      vmimages.multistore.image_export: {name: %s, store: %s, dest: "%s"}\n' % (image, store, dest)
    done = run(play('Export', task), workdir, extravars, name='export.yml')
    assert done.rc == 0, done.describe()
    return sha256_file(dest)


def _assert_no_space_failure(done, store_path):
    """The task failed with words: the store, and that there is no space; no traceback, no module crash."""
    assert done.rc != 0, done.describe()
    ((_task, msg),) = done.failures()
    text = str(msg)
    assert "store 'small'" in text or store_path in text, text
    assert 'no space' in text.lower(), text
    assert 'Traceback' not in text and 'MODULE FAILURE' not in text, text
    return text


def _stores(tmp_path, small_fs):
    workdir = str(tmp_path)
    paths = {'small': os.path.join(small_fs, 'store'), 'big': os.path.join(workdir, 'big')}
    extravars = {'registry': os.path.join(workdir, 'registry')}
    done = run(play('Declare the stores', declare_stores(paths)), workdir, extravars, name='declare.yml')
    assert done.rc == 0, done.describe()
    return workdir, extravars, paths


@needs_root
def test_an_import_bigger_than_the_free_space(tmp_path, small_fs):
    workdir, extravars, paths = _stores(tmp_path, small_fs)
    data = random_bytes(11, 12 * SLICE + 777)  # 48 MiB
    src = write_file(os.path.join(workdir, 'img.raw'), data)
    filler = fill(small_fs, 24 * 1024 * 1024)
    task = play('Import', _image_task('Import', name='img', src='"%s"' % src, disk_format='raw', stores='[small]'))

    failed = run(task, workdir, extravars, name='import.yml')
    _assert_no_space_failure(failed, paths['small'])
    walk = StoreWalk(paths['small'])
    assert walk.records == {} and walk.slice_lists == {}, walk.records  # nothing partial is visible
    assert _info(workdir, extravars, 'img') == []
    report = _cleanup(workdir, extravars)
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and walk.slice_files == {}, (walk.problems(), report)

    os.unlink(filler)
    done = run(task, workdir, extravars, name='import.yml')
    assert done.rc == 0 and done.changed_tasks() == ['Import'], done.describe()
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and set(walk.slice_files) == slice_digests(data), walk.problems()
    assert _export(workdir, extravars, 'img', 'small') == sha256_file(src)


@needs_root
def test_a_copy_into_a_full_store_and_its_rerun(tmp_path, small_fs):
    workdir, extravars, paths = _stores(tmp_path, small_fs)
    base = random_bytes(12, 6 * SLICE)
    # img is base and six slices more: the small store holds base, so a copy needs only those six (24 MiB).
    data = bytes(base) + bytes(variant(random_bytes(13, 6 * SLICE), 14, range(6)))
    base_src = write_file(os.path.join(workdir, 'base.raw'), base)
    src = write_file(os.path.join(workdir, 'img.raw'), data)
    done = run(play('Import', _image_task('Import base', name='base', src='"%s"' % base_src, disk_format='raw', stores='[small]') +
                    _image_task('Import img', name='img', src='"%s"' % src, disk_format='raw', stores='[big]')),
               workdir, extravars, name='imports.yml')
    assert done.rc == 0, done.describe()
    had = dict((digest, os.stat(os.path.join(paths['small'], 'slices', digest[:2], digest)))
               for digest in StoreWalk(paths['small']).slice_files)
    assert set(had) == slice_digests(base)
    filler = fill(small_fs, 10 * 1024 * 1024)
    copy = play('Copy', _image_task('Copy to small', name='img', stores='[small]'))

    failed = run(copy, workdir, extravars, name='copy.yml')
    _assert_no_space_failure(failed, paths['small'])
    walk = StoreWalk(paths['small'])
    assert sorted(record['name'] for record in walk.records.values()) == ['base'], walk.records
    (image,) = _info(workdir, extravars, 'img')
    assert image['stores'] == ['big'] and image['importing_to_stores'] == [] and image.get('failed_import', []) == [], image
    _cleanup(workdir, extravars)
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and set(walk.slice_files) == set(had), walk.problems()

    os.unlink(filler)
    done = run(copy, workdir, extravars, name='copy.yml')
    assert done.rc == 0 and done.changed_tasks() == ['Copy to small'], done.describe()
    assert done.results[0][1]['actions'] == ['copy to small from big'], done.results[0][1]['actions']
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and set(walk.slice_files) == slice_digests(data), walk.problems()
    # Only what was missing was written: the six new slices; the slices the store had are the same files, untouched.
    assert len(set(walk.slice_files) - set(had)) == 6
    for digest, before in had.items():
        after = os.stat(os.path.join(paths['small'], 'slices', digest[:2], digest))
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), digest
    assert _export(workdir, extravars, 'img', 'small') == sha256_file(src)


@needs_root
def test_an_import_into_two_stores_one_of_them_full(tmp_path, small_fs):
    """All or nothing by default (the roomy store does not keep it either); with allow_failure the roomy store keeps it,
    the full one is listed in failed_import with the reason, and a later run copies it there once there is room."""
    workdir, extravars, paths = _stores(tmp_path, small_fs)
    data = random_bytes(15, 10 * SLICE + 99)
    src = write_file(os.path.join(workdir, 'img.raw'), data)
    filler = fill(small_fs, 16 * 1024 * 1024)
    both = '"%s", disk_format: raw, stores: [big, small]' % src

    failed = run(play('Import', '    - name: Import\n      vmimages.multistore.image: {name: img, src: %s}\n' % both),
                 workdir, extravars, name='import.yml')
    text = _assert_no_space_failure(failed, paths['small'])
    assert 'no store was changed' in text, text
    assert StoreWalk(paths['big']).records == {} and StoreWalk(paths['small']).records == {}
    assert _info(workdir, extravars, 'img') == []

    done = run(play('Import', '    - name: Import\n      vmimages.multistore.image: {name: img, src: %s, allow_failure: true}\n' % both),
               workdir, extravars, name='import.yml')
    assert done.rc == 0, done.describe()
    (failure,) = done.results[0][1]['failed_import']
    assert failure['store'] == 'small' and 'no space' in failure['error'].lower(), failure
    (image,) = _info(workdir, extravars, 'img')
    assert image['status'] == 'active' and image['stores'] == ['big'], image
    assert StoreWalk(paths['small']).active() == []
    _cleanup(workdir, extravars)
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and walk.records == {} and walk.slice_files == {}, walk.problems()

    os.unlink(filler)
    done = run(play('Copy', _image_task('Copy to small', name='img', stores='[small]')), workdir, extravars, name='copy.yml')
    assert done.rc == 0 and done.results[0][1]['actions'] == ['copy to small from big'], done.describe()
    walk = StoreWalk(paths['small'])
    assert walk.problems() == [] and set(walk.slice_files) == slice_digests(data), walk.problems()
    assert _export(workdir, extravars, 'img', 'small') == sha256_file(src)
