# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locks that concurrent playbooks rely on.

``ExpiringLock`` is the per-image-per-store lock: a file created with O_EXCL holding its owner and an
expiry. It survives on shared filesystems where flock is unreliable, and a crashed owner cannot block
forever: the lock is broken when it expired or when its owner process is gone from this host (told by pid,
start time and boot id, common/owners.py: a killed module's pid may be a zombie or reused). Glance learned
the need the hard way (two close copy-image calls raced, bug 1884596).

``SliceGuard`` keeps slice garbage collection apart from imports: an import decides "this slice is
already there, skip it", so no slice may vanish until its slice list is committed. Imports hold it
shared, deletions exclusive; the kernel drops it if the process dies.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import json
import os
import time
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import owner_gone, pid_alive, running_here, this_process

DEFAULT_TTL = 600
DEFAULT_WAIT = 60
# The cinder store's lease imports it under this name.
_pid_alive = pid_alive


class ExpiringLock:
    def __init__(self, path, what, ttl=DEFAULT_TTL, wait=DEFAULT_WAIT):
        self.path = path
        self.what = what
        self.ttl = ttl
        self.wait = wait
        self.token = uuid.uuid4().hex
        self.held = False

    def _content(self):
        return dict(this_process(), token=self.token, expires_at=time.time() + self.ttl)

    def _read(self):
        try:
            with open(self.path, 'r') as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None

    def _stale(self, owner):
        if owner is None:
            # Unreadable: a writer died between create and write, or is writing now. Give it a moment.
            try:
                return time.time() - os.stat(self.path).st_mtime > 5
            except OSError:
                return True
        return owner.get('expires_at', 0) < time.time() or owner_gone(owner)

    def _try_create(self):
        """Create the lock file with its content in one step (a hard link of a file written first), so that a run
        killed while it takes the lock never leaves an empty lock file that others must wait out; where links are
        refused, an exclusive create and then the write."""
        new = '%s.new-%s' % (self.path, self.token)
        with open(new, 'w') as handle:
            json.dump(self._content(), handle)
        try:
            os.link(new, self.path)
            return True
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
        finally:
            try:
                os.unlink(new)
            except OSError:
                pass
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        with os.fdopen(fd, 'w') as handle:
            json.dump(self._content(), handle)
        return True

    def acquire(self):
        deadline = time.time() + self.wait
        while True:
            if self._try_create():
                self.held = True
                return self
            owner = self._read()
            if self._stale(owner):
                # Rename first so that two breakers cannot both delete a fresh lock.
                broken = '%s.broken-%s' % (self.path, self.token)
                try:
                    os.rename(self.path, broken)
                    os.unlink(broken)
                except OSError:
                    pass
                continue
            if time.time() >= deadline:
                command = running_here(owner)
                raise LockError(
                    '%s is locked by %s (pid %s) until %s: another run is working on it%s; retry later, or remove %s '
                    'if that run is gone' % (self.what, owner.get('host'), owner.get('pid'),
                                             time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(owner.get('expires_at', 0))),
                                             ' (it runs on this host now: %s)' % command if command else '', self.path))
            time.sleep(0.2)

    def busy(self):
        """True when some live run holds this lock now."""
        return os.path.exists(self.path) and not self._stale(self._read())

    def abandoned(self):
        """True when the lock is there and names a process of this host that is gone: its run was killed holding it."""
        owner = self._read()
        return owner is not None and owner_gone(owner)

    def refresh(self):
        """Push the expiry forward during a long transfer."""
        if self.held:
            tmp = '%s.refresh-%s' % (self.path, self.token)
            with open(tmp, 'w') as handle:
                json.dump(self._content(), handle)
            os.rename(tmp, self.path)

    def release(self):
        if not self.held:
            return
        self.held = False
        owner = self._read()
        if owner and owner.get('token') == self.token:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class SliceGuard:
    def __init__(self, path, exclusive, wait=DEFAULT_WAIT):
        self.path = path
        self.exclusive = exclusive
        self.wait = wait
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.time() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                return self
            except (IOError, OSError) as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.time() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise LockError('the slices of the store behind %s are busy (an import or a deletion is running); retry later'
                                % os.path.dirname(self.path))
            time.sleep(0.1)

    def __exit__(self, *exc_info):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
