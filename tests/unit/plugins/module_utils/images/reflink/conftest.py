# -*- coding: utf-8 -*-
"""Fixtures for the reflink tests: an xfs filesystem made with reflink=1 on a loop file, mounted for the session.

Needs root, mkfs.xfs and loop devices; the tests that need it are skipped otherwise. `mount -o loop` sets the
loop device to autoclear, so the umount in the finalizer releases it (loop devices are global: never
`losetup -D`). Other tests use pytest's tmp_path, which is on the machine's ext4 root here: the fallback.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import subprocess
import tempfile
import uuid

import pytest


def _run(*command):
    return subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)


def make_loop_fs(base, mkfs, size='2G'):
    """Make and mount a filesystem on a sparse loop file under ``base``; return the mount point or a reason to skip."""
    if os.geteuid() != 0:
        return None, 'needs root (mount -o loop)'
    if not shutil.which(mkfs[0]):
        return None, '%s is not installed' % mkfs[0]
    image = os.path.join(base, 'fs.img')
    mountpoint = os.path.join(base, 'mnt')
    os.makedirs(mountpoint)
    _run('truncate', '-s', size, image)
    made = _run(*(mkfs + [image]))
    if made.returncode != 0:
        return None, '%s failed: %s' % (' '.join(mkfs), made.stderr.strip())
    mounted = _run('mount', '-o', 'loop', image, mountpoint)
    if mounted.returncode != 0:
        return None, 'mount -o loop failed: %s' % mounted.stderr.strip()
    return mountpoint, None


def unmount(mountpoint):
    if _run('umount', mountpoint).returncode != 0:
        _run('umount', '-l', mountpoint)


@pytest.fixture(scope='session')
def xfs_reflink():
    """The mount point of a fresh 2 GiB xfs made with reflink=1 (skips the test when it cannot be made)."""
    base = tempfile.mkdtemp(prefix='multistore-xfs-')
    mountpoint, reason = make_loop_fs(base, ['mkfs.xfs', '-q', '-m', 'reflink=1'])
    try:
        if mountpoint is None:
            pytest.skip(reason)
        yield mountpoint
    finally:
        if mountpoint is not None:
            unmount(mountpoint)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def xfs_dir(xfs_reflink):
    """A fresh directory on the reflink xfs, removed after the test."""
    path = os.path.join(xfs_reflink, uuid.uuid4().hex[:8])
    os.makedirs(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
