# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The slice writer of the object stores (objectstore.py): uploads in place, no staging area."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
from concurrent.futures import wait

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import SliceWriter
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import slice_key

# Slices copied and waiting or travelling per writer: bounds memory (16 x 4 MiB) and makes a slow
# store slow the pipeline down instead of filling memory.
UPLOADS_IN_FLIGHT = 16


class ObjectSliceWriter(SliceWriter):
    """Uploads the slices of one transfer on the store's threads: HEAD first, PUT only what is missing.

    ``put`` copies the slice (the pipeline reuses its buffer as soon as put returns) and queues it; at
    most UPLOADS_IN_FLIGHT copies are queued or travelling. A slice the bucket already has, or that this
    transfer already queued, is not sent again. An upload that failed surfaces on a later ``put`` or at
    ``commit``, which returns once every PUT was answered with success: the slices are then durable.
    """

    def __init__(self, store, image_id):
        self.store = store
        self.blobs = store.blobs
        self.image_id = image_id
        self.new_bytes = 0
        self.uploaded = {}
        self._seen = set()
        self._slots = threading.BoundedSemaphore(UPLOADS_IN_FLIGHT)
        self._lock = threading.Lock()
        self._pending = set()
        self._failure = None
        self._stopped = False
        self._committed = False

    def put(self, digest, data, index=None):
        """Queue the slice; True when queued, False when this transfer already has it."""
        self._raise_failure()
        if digest in self._seen:
            return False
        self._seen.add(digest)
        payload = self.blobs.payload(data)
        self._slots.acquire()
        try:
            future = self.blobs.executor().submit(self._upload, digest, payload)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        return True

    def _upload(self, digest, payload):
        if self._stopped or self._failure is not None:
            return  # the transfer failed or was aborted: send nothing more
        key = slice_key(digest)
        # A slice object of the wrong size is damaged (a content name fixes the size): replace it.
        if self.blobs.head_object(key, 'check slice %s' % digest, interrupted=True) == len(payload):
            return
        self.blobs.put_slice(key, payload, digest, 'upload slice %s' % digest, interrupted=True)
        with self._lock:
            self.uploaded[digest] = len(payload)
            self.new_bytes += len(payload)

    def _done(self, future):
        with self._lock:
            self._pending.discard(future)
            if not future.cancelled() and future.exception() is not None and self._failure is None:
                error = future.exception()
                if not isinstance(error, MultistoreError):
                    error = StoreError("store '%s': upload failed: %s" % (self.store.name, error))
                self._failure = error
        self._slots.release()

    def _raise_failure(self):
        if self._failure is not None:
            raise self._failure

    def _wait(self):
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            wait(pending)

    def staged_digests(self):
        """The slices this writer uploaded (slices the store already had are not staged: they are there)."""
        with self._lock:
            return list(self.uploaded)

    def commit(self):
        self._wait()
        self._raise_failure()
        self._committed = True  # from now on slice lists may reference these slices: abort leaves them

    def abort(self, keep=False):
        """Stop uploading; delete what this writer uploaded, unless ``keep`` or another transfer is running.

        Another transfer may have found one of these slices with HEAD and be counting on it: so the
        deletion takes the slice guard exclusively beside this transfer's shared hold (no new transfer
        starts meanwhile) and, when some other transfer holds it, leaves the slices to store_cleanup.
        After commit it does nothing. Never raises: the store may be gone.
        """
        if self._committed:
            return
        self._stopped = True
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()
        self._wait()
        with self._lock:
            doomed = sorted(self.uploaded)
        if keep or not doomed:
            return
        guard = self.store.slice_guard(exclusive=True, wait=0, beside_own=True)
        try:
            guard.acquire()
        except MultistoreError:
            return  # another transfer runs, or the store is gone: store_cleanup removes the slices later
        try:
            self.blobs.parallel(self.blobs.delete_object, [slice_key(digest) for digest in doomed])
            with self._lock:
                self.uploaded = {}
        except MultistoreError:
            pass
        finally:
            guard.release()
