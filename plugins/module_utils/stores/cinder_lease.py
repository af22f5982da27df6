# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The image lock of a cinder store: a lease in the metadata of the store's identity volume.

Cinder has no lock, but ``os-reserve`` is a compare-and-swap (available -> attaching): a lease is changed only while
the run holds the reservation of the identity volume (``CinderStore.with_reservation``), for the few calls it takes.
A lease lives LEASE_TTL seconds unless renewed; one whose owner is a dead process of this host is broken at once.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import socket
import time
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import _pid_alive

LEASE = 'multistore_lease.'
LEASE_TTL = 60
LEASE_WAIT = 75


class CinderLease:
    """The image lock of a Cinder store (see the module docstring)."""

    def __init__(self, store, image_id, ttl=LEASE_TTL, wait=LEASE_WAIT):
        self.store = store
        self.key = LEASE + image_id
        self.what = "image %s in store '%s'" % (image_id, store.name)
        self.ttl = ttl
        self.wait = wait
        self.owner = '%s %d %s' % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])
        self.held = False

    def _stale(self, value, now):
        try:
            host, pid, _cookie, expires = value.split(' ')
            if float(expires) < now:
                return True
            return host == socket.gethostname() and not _pid_alive(int(pid))
        except ValueError:
            return True  # not a lease we wrote

    def _mine(self, value):
        return (value or '').startswith(self.owner + ' ')

    def _try(self):
        """Take or renew the lease unless another live run holds it."""
        now = time.time()

        def decide(metadata):
            current = metadata.get(self.key)
            if current and not self._mine(current) and not self._stale(current, now):
                return False, None
            return True, {self.key: '%s %.0f' % (self.owner, now + self.ttl)}
        return self.store.with_reservation(decide)

    def __enter__(self):
        return self.acquire()

    def acquire(self):
        deadline = time.time() + self.wait
        while True:
            if self._try():
                self.held = True
                return self
            if time.time() >= deadline:
                holder = (self.store.identity_metadata().get(self.key) or '?').split(' ')
                raise LockError('%s is locked by %s (pid %s), another run working on it (waited %d s): try again when it has finished'
                                % (self.what, holder[0], holder[1] if len(holder) > 1 else '?', self.wait))
            time.sleep(0.5)

    def refresh(self):
        if self.held:
            try:
                self._try()
            except StoreError:
                pass  # the next refresh tries again; the TTL covers several refresh periods

    def busy(self):
        current = self.store.identity_metadata().get(self.key)
        return bool(current) and not self._mine(current) and not self._stale(current, time.time())

    def release(self):
        if not self.held:
            return
        self.held = False

        def decide(metadata):
            return self._mine(metadata.get(self.key)), {self.key: None}
        try:
            self.store.with_reservation(decide)
        except StoreError:
            pass  # expires on its own

    def __exit__(self, *exc_info):
        self.release()
        return False
