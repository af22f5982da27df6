# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How writes reach the stores: one image's data into several stores at once, and the smaller writes.

A Transfer locks the image in every target store (in name order, so that two runs cannot deadlock),
holds each store's shared slice guard, checks the stores' quotas, writes an ``importing`` placeholder
record and opens a writer (a sink) on each; the data is then moved (``move_data``: a pipeline pass over
a source, or ``copy_from`` another store), and the stores that succeeded are committed central first:
slices, then the slice list, then the record flipped to ``active``. A crash or a failure never leaves
an incomplete image visible as active: a failure rolls every store back (staged slices are kept only
when the run was interrupted, so that a re-run sends only what is missing).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import functools

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    ImageError, MultistoreError, StoreError, TransferInterrupted)
from ansible_collections.vmimages.multistore.plugins.module_utils.images import fanout, policy
from ansible_collections.vmimages.multistore.plugins.module_utils.images.progress import Progress
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import is_complete
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.pipeline import StoreSink

LOCK_REFRESH_SLICES = 64


def lock_all(stack, stores, image_id):
    """Lock the image in every store, in a fixed order so that two runs cannot deadlock; [(store, lock)]."""
    locks = []
    for store in sorted(stores, key=lambda s: s.name):
        locks.append((store, stack.enter_context(store.backend.image_lock(image_id))))
    return locks


class Transfer:
    """One image's data into ``targets``: ``run(placeholder, move_data)`` commits every store that succeeded, or none.

    ``move_data(sinks, refresh, progress)`` moves the data into the sinks and returns (record, slice_list);
    ``refresh(index)`` reports progress and keeps the locks alive. With ``allow_failure`` the stores that
    fail are listed in ``failed_import`` and the others are committed.
    """

    def __init__(self, catalog, image_id, targets, allow_failure=False, failed_import=None, on_resumed=None, on_placeholders=None):
        self.catalog = catalog
        self.image_id = image_id
        self.targets = targets
        self.allow_failure = allow_failure
        self.failed_import = failed_import if failed_import is not None else []
        self.on_resumed = on_resumed  # called with the number of slices an interrupted run had staged already
        self.on_placeholders = on_placeholders  # called once every target shows the image as 'importing' (under its locks)
        self.done_elsewhere = []  # targets another run completed while this one waited for their locks: left untouched
        self._pending_gc = []

    def run(self, placeholder, move_data):
        """Run ``move_data(sinks, refresh, progress)`` into every target; undo everything on failure."""
        sinks = []
        self._pending_gc = []
        try:
            self._run_locked(placeholder, move_data, sinks)
        finally:
            # Slices of copies rolled back: collected now that this run holds no shared slice guard.
            for store, digests in self._pending_gc:
                try:
                    collect(store, digests)
                except (IOError, OSError, MultistoreError):
                    pass  # left for store_cleanup

    def _run_locked(self, placeholder, move_data, sinks):
        image_id = self.image_id
        with contextlib.ExitStack() as stack:
            locks = lock_all(stack, self.targets, image_id)
            # Looked at again under the locks: a run that held one may have completed the image there meanwhile. Its
            # copy stays as it is (an 'importing' placeholder over it, then a failure here, would remove it).
            self.done_elsewhere = [store.name for store in self.targets if _complete_in(store, image_id)]
            self.targets = targets = [store for store in self.targets if store.name not in self.done_elsewhere]
            if not targets:
                return
            progress = Progress(self.catalog.registry.directory, image_id, [store.name for store in targets]).start()
            stack.callback(progress.close)
            try:
                sinks.extend(self._sinks(stack, placeholder))
                if self.on_placeholders is not None:
                    self.on_placeholders()
                resumed = sum(len(sink.writer.staged_digests()) for sink in sinks)
                if resumed and self.on_resumed is not None:
                    self.on_resumed(resumed)
                record, slice_list = move_data(sinks, self._refresher(locks, progress, sinks), progress)
                self._finish(sinks, slice_list, record, progress)
            except BaseException as exc:
                # An interrupted transfer keeps its staged slices so that a re-run sends only what is missing;
                # a transfer that failed on its merits (checksum, format, quota) leaves nothing behind.
                keep = isinstance(exc, (TransferInterrupted, KeyboardInterrupt, SystemExit))
                for sink in sinks:
                    sink.writer.abort(keep=keep)
                for store in targets:
                    try:
                        existing = store.backend.read_record(image_id)
                        if existing is not None and existing.get('status') != 'active':
                            store.backend.remove_image(image_id)
                    except MultistoreError:
                        pass  # unreachable now: its placeholder shows as failed_import until the next run completes it
                raise

    def _refresher(self, locks, progress, sinks):
        def refresh(index):
            progress.advance_to(index * SLICE_SIZE)
            if index % LOCK_REFRESH_SLICES == 0:
                for store, lock in locks:
                    sink = next((sink for sink in sinks if sink.store is store), None)
                    if sink is not None and sink.error:
                        continue  # that store failed already: its lock goes with its release (or its agent)
                    try:
                        lock.refresh()
                    except TransferInterrupted as exc:
                        # A store that went away fails alone when failures are allowed; it keeps what it staged.
                        if not self.allow_failure or sink is None:
                            raise
                        sink.error, sink.interrupted = str(exc), True
        return refresh

    def _sinks(self, stack, placeholder):
        """Guard and open a writer on every (locked) target; write the 'importing' placeholder record."""
        image_id = self.image_id
        sinks = []
        for store in self.targets:
            stack.enter_context(store.backend.slice_guard(exclusive=False))
            quota_bytes, quota_images = store.quota()
            budget = None
            if quota_images is not None or quota_bytes is not None:
                stats = store.backend.usage() or store.backend.stats()  # the ledger, else a walk
                if quota_images is not None and stats['image_count'] >= quota_images and \
                        (store.backend.read_record(image_id) or {}).get('status') != 'active':
                    raise StoreError("store '%s' quota exceeded: it holds %d images, quota.images is %d; raise the quota or delete images"
                                     % (store.name, stats['image_count'], quota_images))
                if quota_bytes is not None:
                    budget = quota_bytes - stats['used']
            store.backend.write_record(image_id, placeholder)
            writer = store.backend.slice_writer(image_id)
            sinks.append(StoreSink(store, writer, budget))
        return sinks

    def _finish(self, sinks, slice_list, record, progress):
        """Commit the stores that succeeded (central first), or roll everything back."""
        image_id = self.image_id
        failed = [sink for sink in sinks if sink.error]
        if failed and not self.allow_failure:
            raise StoreError('; '.join(sink.error for sink in failed) +
                             ' (allow_failure is false: no store was changed; set allow_failure: true to keep the stores that succeeded)')
        committed = []
        for sink in sorted([s for s in sinks if not s.error], key=lambda s: policy.central_rank(s.store)):
            if sink.store.site_role == 'edge' and not policy.central_holds(self.catalog, image_id):
                sink.error = ("store '%s' is at the edge and no central store holds the image (the central import failed); "
                              "it will be copied once a central store has it" % sink.store.name)
                failed.append(sink)
                continue
            try:
                sink.writer.commit()
                sink.store.backend.count_new_slices(sink.writer.new_bytes)
                sink.store.backend.write_slice_list(image_id, slice_list)
                sink.store.backend.write_record(image_id, dict(record, status='active', updated_at=utc_now()))
            except (IOError, OSError, MultistoreError) as exc:
                reason = getattr(exc, 'strerror', None) or exc
                # An interrupted commit (the store went away) keeps what it staged, so that a re-run resumes.
                sink.interrupted = isinstance(exc, TransferInterrupted)
                if not self.allow_failure:
                    self._roll_back(committed, slice_list, sink, reason)
                sink.error = "store '%s': commit failed (%s)" % (sink.store.name, reason)
                failed.append(sink)
                continue
            committed.append(sink)
            progress.store_done()
        if not committed:
            raise StoreError('no store took the image, nothing was changed: %s' % '; '.join(sink.error for sink in failed))
        for sink in failed:
            self.failed_import.append({'store': sink.store.name, 'error': sink.error})
            try:
                sink.writer.abort(keep=sink.interrupted)
                sink.store.backend.write_record(image_id, dict(record, status='killed', failure=sink.error, updated_at=utc_now()))
            except (IOError, OSError, MultistoreError):
                pass  # the store is down: its 'importing' placeholder reads as a failed import until a run completes it
            if sink.interrupted:
                sink.store.lost(sink.error)  # gone mid-run (its link, its host): the rest of this run sees it disconnected

    def _roll_back(self, committed, slice_list, sink, reason):
        """A commit failed without allow_failure: make the stores committed already forget the image, then raise."""
        kept = []
        for done in committed:
            try:
                # Invisible at once; its slices are collected once this transfer's guards are released.
                done.store.backend.remove_image(self.image_id)
                self._pending_gc.append((done.store, slice_list.digests()))
            except (IOError, OSError, MultistoreError):
                kept.append(done.store.name)  # unreachable now: its copy is complete and verified
        error = TransferInterrupted if sink.interrupted else StoreError
        raise error("store '%s': commit failed (%s); %s" % (
            sink.store.name, reason, 'no store was changed' if not kept else
            'the copies in %s could not be rolled back and stay active' % ', '.join(kept)))


def _complete_in(store, image_id):
    try:
        return is_complete(store.backend.read_record(image_id))
    except (IOError, OSError, MultistoreError):
        return False  # the transfer finds out what is wrong with the store, and says so


def collect(store, digests):
    """Remove the slices among ``digests`` that no image of ``store`` uses any more; return the bytes freed."""
    with store.backend.slice_guard(exclusive=True):
        return store.backend.remove_unreferenced(digests)


def copy_from(source_store, image_id, record, slice_list, on_route=None):
    """The ``move_data`` of a copy: the slices the targets lack, verified, from ``source_store``.

    Targets on other store hosts fetch them themselves, host to host down a chain (images/fanout.py); the
    others get them read once from the source by this host. ``on_route(fanout)`` hears which host served which.
    """

    def move_data(all_sinks, refresh, progress):
        sinks = []
        for sink in all_sinks:
            if sink.writer.copy_inside_backend(source_store.backend, keep_alive=lambda: refresh(0)):
                continue  # copied inside the backend (rbd deep copy in one cluster): no data through this host
            sink.writer.plan(slice_list)
            sinks.append(sink)
        lacking, lengths = fanout.lacking_slices(sinks, slice_list)
        pulling = [sink for sink in sinks if fanout.can_pull(sink, source_store)]
        fan = fanout.FanOut(image_id, source_store, pulling, lacking, lengths).start() if pulling else None
        relayed = [sink for sink in sinks if sink not in pulling] + (fan.relay if fan else [])
        total = fanout.wanted_bytes(relayed, lacking, lengths)
        progress.set_total(total + (fan.bytes_total() if fan else 0))
        _relay(source_store, image_id, slice_list, relayed, lacking, refresh, others_running=bool(fan and fan.running))
        if fan is not None:
            late = [sink for sink in fan.wait(refresh, progress, done_before=total) if sink not in relayed]
            _relay(source_store, image_id, slice_list, late, lacking, refresh,
                   others_running=any(not other.error for other in sinks if other not in late))
            if on_route is not None:
                on_route(fan)
        return record, slice_list

    return move_data


def _relay(source_store, image_id, slice_list, sinks, lacking, refresh, others_running=False):
    """Read the slices ``sinks`` lack once from ``source_store`` (verified) and write each to the sinks lacking it."""
    wanted = [digest for digest in sorted(slice_list.digests()) if any(digest in lacking[sink.store.name] for sink in sinks)]
    if not wanted:
        return
    slices = source_store.backend.read_image_slices(image_id, slice_list, wanted)
    corrupt = functools.partial(_corrupt, image_id, source_store)
    for count, _length in enumerate(fanout.deliver(slices, sinks, lacking, corrupt), 1):
        refresh(count)
    if all(sink.error for sink in sinks) and not others_running:  # else the targets fetching on their own go on
        raise StoreError('; '.join(sink.error for sink in sinks))


def _corrupt(image_id, source_store, digest):
    return ImageError("slice %s of image %s is corrupt in store '%s': delete the image from that store and copy it there again from another"
                      % (digest, image_id, source_store.name))


def clone_into(targets, parent_id, image_id, record):
    """Write the clone ``image_id`` of ``parent_id`` into every target (central first); on failure remove it everywhere.

    A store that clones in place (rbd) makes a copy-on-write clone; the others get a new record over the
    parent's slices.
    """
    done = []
    try:
        with contextlib.ExitStack() as stack:
            for store in sorted(targets, key=lambda s: s.name):
                stack.enter_context(store.backend.image_lock(parent_id))
                stack.enter_context(store.backend.image_lock(image_id))
            for store in policy.central_first(targets):
                slice_list = store.backend.read_slice_list(parent_id)
                done.append(store)
                if policy.clones_in_place(store):
                    store.backend.clone_image(parent_id, image_id, record, slice_list)
                else:
                    with store.backend.slice_guard(exclusive=False):
                        store.backend.write_record(image_id, dict(record, status='importing'))
                        store.backend.write_slice_list(image_id, slice_list)
                        store.backend.write_record(image_id, record)
    except BaseException:
        for store in done:
            try:
                store.backend.remove_image(image_id)
            except MultistoreError:
                pass
        raise


def update_records(stores, image_id, updates):
    """Apply ``updates`` to the image's record in every store, under the image's locks."""
    with contextlib.ExitStack() as stack:
        lock_all(stack, stores, image_id)
        for store in stores:
            store.ensure_writable()
            record = store.backend.read_record(image_id)
            record.update(updates)
            record['updated_at'] = utc_now()
            store.backend.write_record(image_id, record)


def remove_copy(store, image_id):
    """Delete the image from one store and the slices no other image uses; return the bytes freed."""
    with store.backend.image_lock(image_id):
        slice_list = store.backend.read_slice_list(image_id)
        digests = slice_list.digests() if slice_list else set()
        with store.backend.slice_guard(exclusive=True):
            store.backend.remove_image(image_id)
            return store.backend.remove_unreferenced(digests)
