# -*- coding: utf-8 -*-
"""Lock owners told dead or alive with real processes: a zombie, a reused pid, a reboot, another host."""
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
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import (
    owner_gone, pid_alive, process_state, this_process)


def zombie():
    """A child that exited and that nobody reaped yet: what a killed module is until its parent waits for it."""
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    deadline = time.time() + 10
    while process_state(child.pid)[0] != 'Z' and time.time() < deadline:
        time.sleep(0.01)
    return child


def test_this_process_is_alive_with_its_start_time():
    owner = this_process()
    assert owner['pid'] == os.getpid() and owner['host'] == socket.gethostname()
    assert owner['started'] == process_state(os.getpid())[1] and owner['boot_id'] and owner['pid_ns']
    assert not owner_gone(owner)


def test_a_zombie_is_gone_though_kill_0_reaches_it():
    child = zombie()
    try:
        os.kill(child.pid, 0)  # what the lock used to ask: it succeeds on a zombie
        assert not pid_alive(child.pid)
        assert owner_gone({'host': socket.gethostname(), 'pid': child.pid})  # a lock file written before the start time was
    finally:
        child.wait()
    assert owner_gone({'host': socket.gethostname(), 'pid': child.pid})


def test_a_reused_pid_or_a_reboot_is_gone_another_host_or_namespace_is_not_judged():
    owner = this_process()
    assert owner_gone(dict(owner, started=owner['started'] - 1))  # another process got this pid since
    assert owner_gone(dict(owner, boot_id='00000000-0000-0000-0000-000000000000'))  # written before a reboot
    assert not owner_gone(dict(owner, started=owner['started'] - 1, host='elsewhere'))  # the lock's expiry decides
    assert not owner_gone(dict(owner, started=owner['started'] - 1, pid_ns='pid:[1]'))
    assert not owner_gone(dict(owner, pid='12'))


def test_a_lock_held_by_a_zombie_is_broken_at_once(tmp_path):
    path = str(tmp_path / 'img.lock')
    child = zombie()
    try:
        state = process_state(child.pid)
        with open(path, 'w') as handle:
            json.dump(dict(this_process(), pid=child.pid, started=state[1], token='old', expires_at=time.time() + 600), handle)
        lock = ExpiringLock(path, 'image x', wait=0)
        assert lock.abandoned() and not lock.busy()
        with lock:  # wait=0: taken at once, or LockError
            assert lock.held
    finally:
        child.wait()


def test_a_lock_of_a_live_owner_elsewhere_is_kept_until_it_expires(tmp_path):
    path = str(tmp_path / 'img.lock')
    with open(path, 'w') as handle:
        json.dump(dict(this_process(), host='elsewhere', token='old', expires_at=time.time() + 600), handle)
    lock = ExpiringLock(path, 'image x', wait=0)
    assert lock.busy() and not lock.abandoned()


def test_a_lock_of_a_live_process_here_says_which_command_holds_it(tmp_path):
    """What an operator sees when a killed ansible-playbook left its module running: the command still holding it."""
    path = str(tmp_path / 'img.lock')
    child = subprocess.Popen(['sleep', '600'])
    try:
        # Popen returns while the exec may still be setting up the new program: its cmdline reads empty until then
        deadline = time.time() + 10
        while time.time() < deadline and not open('/proc/%d/cmdline' % child.pid, 'rb').read():
            time.sleep(0.01)
        state = process_state(child.pid)
        with open(path, 'w') as handle:
            json.dump(dict(this_process(), pid=child.pid, started=state[1], token='old', expires_at=time.time() + 600), handle)
        with pytest.raises(LockError, match=r'another run is working on it \(it runs on this host now: sleep 600\); retry later'):
            ExpiringLock(path, 'image x', wait=0).acquire()
    finally:
        child.kill()
        child.wait()
    # gone: no command named, and the lock is broken
    with ExpiringLock(path, 'image x', wait=0) as lock:
        assert lock.held
