# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One pass over the data: read -> inspect -> slice -> digests -> store writes.

The reader fills slice-sized buffers from a small pool (bounded memory: POOL_BUFFERS x 4 MiB). Each
buffer goes to every worker thread: md5 and sha512 of the whole image (the record's checksum and
os_hash_value), optionally the digest the operator declared, and the slicer (sha256 of the slice, then
the writes to every target store). hashlib and file I/O release the GIL on large buffers, so on two
cores the threads overlap; md5 is the slowest single stream (about 0.75 GB/s here).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import mmap
import threading

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps pylint's py2 checks quiet
    import Queue as queue  # noqa

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError, StoreError, TransferInterrupted
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import FormatInspector
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, SliceList, is_zero

# 16 x 4 MiB: the hash threads run on while the store writes stall (an OSD or radosgw pausing, a busy host) and
# the other way round. A 1 GiB import into rbd, 4 runs each, alternating, on a busy 2-core host: 7.6 s on average
# with 6 buffers, 7.2 s with 16. An inbox never blocks the reader while a buffer is free: the pool bounds the memory.
POOL_BUFFERS = 16
QUEUE_DEPTH = POOL_BUFFERS


class StoreSink:
    """One target store of a transfer; a failure here fails this store only."""

    def __init__(self, store, writer, byte_budget=None, fail_alone=False):
        self.store = store
        self.writer = writer
        self.byte_budget = byte_budget
        # allow_failure: a store that goes away fails alone (its staged slices kept); else the whole transfer stops
        self.fail_alone = fail_alone
        self.error = None
        self.interrupted = False  # set when this store went away at commit: its staged data is kept for a re-run

    def put(self, digest, data, index=None, origin=None):
        """``origin``: (fd, offset) where a local source file holds the same bytes, for writers that clone ranges."""
        if self.error:
            return
        try:
            if self.byte_budget is not None and self.writer.new_bytes + len(data) > self.byte_budget:
                if self.store.backend.has_slice(digest):
                    return
                raise StoreError("store '%s' quota exceeded: the image needs more than the %d bytes left under quota.bytes; "
                                 "raise the quota or delete images" % (self.store.name, self.byte_budget))
            if origin is not None and getattr(self.writer, 'clones', False):  # file stores, until their filesystem refuses a clone
                self.writer.put(digest, data, index, origin=origin)
            else:
                self.writer.put(digest, data, index)
        except TransferInterrupted as exc:
            if not self.fail_alone:
                raise  # the whole transfer stops and keeps its staged slices for the next run
            self.error, self.interrupted = str(exc), True
        except MultistoreError as exc:
            self.error = str(exc)
        except (IOError, OSError) as exc:
            self.error = "store '%s': write failed: %s" % (self.store.name, exc.strerror or exc)


class PipelineResult:
    def __init__(self):
        self.size = 0
        self.digests = {}
        self.slice_list = None
        self.report = None


class _Worker(threading.Thread):
    def __init__(self, work, release, errors):
        super(_Worker, self).__init__()
        self.daemon = True
        self.work = work
        self.release = release
        self.errors = errors
        self.inbox = queue.Queue(QUEUE_DEPTH)

    def run(self):
        while True:
            item = self.inbox.get()
            if item is None:
                return
            index, view, slot = item
            try:
                if not self.errors:
                    self.work(index, view)
            except Exception as exc:  # re-raised by the reader thread
                self.errors.append(exc)
            finally:
                self.release(slot)


def _observe(observer):
    return lambda index, view: observer(view)


def run(reader, sinks, extra_algorithms=(), on_slice=None, observers=()):
    """Stream ``reader`` into every sink; return a PipelineResult. Raises on source or format errors.

    ``observers`` are callables that see every buffer in order, each in its own thread (a signature
    verifier hashing the data, for example); an exception in one stops the transfer.
    """
    result = PipelineResult()
    inspector = FormatInspector()
    hashers = dict((name, hashlib.new(name)) for name in set(('md5', 'sha512')) | set(extra_algorithms))
    slices = []
    errors = []

    # Page-aligned (mmap) buffers let file stores write them with O_DIRECT, without a copy.
    buffers = [mmap.mmap(-1, SLICE_SIZE) for dummy in range(POOL_BUFFERS)]
    free = queue.Queue()
    for slot in range(POOL_BUFFERS):
        free.put(slot)
    pending = [0] * POOL_BUFFERS
    pending_lock = threading.Lock()

    def release(slot):
        with pending_lock:
            pending[slot] -= 1
            done = pending[slot] == 0
        if done:
            free.put(slot)

    def slice_work(index, view):
        # A memcmp first: it stops at the first non-zero byte, and spares the sha256 of holes (sparse images, datablocks).
        if is_zero(view):
            slices.append(None)
            return
        digest = hashlib.sha256(view).hexdigest()
        slices.append(digest)
        for sink in sinks:
            sink.put(digest, view, index, None if clone_fd is None else (clone_fd, index * SLICE_SIZE))
        if sinks and all(sink.error for sink in sinks):
            raise StoreError('every target store failed: %s' % '; '.join(sink.error for sink in sinks))

    # A local file source (reader.clone_fd) lets file stores on a reflink filesystem clone each slice's range of
    # the file instead of writing it; every buffer but the last is SLICE_SIZE, so slice i starts at i * SLICE_SIZE.
    clone_fd = getattr(reader, 'clone_fd', None)
    workers = [_Worker(_observe(hasher.update), release, errors) for hasher in hashers.values()]
    workers.append(_Worker(slice_work, release, errors))
    workers.extend(_Worker(_observe(observer), release, errors) for observer in observers)
    for worker in workers:
        worker.start()

    checked_early = False
    index = 0
    try:
        while not errors:
            slot = free.get()
            view = memoryview(buffers[slot])
            count = reader.read_into(view)
            if not count:
                free.put(slot)
                break
            view = view[:count]
            inspector.feed(view)
            if not checked_early and inspector.header_complete:
                inspector.early_check()
                checked_early = True
            with pending_lock:
                pending[slot] = len(workers)
            for worker in workers:
                worker.inbox.put((index, view, slot))
            result.size += count
            index += 1
            if on_slice is not None:
                on_slice(index)
    finally:
        for worker in workers:
            worker.inbox.put(None)
        for worker in workers:
            worker.join()
    if errors:
        raise errors[0]
    reader.finish(result.size)
    result.report = inspector.finish()
    result.digests = dict((name, hasher.hexdigest()) for name, hasher in hashers.items())
    result.slice_list = SliceList(result.size, slices)
    return result
