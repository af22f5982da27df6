# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Garbage collection of a store (the logic of ``store_cleanup``).

Three kinds of leftovers, removed in this order:

1. staging data of transfers that are not running (the backend knows its own: image directories without a
   record and staging directories older than ``staging_max_age`` - or at once when their run was killed
   holding the image lock - in a file store, images without a record in an rbd pool); first, because the
   lock a killed run left behind is what tells its staging data apart, and step 2 clears it;
2. images whose record is not active (an import that was interrupted or failed) and whose image lock
   is free, so no run is working on them: the record, the slice list and, in an rbd store, the image;
3. slices that no slice list references, under the exclusive slice guard, so that no import can be
   deciding at the same time that such a slice is already there.

Each step takes the same locks as imports and deletions, in the same order (image lock, then guard),
so a cleanup running next to playbooks never removes what a live transfer uses.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import is_complete


class StoreCleanup:
    def __init__(self, store, staging_max_age):
        self.store = store
        self.staging_max_age = staging_max_age
        self.report = {'store': store.name, 'removed_images': [], 'removed_staging': [], 'removed_slices': 0,
                       'released_bytes': 0, 'skipped': []}

    def run(self, check_mode):
        self.store.ensure_readable()
        backend = self.store.backend
        for what, size in backend.clean_staging(self.staging_max_age, check_mode):
            self.report['removed_staging'].append(what)
            self.report['released_bytes'] += size
        self._images(backend, check_mode)
        self._slices(backend, check_mode)
        report = self.report
        return bool(report['removed_images'] or report['removed_staging'] or report['removed_slices']), report

    def _images(self, backend, check_mode):
        for image_id, record in sorted(backend.read_records().items()):
            if record is None or is_complete(record):
                continue
            lock = backend.image_lock(image_id)
            if lock.busy():
                self.report['skipped'].append('image %s: a run is importing it now' % image_id)
                continue
            if check_mode:
                self.report['removed_images'].append(image_id)
                continue
            try:
                with lock:
                    record = backend.read_record(image_id)  # again, under the lock
                    if record is None or is_complete(record):
                        continue
                    backend.remove_image(image_id)
            except LockError:
                self.report['skipped'].append('image %s: a run took its lock meanwhile' % image_id)
                continue
            self.report['removed_images'].append(image_id)

    def _slices(self, backend, check_mode):
        with backend.slice_guard(exclusive=True):
            self._slices_guarded(backend, check_mode)
            if not check_mode:
                backend.reset_usage()  # what quota checks read from now on: counted while nothing changes

    def _slices_guarded(self, backend, check_mode):
        stored = backend.stored_slices()
        if not stored:
            return
        referenced = set()
        for image_id in backend.image_ids():
            slice_list = backend.read_slice_list(image_id)
            if slice_list is not None:
                referenced |= slice_list.digests()
        unreferenced = stored - referenced
        self.report['removed_slices'] = len(unreferenced)
        if unreferenced and not check_mode:
            self.report['released_bytes'] += backend.remove_unreferenced(unreferenced)
