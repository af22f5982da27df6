# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds a lock: this process's identity, and whether a recorded owner is gone.

A lock names its owner by host and pid. On the owner's host a pid alone lies after a kill -9:

- a killed process stays a zombie until its parent reaps it, and kill(pid, 0) succeeds on a zombie; where
  a container's init does not reap orphans, it stays one for good;
- pids are reused (pid_max is 32768 here), so another process may carry it a while later.

So the owner also records the process's start time (field 22 of /proc/<pid>/stat, clock ticks since boot),
the boot id and its pid namespace. On the same host, in the same pid namespace, the owner is gone when its
pid has no process, a zombie (state Z or X), or a process started at another time; after a reboot every
owner of the earlier boot is gone. From another host or pid namespace nothing can be told: the lock's
expiry decides. Owners recorded before the start time was (no ``started``) are judged by pid and state.

The pid recorded is the process's, not a thread's: the module's own process (Ansible runs a module inside
its AnsiballZ wrapper's process), or the store agent on a remote file store's host, where the check runs too.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import socket

BOOT_ID = '/proc/sys/kernel/random/boot_id'


def _read(path):
    try:
        with open(path, 'r') as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def _pid_namespace():
    try:
        return os.readlink('/proc/self/ns/pid')
    except OSError:
        return None


def process_state(pid):
    """(state letter, start time in clock ticks) of ``pid`` from /proc, or None when /proc does not show it."""
    text = _read('/proc/%d/stat' % pid)
    if not text:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = text[text.rfind(')') + 2:].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def this_process():
    """The owner fields of the calling process: host, pid, started, boot_id, pid_ns (the last three where /proc has them)."""
    pid = os.getpid()
    owner = {'host': socket.gethostname(), 'pid': pid}
    state = process_state(pid)
    if state is not None:
        owner['started'] = state[1]
    boot_id = _read(BOOT_ID)
    if boot_id:
        owner['boot_id'] = boot_id
    namespace = _pid_namespace()
    if namespace:
        owner['pid_ns'] = namespace
    return owner


def pid_alive(pid, started=None):
    """False when ``pid`` is certainly no live process (started at ``started``, when given); True otherwise."""
    state = process_state(pid)
    if state is None:
        # No /proc entry: on Linux no such process, unless /proc hides other users' processes (hidepid).
        try:
            os.kill(pid, 0)
        except OSError as exc:
            return exc.errno == errno.EPERM
        return True
    letter, start = state
    if letter in ('Z', 'X'):
        return False
    return started is None or start == started


def owner_gone(owner):
    """True when the owner recorded in a lock is certainly gone: it ran on this host and its process is not running."""
    pid = owner.get('pid')
    if owner.get('host') != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    boot_id, current_boot = owner.get('boot_id'), _read(BOOT_ID)
    if boot_id and current_boot and boot_id != current_boot:
        return True  # written before this host last booted
    namespace = owner.get('pid_ns')
    if namespace and namespace != _pid_namespace():
        return False  # another container with this host name: its pids mean nothing here
    started = owner.get('started')
    return not pid_alive(pid, started if isinstance(started, int) else None)


def running_here(owner):
    """The command line of the owner's process when it runs on this host now (a live run: wait for it or stop it),
    else None. A kill of ansible-playbook alone leaves its modules running (Ansible's workers call setsid)."""
    pid = owner.get('pid')
    if owner.get('host') != socket.gethostname() or not isinstance(pid, int) or pid <= 0 or owner_gone(owner):
        return None
    namespace = owner.get('pid_ns')
    if namespace and namespace != _pid_namespace():
        return None
    command = (_read('/proc/%d/cmdline' % pid) or '').replace('\0', ' ').strip()
    return (command[:117] + '...' if len(command) > 120 else command) or None
