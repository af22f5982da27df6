# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image lock of an rbd store: an exclusive cls_lock on the RADOS object ``multistore.lock.<id>``.

The lock has a duration that the holder renews while it works, so the OSD drops the lock of a run that
stopped renewing after LOCK_TTL seconds; that covers an owner on another host. The holder also writes its
identity into the object (host, pid, start time, boot id: common/owners.py), so that a run on the same host
breaks the lock of a dead owner at once, as a file store's lock is broken, instead of waiting for the OSD.

Breaking: the python binding cannot break another client's cls_lock, but removing the object drops the lock
with it. The breaker removes it in one operation that asserts the object's version it read the dead owner
from: if anyone took, renewed or broke the lock since, the version moved and the removal fails, so two
breakers cannot both win, and a fresh lock is never removed. The dead run's Ceph client may also still hold
the image's own exclusive lock (the exclusive-lock feature): librbd would wait for that client's watch to
time out (30 s, measured) before anyone else writes, so the breaker breaks it too (rbd lock break), found
by the client address the owner recorded.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import time
import uuid

try:
    import rados
except ImportError:  # rbd.py says what to install when the store is used
    pass

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import owner_gone, this_process

LOCK_NAME = 'vmimages.multistore'
LOCK_TTL = 60
LOCK_WAIT = 75
OWNER_BYTES = 4096


class RbdLock:
    def __init__(self, store, image_id, ttl=LOCK_TTL, wait=LOCK_WAIT):
        self.store = store
        self.image_id = image_id
        self.key = 'multistore.lock.%s' % image_id
        self.what = "image %s in store '%s'" % (image_id, store.name)
        self.ttl = ttl
        self.wait = wait
        owner = this_process()
        self.cookie = '%s:%d:%s' % (owner['host'], owner['pid'], uuid.uuid4().hex)
        self.refreshed = 0
        self.held = False

    def _take(self, cookie, duration, renew=False):
        ioctx = self.store.ioctx()
        try:
            ioctx.lock_exclusive(self.key, LOCK_NAME, cookie, desc=self.what, duration=duration, flags=1 if renew else 0)
            return True
        except (rados.ObjectBusy, rados.ObjectExists):
            return False

    def owner(self):
        """(owner record, object version) of the holder; (None, None) when there is none or it is not written yet."""
        ioctx = self.store.ioctx()
        try:
            data = ioctx.read(self.key, OWNER_BYTES)
            version = ioctx.get_last_version()
        except rados.ObjectNotFound:
            return None, None
        try:
            return json.loads(data.decode('utf-8')), version
        except ValueError:
            return None, None

    def _break_if_dead(self):
        """Remove the lock object when its owner is a process of this host that is gone; True when done."""
        owner, version = self.owner()
        if owner is None or not owner_gone(owner):
            return False
        ioctx = self.store.ioctx()
        with rados.WriteOpCtx() as operation:
            operation.assert_version(version)
            operation.remove()
            try:
                ioctx.operate_write_op(operation, self.key)
            except rados.Error:
                return False  # taken, renewed or broken by another run meanwhile
        self.store.break_dead_client(self.image_id, owner.get('client'))
        return True

    def __enter__(self):
        deadline = time.time() + self.wait
        while True:
            try:
                if self._take(self.cookie, self.ttl):
                    owner = dict(this_process(), cookie=self.cookie, client=self.store.cluster().get_addrs())
                    self.store.ioctx().write_full(self.key, json.dumps(owner).encode('utf-8'))
                    self.held = True
                    return self
                if self._break_if_dead():
                    continue
            except rados.Error as exc:
                raise self.store.error('cannot lock %s' % self.what, exc)
            if time.time() >= deadline:
                owner = self.owner()[0] or {}
                raise LockError('%s is locked by another run%s (waited %d s): try again when it has finished' % (
                    self.what, ' (%s, pid %s)' % (owner.get('host'), owner.get('pid')) if owner else '', self.wait))
            time.sleep(0.5)

    def refresh(self):
        if self.held:
            self.refreshed = time.time()
            try:
                self._take(self.cookie, self.ttl, renew=True)
            except rados.Error:
                pass  # the next refresh tries again; the duration covers several refresh periods

    def busy(self):
        """True when another live run holds the lock now."""
        probe = '%s:probe:%s' % (this_process()['host'], uuid.uuid4().hex)
        try:
            if not self._take(probe, 1):
                owner = self.owner()[0]
                return owner is None or not owner_gone(owner)
            self.store.ioctx().unlock(self.key, LOCK_NAME, probe)
        except rados.Error:
            return False
        return False

    def __exit__(self, *exc_info):
        if self.held:
            self.held = False
            try:
                ioctx = self.store.ioctx()
                ioctx.unlock(self.key, LOCK_NAME, self.cookie)
                ioctx.remove_object(self.key)
            except rados.Error:
                pass  # expires on its own
        return False
