# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Leases: the locks of an object store (S3, Swift), the counterpart of common/locks.py's lock files.

The object blob back end (objectstore.py) hands them out for the slice repository's image locks and slice guard::

    locks/<id>/<token>               leases on one image
    locks/slices/shared-<token>      the slice guard: transfers hold it shared,
    locks/slices/exclusive-<token>   slice deletion exclusive
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import getpass
import os
import random
import threading
import time
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError, MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import DEFAULT_TTL, DEFAULT_WAIT
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import owner_gone, this_process

GUARD_DIR = 'locks/slices/'
# The slice guard is kept alive by a heartbeat while its process runs (the engine never refreshes
# it), so its lease can be short: a crashed run on another host blocks deletions for this long.
GUARD_TTL = 120
LEASE_POLL = (0.2, 1.0)
# How long a release waits for a heartbeat in flight: the object stores' read timeout.
JOIN_TIMEOUT = 60


def _user():
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):
        return str(os.getuid())


# Tokens of leases this process let go of but could not delete (the store was unreachable then): they
# are stale for this process at once, not only when they expire, so that a later run in the same
# process is not locked out by its own past.
_RELEASED_TOKENS = set()


def _stale(owner):
    return owner.get('expires_at', 0) < time.time() or owner.get('token') in _RELEASED_TOKENS or owner_gone(owner)


def _when(timestamp):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(timestamp or 0))


class Lease:
    """A lock on an object store: write an intent (a lease object), then look at the others' leases.

    Each holder writes ``<directory><name>`` holding its owner, host, pid and expiry, then lists the
    directory. If a live lease it conflicts with is there, it deletes its own, waits a random moment
    and tries again, until ``wait`` seconds have passed (then LockError). Before writing, it lists
    first, so that a run that waits keeps asking without writing every time.

    Why this is a mutual exclusion: S3 (since 2020) and radosgw are read-after-write consistent for
    PUT and LIST, so a LIST shows every PUT that completed before it began. Take two runs A and B. If
    A's listing does not show B's lease, B's PUT completed after A's LIST began, hence after A's PUT
    completed; B's LIST begins after its own PUT, so it shows A's lease and B backs off. At most one
    run sees no rival: both may see each other and back off, and the random delay separates them on
    the next try. The slice guard is the same protocol with two classes of leases: shared holders
    (transfers) conflict only with exclusive ones (slice deletion), exclusive holders with everyone.

    Limits:
    - it is only as good as the listing's consistency: all runs must use the same region or zone
      (multi-site radosgw replicates asynchronously), and genuine OpenStack Swift updates container
      listings asynchronously under load (radosgw's Swift API is consistent: it is the same index);
    - expiry compares clocks: hosts must keep their clocks in sync (NTP), as with ExpiringLock;
    - a lease whose owner stopped refreshing past its expiry is deleted by the next run, as a file lock
      is broken; an owner that resumes after that has lost the lock without knowing it;
    - on the owner's host a lease whose process is gone is stale at once; from another host it
      blocks until it expires (image locks: DEFAULT_TTL, refreshed by the engine during transfers;
      the slice guard: GUARD_TTL, refreshed by a heartbeat thread while its process lives).
    """

    def __init__(self, blobs, directory, name, what, conflicts, ttl=DEFAULT_TTL, wait=DEFAULT_WAIT, heartbeat=False, beside_own=False):
        self.blobs = blobs
        # True: this process's other leases on the store are no rivals (a transfer that holds the guard
        # shared takes it exclusively too, to delete the slices it uploaded).
        self.beside_own = beside_own
        self.directory = directory
        self.token = uuid.uuid4().hex
        self.key = directory + name.replace('{token}', self.token)
        self.what = what
        self.conflicts = conflicts
        self.ttl = ttl
        self.wait = wait
        self.heartbeat = heartbeat
        self.held = False
        self._stop = None
        self._beat = None

    def _content(self):
        return dict(this_process(), token=self.token, owner=_user(), expires_at=time.time() + self.ttl)

    def _write(self, interrupted=False):
        self.blobs.write_json(self.key, self._content(), interrupted=interrupted)

    def _rivals(self, clean):
        """The live leases this one conflicts with: [(key, owner)]; with ``clean``, delete stale ones."""
        rivals = []
        for key, _size in self.blobs.listing(self.directory):
            if key == self.key or (self.beside_own and key in self.blobs.own_leases) or not self.conflicts(key[len(self.directory):]):
                continue
            owner = self.blobs.read_lease(key)
            if owner is None:
                continue  # released since the listing
            if _stale(owner):
                if clean:
                    self.blobs.delete_object(key)
                continue
            rivals.append((key, owner))
        return rivals

    def acquire(self):
        deadline = time.time() + self.wait
        while True:
            rivals = self._rivals(clean=True)
            if not rivals:
                self._write()
                try:
                    rivals = self._rivals(clean=False)
                except MultistoreError:
                    self._remove()
                    raise
                if not rivals:
                    self._hold()
                    return self
                self._remove()
            if time.time() >= deadline:
                raise LockError(self._busy_message(*rivals[0]))
            time.sleep(random.uniform(*LEASE_POLL))

    def _busy_message(self, key, owner):
        if self.directory == GUARD_DIR:
            running = 'a slice deletion' if key[len(GUARD_DIR):].startswith('exclusive-') else 'an import or copy'
            return ('%s are busy: %s by %s@%s (pid %s) is running; retry later, or delete %s if that run is gone (it expires at %s)'
                    % (self.what, running, owner.get('owner'), owner.get('host'), owner.get('pid'), self.blobs.object_url(key),
                       _when(owner.get('expires_at'))))
        return ('%s is locked by %s@%s (pid %s) until %s: another run is working on it; retry later, or delete %s if that run '
                'is gone' % (self.what, owner.get('owner'), owner.get('host'), owner.get('pid'), _when(owner.get('expires_at')),
                             self.blobs.object_url(key)))

    def _hold(self):
        self.held = True
        self.blobs.own_leases.add(self.key)
        if self.heartbeat:
            self._stop = threading.Event()
            self._beat = threading.Thread(target=self._heartbeat, name='lease %s' % self.key)
            self._beat.daemon = True
            self._beat.start()

    def _heartbeat(self):
        while not self._stop.wait(max(1.0, self.ttl / 4.0)):
            try:
                self._write()
            except MultistoreError:
                pass  # unreachable for now: the next beat tries again; the lease expires if it stays so

    def _remove(self):
        try:
            self.blobs.delete_object(self.key)
        except MultistoreError:
            _RELEASED_TOKENS.add(self.token)  # unreachable: the lease expires, or the next run deletes it

    def busy(self):
        """True when some live run holds this lock now."""
        return self.held or bool(self._rivals(clean=False))

    def abandoned(self):
        """True when a lease here names a process of this host that is gone: its run was killed holding it."""
        for key, _size in self.blobs.listing(self.directory):
            owner = self.blobs.read_lease(key)
            if owner is not None and self.conflicts(key[len(self.directory):]) and owner_gone(owner):
                return True
        return False

    def refresh(self):
        """Push the expiry forward during a long transfer."""
        if self.held:
            self._write(interrupted=True)

    def release(self):
        if not self.held:
            return
        self.held = False
        if self._beat is not None:
            self._stop.set()
            self._beat.join(JOIN_TIMEOUT)
            self._beat = None
        self._remove()
        self.blobs.own_leases.discard(self.key)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
