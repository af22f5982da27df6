# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writing an image into an rbd store: slices at their offsets in the image ``<id>``, with aio_write.

The image being written is the staging area: its record says ``importing`` until the seal. A run killed
mid-write (kill -9: nothing rolls it back) leaves the image with what it wrote, and the re-run adopts it
instead of starting over: it reads back the ranges the image holds data in (diff_iterate: only allocated
objects) and hashes them, then writes only the ranges whose sha256 differs from the slice's. Ranges with
data that the new image does not have (zeros, or past its end) are discarded at the commit, so the result
is exactly the new image whatever the interrupted run had written, half-written ranges included.

Reading back costs less than writing again: measured here (the test lab's one OSD, pool size 1, a busy
2-core host), reading back and hashing 1 GiB took 4.2-5.3 s, importing it 16 s; a replicated pool writes
every range to each replica but reads it from one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

try:
    import rbd
except ImportError:  # rbd.py says what to install when the store is used
    pass

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import is_zero
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import SliceWriter, put_positions, slice_positions

IN_FLIGHT = 16
GROW_STEP = 1 << 30
REFRESH_SECONDS = 10
# Ranges read back at once when an interrupted import is adopted (librbd is thread-safe and releases the GIL).
ADOPT_READS = 4


def written_ranges(image, slice_size):
    """{index: sha256} of the ``slice_size`` ranges of ``image`` that hold data other than zeros."""
    size = image.size()
    indexes = set()

    def extent(offset, length, exists):
        if exists:
            indexes.update(range(offset // slice_size, (offset + length - 1) // slice_size + 1))
        return 0
    image.diff_iterate(0, size, None, extent, include_parent=False, whole_object=True)

    def digest(index):
        data = image.read(index * slice_size, min(slice_size, size - index * slice_size))
        return index, None if is_zero(data) else hashlib.sha256(data).hexdigest()
    with ThreadPoolExecutor(max_workers=ADOPT_READS) as pool:
        found = pool.map(digest, sorted(index for index in indexes if index * slice_size < size))
        return dict((index, sha) for index, sha in found if sha is not None)


class RbdSliceWriter(SliceWriter):
    """Writes slices at their offsets in the image ``<id>`` with aio_write, a bounded number in flight; adopts
    the ranges an interrupted run wrote (see the module's docstring)."""

    def __init__(self, store, image_id):
        self.store = store
        self.image_id = image_id
        self.new_bytes = 0
        self.adopted_bytes = 0
        self.positions = None
        self.pending = []
        self.failure = None
        self.image = store.open_image(image_id)
        self.size = self.image.size()
        self._found = None if self.size else {}
        self.done = set()  # positions holding their slice now: written by this run or adopted

    def found(self):
        """{index: sha256} of what an interrupted run left in the image; read on first use."""
        if self._found is None:
            try:
                self._found = written_ranges(self.image, self.store.slice_size)
            except rbd.Error as exc:
                raise self.store.error('cannot read back rbd image %s' % self.image_id, exc)
        return self._found

    def staged_digests(self):
        """The slices an interrupted run wrote; once a copy planned its slice list, those it wrote at every position
        the slice list has them (the copy then sends only the others)."""
        found = self.found()
        if self.positions is None:
            return sorted(set(found.values()))
        return sorted(digest for digest, indexes in self.positions.items() if all(found.get(index) == digest for index in indexes))

    def copy_inside_backend(self, source_backend, keep_alive=None):
        """Same cluster: librbd deep copy of the source's snapshot (data never passes through Python).

        The copy runs in a thread (librbd releases the GIL) while this one calls ``keep_alive`` every few
        seconds, so the image locks stay renewed through a long copy.
        """
        if not self.store.same_cluster(source_backend):
            return False
        placeholder = self.store.read_record(self.image_id)
        self._close()
        outcome = []

        def copy():
            try:
                self.store.deep_copy_from(source_backend, self.image_id)
                outcome.append(None)
            except BaseException as exc:  # handed to the calling thread
                outcome.append(exc)
        worker = threading.Thread(target=copy)
        worker.daemon = True
        worker.start()
        while worker.is_alive():
            worker.join(REFRESH_SECONDS)
            if worker.is_alive() and keep_alive is not None:
                keep_alive()
        if outcome and outcome[0] is not None:
            raise outcome[0]
        # The deep copy carried the source's metadata (an active record): until the seal, this copy is importing.
        self.store.write_record(self.image_id, placeholder)
        self.new_bytes = 0
        return True

    def expect(self, size):
        # The image takes the source's size at once: growing it mid-import waits for every write in flight.
        if size:
            try:
                self._grow(size, exact=True)
            except rbd.Error as exc:
                raise self.store.error('cannot resize rbd image %s' % self.image_id, exc)

    def plan(self, slice_list):
        self.positions = slice_positions(slice_list)
        found = self.found()
        for digest, indexes in self.positions.items():
            self.done.update(index for index in indexes if found.get(index) == digest)
        self._grow(slice_list.size, exact=True)

    def _grow(self, needed, exact=False):
        if needed <= self.size:
            return
        size = needed if exact else max(needed, min(self.size * 2, self.size + 8 * GROW_STEP), GROW_STEP)
        self._wait(0)
        self.image.resize(size)
        self.size = size

    def _done(self, completion):
        if completion.get_return_value() < 0 and self.failure is None:
            self.failure = -completion.get_return_value()

    def _wait(self, keep):
        while len(self.pending) > keep:
            self.pending.pop(0).wait_for_complete_and_cb()
        if self.failure is not None:
            hint = self.store.timeout_hint() if self.failure == errno.ETIMEDOUT else ''
            raise StoreError("store '%s': write to rbd image %s failed: %s%s" % (self.store.name, self.image_id, os.strerror(self.failure), hint))

    def put(self, digest, data, index=None):
        if index is not None and self.found().get(index) == digest:
            self.done.add(index)
            self.adopted_bytes += len(data)
            return False
        indexes = [position for position in put_positions(self.positions, digest, index, 'an rbd') if position not in self.done]
        if not indexes:
            return False
        data = bytes(data)
        slice_size = self.store.slice_size
        try:
            self._grow(indexes[-1] * slice_size + len(data))
            for position in indexes:
                self._wait(IN_FLIGHT - 1)
                self.pending.append(self.image.aio_write(data, position * slice_size, self._done))
                self.done.add(position)
                self.new_bytes += len(data)
        except rbd.Error as exc:
            raise self.store.error('write to rbd image %s failed' % self.image_id, exc)
        return True

    def commit(self):
        if self.image is None:
            return  # copied inside the backend
        slice_size = self.store.slice_size
        try:
            self._wait(0)
            # What the interrupted run wrote where the new image has zeros (or nothing: the seal cuts the size).
            for index in sorted(set(self.found()) - self.done):
                self.image.discard(index * slice_size, min(slice_size, self.size - index * slice_size))
            self.image.flush()
        except rbd.Error as exc:
            raise self.store.error('flush of rbd image %s failed' % self.image_id, exc)
        finally:
            self._close()

    def abort(self, keep=False):
        """Stop writing. A failure or an interrupt that reaches the engine removes the image (its record is not
        active); what a killed run wrote stays, and the next run adopts it."""
        try:
            self._wait(0)
        except StoreError:
            pass
        self._close()

    def _close(self):
        if self.image is not None:
            try:
                self.image.close()
            except rbd.Error:
                pass
            self.image = None
