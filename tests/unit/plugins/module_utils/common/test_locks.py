# -*- coding: utf-8 -*-
"""Expiring image locks and the slice guard, with real processes."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import atomic_write, read_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock, SliceGuard


def test_second_owner_waits_then_fails_with_owner_named(tmp_path):
    path = str(tmp_path / 'img.lock')
    with ExpiringLock(path, 'image x'):
        started = time.time()
        with pytest.raises(LockError, match='image x is locked by %s' % socket.gethostname()):
            ExpiringLock(path, 'image x', wait=0.5).acquire()
        assert time.time() - started >= 0.5
    assert not os.path.exists(path)
    with ExpiringLock(path, 'image x', wait=0.5):
        pass


def test_expired_lock_is_broken(tmp_path):
    path = str(tmp_path / 'img.lock')
    with open(path, 'w') as handle:
        json.dump({'token': 'old', 'host': 'elsewhere', 'pid': 1, 'expires_at': time.time() - 1}, handle)
    with ExpiringLock(path, 'image x', wait=0):
        assert read_json(path)['host'] == socket.gethostname()


def test_lock_of_dead_process_is_broken(tmp_path):
    path = str(tmp_path / 'img.lock')
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    with open(path, 'w') as handle:
        json.dump({'token': 'old', 'host': socket.gethostname(), 'pid': child.pid, 'expires_at': time.time() + 600}, handle)
    with ExpiringLock(path, 'image x', wait=0):
        pass


def test_refresh_moves_expiry(tmp_path):
    lock = ExpiringLock(str(tmp_path / 'img.lock'), 'image x', ttl=5).acquire()
    first = read_json(lock.path)['expires_at']
    time.sleep(0.01)
    lock.refresh()
    assert read_json(lock.path)['expires_at'] > first
    lock.release()


def test_slice_guard_exclusive_waits_for_shared_holder_in_other_process(tmp_path):
    path = str(tmp_path / 'slices.lock')
    holder = subprocess.Popen([sys.executable, '-c', (
        'import fcntl, os, sys, time\n'
        'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n'
        'fcntl.flock(fd, fcntl.LOCK_SH)\n'
        'print("held", flush=True)\n'
        'time.sleep(30)\n'), path], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b'held'
        with SliceGuard(path, exclusive=False, wait=0.2):
            pass  # shared with shared is fine
        with pytest.raises(LockError, match='busy'):
            with SliceGuard(path, exclusive=True, wait=0.3):
                pass
    finally:
        holder.kill()
        holder.wait()
    with SliceGuard(path, exclusive=True, wait=1):
        pass  # the kernel dropped the dead holder's lock


def test_atomic_write_never_leaves_partial_files(tmp_path):
    target = str(tmp_path / 'record.json')
    atomic_write(target, b'old')

    with pytest.raises(TypeError):
        atomic_write(target, object())
    assert open(target, 'rb').read() == b'old'
    assert os.listdir(str(tmp_path)) == ['record.json']


def test_a_lock_file_is_never_seen_empty_and_its_writer_leaves_nothing_else(tmp_path):
    """The lock file appears with its content (a hard link of a file written first): a run killed while taking a lock
    leaves no empty lock file that the next run would have to wait out."""
    path = str(tmp_path / 'img.lock')
    lock = ExpiringLock(path, 'image x', wait=0).acquire()
    with open(path) as handle:
        assert json.load(handle)['token'] == lock.token
    assert os.listdir(str(tmp_path)) == ['img.lock']
    assert not ExpiringLock(path, 'image x', wait=0)._try_create()  # taken: the second try changes nothing
    assert os.listdir(str(tmp_path)) == ['img.lock']
    lock.release()
    assert os.listdir(str(tmp_path)) == []
