# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface every store backend implements.

A store holds content-addressed slices, and per image a record (Glance fields) and a slice list. The
image engine only talks to this interface; a backend owns its layout, its locks and its statistics.

Writes follow one order everywhere, so a crash never leaves an incomplete image visible as active:
slices (durable) -> slice list -> record with status ``active``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError

# Name locks of back ends without their own (name_lock): the lock of a UUID made from the name, never an image's id.
NAME_LOCK_NAMESPACE = uuid.UUID('7d6f3b52-3c1e-4c55-9d2a-6b1f0e8a4c01')

# Statuses of a complete copy of an image: its data is all there (a deactivated image keeps its data, as in Glance).
COMPLETE_STATUSES = ('active', 'deactivated')


def name_lock_id(name):
    return str(uuid.uuid5(NAME_LOCK_NAMESPACE, name))


def is_complete(record):
    return (record or {}).get('status') in COMPLETE_STATUSES


class SliceWriter:
    """Collects the slices of one import or copy into a store; nothing is visible before commit()."""

    new_bytes = 0

    def copy_inside_backend(self, source_backend, keep_alive=None):
        """Copy the image from ``source_backend`` without moving data through this host, when the backend can
        (rbd pools of one cluster); return True when done, False to have the slices streamed. ``keep_alive()``
        renews the transfer's locks and must be called every few seconds during a long copy."""
        return False

    def plan(self, slice_list):
        """Called before a copy with the image's whole slice list (position-addressed stores need it)."""

    def expect(self, size):
        """Called before an import whose size is known (a volume that cannot shrink is made that size at once)."""

    def put(self, digest, data, index=None):
        """Stage a slice unless the store already has it; return True when bytes were written.

        ``index`` is the slice's position during an import (every position is passed, in order,
        duplicates included); during a copy it is None and each distinct slice comes once: a
        position-addressed store (rbd) writes it at every position of the planned slice list.
        """
        raise NotImplementedError

    def staged_digests(self):
        """Slices already staged (adopted from an interrupted run or written by this one)."""
        raise NotImplementedError

    def flush(self):
        """Make the slices put so far readable as staged (by a store host fetching them) before the commit."""

    def commit(self):
        """Make every staged slice durable and visible."""
        raise NotImplementedError

    def abort(self, keep=False):
        """Drop every staged slice; with ``keep`` (an interrupted transfer) leave them for the next run."""
        raise NotImplementedError


class NoSliceGuard:
    """The slice guard of image-level stores (rbd, cinder): their images share no slices, so garbage collection
    has nothing to race with."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def slice_positions(slice_list):
    """{digest: [positions]} of a slice list: where an image-level store writes each slice a copy sends once."""
    positions = {}
    for index, digest in enumerate(slice_list.slices):
        if digest:
            positions.setdefault(digest, []).append(index)
    return positions


def put_positions(positions, digest, index, kind):
    """Where an image-level store writes a slice: its position during an import, or every position of the slice
    list a copy planned (``positions`` from slice_positions)."""
    if index is not None:
        return [index]
    if positions is None:
        raise ImageError('internal error: %s copy needs the slice list first (plan)' % kind)
    return positions.get(digest, [])


class Store:
    kind = None
    # True for stores reached over a network: unreachable means disconnected, not an error.
    remote = False
    # What the back end can do (backends/backend.py): set from its declaration when the store is opened.
    capabilities = frozenset()

    def __init__(self, name, config):
        self.name = name
        self.config = config

    def can(self, capability):
        return capability in self.capabilities

    # identity and health
    def read_identity(self):
        raise NotImplementedError

    def write_identity(self, identity):
        raise NotImplementedError

    def check_root(self):
        """None, or why the store root cannot hold a store (for example: it is a file)."""
        raise NotImplementedError

    def status(self):
        """'connected' or 'disconnected' (the engine adds 'disabled' from the identity)."""
        raise NotImplementedError

    def writable_problem(self):
        """None, or why the store cannot take new data now."""
        return None

    def where(self):
        """Where the store is, for messages (a path, pool or bucket URL)."""
        return self.config.get('path') or self.name

    def stats(self):
        """dict: capacity, free, used (bytes), image_count, slice_count."""
        raise NotImplementedError

    def usage(self):
        """dict: used (bytes), image_count - what a quota check needs, from a ledger kept up to date as images come
        and go - or None when the store keeps none: then ``stats()`` is exact."""
        return None

    def count_new_slices(self, new_bytes):
        """A transfer committed ``new_bytes`` of slices the store did not hold (for ``usage()``)."""

    def start_usage_ledger(self):
        """Begin keeping ``usage()`` where the store can (when a quota is declared); True when it began now."""
        return False

    def reset_usage(self):
        """Count the store's usage afresh into the ledger, if it keeps one (the caller holds the exclusive guard)."""

    def location(self, image_id):
        raise NotImplementedError

    # slices
    def has_slice(self, digest):
        raise NotImplementedError

    def read_slice(self, digest):
        raise NotImplementedError

    def read_slices(self, digests):
        """Yield (digest, data) in order; backends with latency override this to prefetch."""
        for digest in digests:
            yield digest, self.read_slice(digest)

    def read_image_slices(self, image_id, slice_list, digests):
        """Yield (digest, data) for ``digests`` (slices of ``image_id``, in the order given).

        Content-addressed stores read by digest; a position-addressed store (rbd) finds the range in the
        image's slice list. Callers verify every slice against its sha256.
        """
        return self.read_slices(digests)

    def hash_slices(self, digests):
        """Yield (digest, sha256 of the stored bytes or None when the slice is missing or unreadable, bytes read)
        for each of ``digests``, each read once from the medium (store_cleanup ``verify``)."""
        raise NotImplementedError

    def replace_slice(self, digest, data):
        """Overwrite a damaged slice with ``data`` (verified by the caller) atomically: readers see the old
        bytes or the new, never a mix (store_cleanup ``repair``)."""
        raise NotImplementedError

    def hash_ranges(self, image_id, slice_list, indexes):
        """Positional stores: yield (index, sha256 of the range or None when it reads as zeros, bytes read) for
        the slice-list positions ``indexes`` of the image (store_cleanup ``verify``)."""
        raise NotImplementedError

    def replace_range(self, image_id, offset, data):
        """Positional stores: overwrite the image's bytes at ``offset`` with ``data`` (verified by the caller)."""
        raise NotImplementedError

    def missing_slices(self, digests):
        """The subset of ``digests`` the store lacks (one round trip for remote backends)."""
        return [digest for digest in digests if not self.has_slice(digest)]

    def slice_writer(self, image_id):
        raise NotImplementedError

    def remove_unreferenced(self, candidates):
        """Delete those of ``candidates`` no slice list references any more; return bytes released."""
        raise NotImplementedError

    # garbage collection (store_cleanup)
    def stored_slices(self):
        """Every slice digest the store holds (content-addressed stores)."""
        return set()

    def clean_staging(self, max_age, check_mode):
        """Remove leftovers of transfers that are not running (staging data older than ``max_age`` seconds,
        data of images without a record); return [(what, bytes)] removed (or that would be, in check mode)."""
        return []

    # images
    def image_ids(self):
        raise NotImplementedError

    def read_record(self, image_id):
        raise NotImplementedError

    def read_records(self):
        """{image id: record} for every image (one round trip for remote backends)."""
        return dict((image_id, self.read_record(image_id)) for image_id in self.image_ids())

    def write_record(self, image_id, record):
        raise NotImplementedError

    def image_ids_named(self, name):
        """Ids of the images that may be named ``name`` from an index, or None: this store has none, scan it."""
        return None

    def index_names(self):
        """Complete the store's name index where it keeps one; True when something was written."""
        return False

    def read_slice_list(self, image_id):
        raise NotImplementedError

    def write_slice_list(self, image_id, slice_list):
        raise NotImplementedError

    def removal_problem(self, image_id):
        """None, or why the image cannot be removed from this store now (checked before any store changes)."""
        return None

    def remove_image(self, image_id):
        """Make the image invisible at once, then drop its record and slice list."""
        raise NotImplementedError

    # concurrency
    def image_lock(self, image_id):
        raise NotImplementedError

    def name_lock(self, name):
        """The lock a run holds while it makes a new image named ``name`` in this store, so that runs importing the
        same name at once make one image: the first imports, the others find it done."""
        return self.image_lock(name_lock_id(name))

    def slice_guard(self, exclusive):
        raise NotImplementedError
