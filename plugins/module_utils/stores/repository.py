# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The slice repository: what every slice store (file, s3, swift; ssh through its agent) shares.

A slice store is a small blob back end (``Blobs``: get, put, stat, list, remove, plus a few hooks a back end
does better on its own) under one repository that owns everything else: the layout, JSON records and slice
lists, statistics, garbage collection, the order of a removal and the policy for leftovers. Locks are asked
from the back end through the same interface (a file store's lock files and flock, an object store's leases),
so that callers see one concept. rbd keeps whole images by position and is no slice store.

Layout, as keys relative to the store root (a directory, or a bucket and its prefix)::

    multistore.json               identity: id, name, type, zone, enabled, layout version...
    slices/ab/ab12…(sha256)       content-addressed slices, written once, never modified
    images/<id>/record.json       the image record (Glance fields), status flips to active last
    images/<id>/slices.json       the ordered slice list
    names/<sha256 of name>/<id>   the name index (empty blobs): a lookup by name reads the records it names
    names/complete.json           written once every record is in the index (older stores lack it until the
                                  store module indexes them); until then only a scan of every record is exact
    usage/base.json               the usage ledger (quota checks): used bytes and complete images, counted by a
    usage/deltas/<id>_<bytes>_<n> walk under the exclusive slice guard, plus one empty blob per change since,
                                  its numbers in its name (a check lists them, reads none)
    locks/…, staging/…            the back end's own: see its module
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import functools
import hashlib
import json
import time
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import dump_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import DEFAULT_WAIT
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import Store, is_complete

IDENTITY_KEY = 'multistore.json'
SLICES = 'slices/'
IMAGES = 'images/'
NAME_INDEX_COMPLETE = 'names/complete.json'
USAGE_BASE = 'usage/base.json'
USAGE_DELTAS = 'usage/deltas/'


def slice_key(digest):
    return 'slices/%s/%s' % (digest[:2], digest)


def image_prefix(image_id):
    return 'images/%s/' % image_id


def record_key(image_id):
    return 'images/%s/record.json' % image_id


def slice_list_key(image_id):
    return 'images/%s/slices.json' % image_id


def name_prefix(name):
    return 'names/%s/' % hashlib.sha256(name.encode('utf-8')).hexdigest()


def ordered_window(submit, items, depth):
    """Yield (item, result) in the order of ``items``, ``depth`` of them computed ahead by ``submit(item)``
    (which returns a future); the futures not consumed are cancelled when the caller stops."""
    window = collections.deque()
    try:
        for item in items:
            window.append((item, submit(item)))
            if len(window) >= depth:
                item, future = window.popleft()
                yield item, future.result()
        while window:
            item, future = window.popleft()
            yield item, future.result()
    finally:
        for _item, future in window:
            future.cancel()


# A leftover of a run that is gone, found by the back end (staging, probes, stale leases) or by the repository
# (a removal cut short). ``image_id``: kept while that image's lock is busy; ``born``: kept until ``max_age``
# old (a re-run adopts it until then); ``size()`` and ``remove()`` are only called for what is removed.
Leftover = collections.namedtuple('Leftover', 'name image_id born size remove')


class Blobs:
    """What a slice store's back end provides. Keys are '/'-separated and relative to the store root.

    ``what`` arguments say what the call is for ('read slice <digest>'), for back ends that put it in messages.
    """

    # -- blobs
    def get(self, key, what=None):
        """The bytes at ``key``, None when absent."""
        raise NotImplementedError

    def put(self, key, data, what=None):
        """Store ``data`` at ``key`` atomically (readers see the old or the new bytes) and durably."""
        raise NotImplementedError

    def stat(self, key, what=None):
        """The size at ``key``, None when absent."""
        raise NotImplementedError

    def list(self, prefix, sizes=True):
        """[(key, size or None without ``sizes``)] of the blobs under ``prefix`` (temporary files left out)."""
        raise NotImplementedError

    def children(self, prefix):
        """The sorted names one level under ``prefix`` that hold blobs (image ids under 'images/')."""
        raise NotImplementedError

    def remove(self, key):
        """Delete the blob at ``key``; the bytes released (0 when it was absent)."""
        raise NotImplementedError

    def remove_tree(self, prefix, first):
        """Delete every blob under ``prefix``, ``first`` before the others; False when there were none."""
        raise NotImplementedError

    def prune(self, prefix):
        """Drop ``prefix`` itself when no blob is left under it (a directory); nothing where prefixes are not things."""

    def replace(self, key, data, what=None):
        """Overwrite a blob in place (a damaged slice); put is atomic, so by default just that."""
        self.put(key, data, what)

    # -- bulk hooks: a back end with latency or threads does these better than one call after the other
    def map(self, function, items):
        """[function(item) for item in items]."""
        return [function(item) for item in items]

    def prefetch(self, function, items):
        """Yield (item, function(item)) in order; a back end with latency computes some ahead."""
        for item in items:
            yield item, function(item)

    def ordered(self, function, items):
        """Like prefetch, for reads that hash what they read (store_cleanup verify)."""
        return self.prefetch(function, items)

    def hash(self, key, what=None):
        """(sha256 of the blob as stored, or None when missing or unreadable; bytes read)."""
        raise NotImplementedError

    # -- the store as a whole
    def create(self):
        """Make the store's container (directories, bucket) exist."""
        raise NotImplementedError

    def check_root(self):
        return None

    def accessible(self):
        """False when the store cannot be written by this user (status() says disconnected)."""
        return True

    def writable_problem(self):
        return None

    def capacity(self):
        """(capacity, free) in bytes; None where the medium has no such notion."""
        return None, None

    def where(self):
        raise NotImplementedError

    def url(self, key):
        """Where ``key`` is, for messages."""
        raise NotImplementedError

    def location(self, key):
        """The location URL of ``key`` (an image's prefix without its trailing slash)."""
        raise NotImplementedError

    # -- messages the repository raises, in the back end's words
    def missing_slice(self, digest, reason):
        raise NotImplementedError

    def corrupt(self, key, exc):
        """The message for a JSON document that does not decode, or None to let ``exc`` through."""
        return None

    # -- concurrency and what runs leave behind
    def lock(self, name, what, wait):
        """The lock of one image, waited for ``wait`` seconds: acquire/refresh/release/busy/abandoned and a context manager."""
        raise NotImplementedError

    def guard(self, exclusive, **options):
        """The slice guard: transfers hold it shared, slice deletion exclusive."""
        raise NotImplementedError

    def drop_locks(self, name):
        """After an image's removal: drop the locks other runs left on it (where a lock outlives its holder)."""

    def leftovers(self, now, max_age):
        """Leftover tuples of the back end's own (staging areas, probes, stale leases)."""
        return []

    def writer(self, store, image_id):
        """The SliceWriter of one transfer into ``store``."""
        raise NotImplementedError


class SliceRepository(Store):
    """The Store interface of base.py for content-addressed slice stores, over ``self.blobs``."""

    def __init__(self, name, config, blobs):
        super(SliceRepository, self).__init__(name, config)
        self.blobs = blobs
        self._indexed = set()  # (image id, name) known to be in the name index, for this process
        self._ledger = False  # the usage ledger is known to be kept

    # ---- documents
    def _read_json(self, key):
        data = self.blobs.get(key)
        if data is None:
            return None
        try:
            return json.loads(data.decode('utf-8'))
        except ValueError as exc:
            problem = self.blobs.corrupt(key, exc)
            if problem is None:
                raise
            raise StoreError("store '%s': %s" % (self.name, problem))

    def _write_json(self, key, obj):
        self.blobs.put(key, dump_json(obj))

    # ---- identity and health
    def read_identity(self):
        """The identity; None when there is none yet; StoreError when it cannot be read."""
        try:
            return self._read_json(IDENTITY_KEY)
        except (EnvironmentError, ValueError) as exc:
            raise StoreError("store '%s': cannot read %s: %s" % (self.name, self.blobs.url(IDENTITY_KEY), exc))

    def write_identity(self, identity):
        try:
            self.blobs.create()
            self._write_json(IDENTITY_KEY, identity)
        except EnvironmentError as exc:
            raise StoreError("store '%s': cannot write to %s (%s): make the path writable for the user running the task"
                             % (self.name, self.blobs.where(), exc.strerror or exc))

    def check_root(self):
        return self.blobs.check_root()

    def status(self):
        try:
            ok = self.blobs.stat(IDENTITY_KEY) is not None and self.blobs.accessible()
        except (StoreError, EnvironmentError):
            ok = False
        return 'connected' if ok else 'disconnected'

    def writable_problem(self):
        return self.blobs.writable_problem()

    def where(self):
        return self.blobs.where()

    def stats(self):
        capacity, free = self.blobs.capacity()
        used = 0
        slice_count = 0
        for _key, size in self.blobs.list(SLICES):
            slice_count += 1
            used += size
        image_ids = set()
        for key, size in self.blobs.list(IMAGES):
            used += size
            image_ids.add(key.split('/')[1])
        # Only complete images count (for quota.images too); a failed import's record is not an image.
        image_count = sum(1 for record in self.blobs.map(self.read_record, sorted(image_ids)) if is_complete(record))
        return {'capacity': capacity, 'free': free, 'used': used, 'image_count': image_count, 'slice_count': slice_count}

    # ---- the usage ledger: quota checks without walking the slices
    # Imports add, deletions subtract, each with one empty blob whose name holds the numbers; the walk under the
    # exclusive guard (store_cleanup, or the store module once a quota is declared) makes them the new base. Between
    # two walks the count can drift by what a killed run left (slices written, no delta): the next walk corrects it.
    def usage(self):
        base = self._read_json(USAGE_BASE)
        if base is None:
            return None
        used, images = base['used'], base['image_count']
        for key, _size in self.blobs.list(USAGE_DELTAS, sizes=False):
            try:
                _tag, size, count = key.rsplit('/', 1)[1].rsplit('_', 2)
                used, images = used + int(size), images + int(count)
            except ValueError:
                continue  # a temporary name of a blob being written
        return {'used': max(used, 0), 'image_count': max(images, 0)}

    def _count(self, size, images):
        if (size or images) and self._ledger_kept():
            self.blobs.put('%s%s_%d_%d' % (USAGE_DELTAS, uuid.uuid4().hex, size, images), b'')

    def _ledger_kept(self):
        if not self._ledger:
            self._ledger = self.blobs.stat(USAGE_BASE) is not None
        return self._ledger

    def count_new_slices(self, new_bytes):
        self._count(new_bytes, 0)

    def start_usage_ledger(self):
        if self._ledger_kept():
            return False
        with self.slice_guard(exclusive=True):
            self.reset_usage()
        return True

    def reset_usage(self):
        deltas = [key for key, _size in self.blobs.list(USAGE_DELTAS, sizes=False)]
        stats = self.stats()
        self._write_json(USAGE_BASE, {'used': stats['used'], 'image_count': stats['image_count'], 'counted_at': utc_now()})
        self._ledger = True
        for key in deltas:
            self.blobs.remove(key)

    def location(self, image_id):
        return self.blobs.location(image_prefix(image_id)[:-1])

    # ---- slices
    def has_slice(self, digest):
        return self.blobs.stat(slice_key(digest), 'check slice %s' % digest) is not None

    def read_slice(self, digest):
        try:
            data = self.blobs.get(slice_key(digest), 'read slice %s' % digest)
        except EnvironmentError as exc:
            raise StoreError("store '%s': %s" % (self.name, self.blobs.missing_slice(digest, exc.strerror or exc)))
        if data is None:
            raise StoreError("store '%s': %s" % (self.name, self.blobs.missing_slice(digest, None)))
        return data

    def read_slices(self, digests):
        return self.blobs.prefetch(self.read_slice, digests)

    def hash_slices(self, digests):
        for digest, (found, size) in self.blobs.ordered(lambda d: self.blobs.hash(slice_key(d), 'read slice %s' % d), digests):
            yield digest, found, size

    def replace_slice(self, digest, data):
        self.blobs.replace(slice_key(digest), bytes(data), 'replace slice %s' % digest)

    def missing_slices(self, digests):
        digests = list(digests)
        present = self.blobs.map(self.has_slice, digests)
        return [digest for digest, there in zip(digests, present) if not there]

    def slice_writer(self, image_id):
        return self.blobs.writer(self, image_id)

    # ---- garbage collection (store_cleanup)
    def referenced_slices(self):
        referenced = set()
        for slice_list in self.blobs.map(self.read_slice_list, self.image_ids()):
            if slice_list is not None:
                referenced |= slice_list.digests()
        return referenced

    def remove_unreferenced(self, candidates):
        """Delete those of ``candidates`` no slice list references (the caller holds the exclusive guard)."""
        doomed = sorted(set(candidates) - self.referenced_slices())
        freed = sum(self.blobs.map(lambda digest: self.blobs.remove(slice_key(digest)), doomed))
        self._count(-freed, 0)
        return freed

    def stored_slices(self):
        names = (key.rsplit('/', 1)[1] for key, _size in self.blobs.list(SLICES, sizes=False))
        return set(name for name in names if len(name) == 64)

    def clean_staging(self, max_age, check_mode):
        """Remove the leftovers of runs that are gone: image directories without a record (an import or a removal
        cut short), and what the back end finds (staging data, probes, stale leases).

        What belongs to one image is removed under that image's lock, taken without waiting (a live run keeps what
        it holds), and looked at again first. Staged slices a re-run would adopt stay until ``max_age`` old, unless
        their run was killed holding the lock: a lock naming a dead process of this host (common/owners.py) tells
        that apart from a run that let go of it (Ctrl-C, a failure), which keeps its slices for a re-run."""
        removed = []
        now = time.time()
        leftovers = self._recordless() + list(self.blobs.leftovers(now, max_age)) + self._unindexed()
        young = [leftover for leftover in leftovers if leftover.born is not None and now - leftover.born < max_age]
        # Looked at before anything is removed: removing one leftover of an image takes and drops its lock.
        killed = set(leftover.image_id for leftover in young
                     if leftover.image_id is not None and self.image_lock(leftover.image_id).abandoned())
        for leftover in leftovers:
            if leftover in young and leftover.image_id not in killed:
                continue
            if leftover.image_id is None:
                size = leftover.size()
                if not check_mode:
                    leftover.remove()
                removed.append((leftover.name, size))
                continue
            lock = self.image_lock(leftover.image_id, wait=0)
            if lock.busy():
                continue
            size = leftover.size()
            if not check_mode:
                try:
                    with lock:
                        if leftover.remove() is False:
                            continue  # a run made it whole meanwhile
                except LockError:
                    continue  # a run took the lock meanwhile
            removed.append((leftover.name, size))
        return removed

    def _recordless(self):
        """Image directories without a record: a removal cut short (where removal goes key by key), or an import
        killed before its placeholder record was in place (its directory holds a temporary file at most)."""
        sizes = {}
        for key, size in self.blobs.list(IMAGES):
            sizes[key.split('/')[1]] = sizes.get(key.split('/')[1], 0) + size
        found = []
        for image_id in self.image_ids():
            if self.blobs.stat(record_key(image_id)) is None:
                found.append(Leftover('images/%s (no record)' % image_id, image_id, None, lambda size=sizes.get(image_id, 0): size,
                                      functools.partial(self._remove_recordless, image_id)))
        return found

    def _unindexed(self):
        """Name index entries of images that have no record: an import killed between its entry and its first record
        (the re-run picks a new id), or a removal killed between the record and the entry."""
        found = []
        for key, _size in self.blobs.list('names/', sizes=False):
            parts = key.split('/')
            if len(parts) == 3 and self.blobs.stat(record_key(parts[2])) is None:
                found.append(Leftover('%s (no image)' % key, parts[2], None, lambda: 0, functools.partial(self._remove_unindexed, key, parts[2])))
        return found

    def _remove_unindexed(self, key, image_id):
        if self.blobs.stat(record_key(image_id)) is not None:
            return False  # a run wrote the record meanwhile
        self.blobs.remove(key)
        self.blobs.prune(key.rsplit('/', 1)[0] + '/')
        return True

    def _remove_recordless(self, image_id):
        if self.blobs.stat(record_key(image_id)) is not None:
            return False
        self.blobs.remove_tree(image_prefix(image_id), record_key(image_id))
        return True

    # ---- images
    def image_ids(self):
        return self.blobs.children(IMAGES)

    def read_record(self, image_id):
        return self._read_json(record_key(image_id))

    def read_records(self):
        image_ids = self.image_ids()
        return dict(zip(image_ids, self.blobs.map(self.read_record, image_ids)))

    def write_record(self, image_id, record):
        if record.get('name'):
            self._index_name(image_id, record['name'])  # first: every record can be found by its name
        completes = is_complete(record) and self._ledger_kept() and not is_complete(self.read_record(image_id))
        self._write_json(record_key(image_id), record)
        if completes:
            self._count(0, 1)

    # ---- the name index (names never change: an image is indexed once, when its first record is written)
    def _index_name(self, image_id, name):
        if (image_id, name) in self._indexed:
            return
        key = name_prefix(name) + image_id
        if self.blobs.stat(key) is None:
            self.blobs.put(key, b'')
        self._indexed.add((image_id, name))

    def image_ids_named(self, name):
        """Ids of the images that may be named ``name`` (an entry can outlive its image: callers read the records),
        or None while the index is not complete (a store made by an older version): then only a scan is exact."""
        if self.blobs.stat(NAME_INDEX_COMPLETE) is None:
            return None
        return [key.rsplit('/', 1)[1] for key, _size in self.blobs.list(name_prefix(name), sizes=False)]

    def index_names(self):
        """Put every image in the name index and mark it complete (once per store); True when it did."""
        if self.blobs.stat(NAME_INDEX_COMPLETE) is not None:
            return False
        for image_id, record in self.read_records().items():
            if record and record.get('name'):
                self._index_name(image_id, record['name'])
        self._write_json(NAME_INDEX_COMPLETE, {'format': 1, 'completed_at': utc_now()})
        return True

    def read_slice_list(self, image_id):
        data = self._read_json(slice_list_key(image_id))
        return None if data is None else SliceList.from_dict(data)

    def write_slice_list(self, image_id, slice_list):
        self._write_json(slice_list_key(image_id), slice_list.to_dict())

    def remove_image(self, image_id):
        """The record goes first (the image is invisible at once), then the slice list, then locks others left,
        then its name index entry."""
        record = self.read_record(image_id) or {}
        if not self.blobs.remove_tree(image_prefix(image_id), first=record_key(image_id)):
            return False
        self.blobs.drop_locks(image_id)
        if is_complete(record):
            self._count(0, -1)
        if record.get('name'):
            self.blobs.remove(name_prefix(record['name']) + image_id)
            self.blobs.prune(name_prefix(record['name']))
            self._indexed.discard((image_id, record['name']))
        return True

    # ---- concurrency
    def image_lock(self, image_id, wait=DEFAULT_WAIT):
        return self.blobs.lock(image_id, "image %s in store '%s'" % (image_id, self.name), wait=wait)

    def name_lock(self, name, wait=DEFAULT_WAIT):
        return self.blobs.lock('name-%s' % name_prefix(name)[len('names/'):-1], "new image '%s' in store '%s'" % (name, self.name), wait=wait)

    def slice_guard(self, exclusive, **options):
        return self.blobs.guard(exclusive, **options)
