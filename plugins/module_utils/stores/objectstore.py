# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Object stores (S3, Swift): the file store's layout as objects in one bucket or container.

Layout under an optional key prefix (config ``prefix``, default empty)::

    multistore.json                  identity: id, name, type, zone, enabled, layout version...
    slices/ab/ab12…(sha256)          content-addressed slices, written once, never modified
    images/<id>/record.json          the image record (Glance fields), status flips to active last
    images/<id>/slices.json          the ordered slice list
    locks/<id>/<token>               leases on one image (see Lease)
    locks/slices/shared-<token>      the slice guard: transfers hold it shared,
    locks/slices/exclusive-<token>   slice deletion exclusive

There is no staging area. A PUT is atomic (readers see no object or the whole object) and a slice is
named by its content, so an uploaded slice is in its final place at once; no slice list references it
until the transfer commits. A transfer that was interrupted leaves its slices in place: the next run
finds them with HEAD and does not send them again (whatever the image id), and store_cleanup removes
them if no run comes back for them.

``stats()`` reports capacity and free as None: S3 and Swift have no notion of either (a bucket grows
until a quota on the server side stops it); ``used`` is what the store's objects take.

A backend provides the client library's part: five primitives on full object keys (``_get``, ``_put``,
``_head``, ``_delete``, ``_list``), ``_ensure_container``, and how to explain the library's errors
(``_describe_error``, ``_unreachable``). Everything else, and every error message, is here.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import errno
import getpass
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    LockError, MultistoreError, StoreError, TransferInterrupted)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import dump_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import DEFAULT_TTL, DEFAULT_WAIT, _pid_alive
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import SliceWriter, Store, is_complete

IDENTITY_OBJECT = 'multistore.json'
PROBE_PREFIX = 'locks/probe-'
GUARD_DIR = 'locks/slices/'
# Parallel requests per store; the client's connection pool is sized to match.
WORKERS = 8
# Slices copied and waiting or travelling per writer: bounds memory (16 x 4 MiB) and makes a slow
# store slow the pipeline down instead of filling memory.
UPLOADS_IN_FLIGHT = 16
READ_AHEAD = 12
# The slice guard is kept alive by a heartbeat while its process runs (the engine never refreshes
# it), so its lease can be short: a crashed run on another host blocks deletions for this long.
GUARD_TTL = 120
LEASE_POLL = (0.2, 1.0)
# Connection settings the backends share: a stopped endpoint must fail in seconds, not minutes.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60


def network_reason(exc):
    """A short reason ('connection refused', 'timed out'...) for a failure to reach a server, or None."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return 'host name not resolved'
        if isinstance(current, socket.timeout) or type(current).__name__ in ('ConnectTimeoutError', 'ConnectTimeout'):
            return 'connection timed out'
        if type(current).__name__ in ('ReadTimeoutError', 'ReadTimeout'):
            return 'no answer in time'
        if isinstance(current, OSError) and current.errno in (errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                                                              errno.ENETUNREACH, errno.ETIMEDOUT):
            return {errno.ECONNREFUSED: 'connection refused', errno.ECONNRESET: 'connection reset',
                    errno.EHOSTUNREACH: 'no route to host', errno.ENETUNREACH: 'network unreachable',
                    errno.ETIMEDOUT: 'connection timed out'}[current.errno]
        pending.extend([current.__cause__, current.__context__, getattr(current, 'reason', None)])
        pending.extend(value for value in (getattr(current, 'kwargs', None) or {}).values() if isinstance(value, BaseException))
        pending.extend(arg for arg in getattr(current, 'args', ()) if isinstance(arg, BaseException))
    text = str(exc).lower()
    for needle, reason in (('refused', 'connection refused'), ('timed out', 'connection timed out'),
                           ('name or service not known', 'host name not resolved'), ('reset by peer', 'connection reset'),
                           ('connection aborted', 'connection reset'), ('remote end closed', 'connection closed')):
        if needle in text:
            return reason
    return None


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
    if owner.get('expires_at', 0) < time.time() or owner.get('token') in _RELEASED_TOKENS:
        return True
    pid = owner.get('pid')
    return owner.get('host') == socket.gethostname() and isinstance(pid, int) and pid > 0 and not _pid_alive(pid)


def _when(timestamp):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(timestamp or 0))


class ObjectSliceWriter(SliceWriter):
    """Uploads the slices of one transfer on the store's threads: HEAD first, PUT only what is missing.

    ``put`` copies the slice (the pipeline reuses its buffer as soon as put returns) and queues it; at
    most UPLOADS_IN_FLIGHT copies are queued or travelling. A slice the bucket already has, or that this
    transfer already queued, is not sent again. An upload that failed surfaces on a later ``put`` or at
    ``commit``, which returns once every PUT was answered with success: the slices are then durable.
    """

    def __init__(self, store, image_id):
        self.store = store
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
        payload = bytes(data)
        self._slots.acquire()
        try:
            future = self.store.executor().submit(self._upload, digest, payload)
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
        key = self.store.slice_key(digest)
        # A slice object of the wrong size is damaged (a content name fixes the size): replace it.
        if self.store.head_object(key, 'check slice %s' % digest, interrupted=True) == len(payload):
            return
        self.store.put_object(key, payload, 'upload slice %s' % digest, interrupted=True)
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
            self.store.parallel(self.store.delete_object, [self.store.slice_key(digest) for digest in doomed])
            with self._lock:
                self.uploaded = {}
        except MultistoreError:
            pass
        finally:
            guard.release()


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

    def __init__(self, store, directory, name, what, conflicts, ttl=DEFAULT_TTL, wait=DEFAULT_WAIT, heartbeat=False, beside_own=False):
        self.store = store
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
        return {'token': self.token, 'owner': _user(), 'host': socket.gethostname(), 'pid': os.getpid(),
                'expires_at': time.time() + self.ttl}

    def _write(self, interrupted=False):
        self.store.write_json(self.key, self._content(), interrupted=interrupted)

    def _rivals(self, clean):
        """The live leases this one conflicts with: [(key, owner)]; with ``clean``, delete stale ones."""
        rivals = []
        for key, _size in self.store.listing(self.directory):
            if key == self.key or (self.beside_own and key in self.store.own_leases) or not self.conflicts(key[len(self.directory):]):
                continue
            owner = self.store.read_lease(key)
            if owner is None:
                continue  # released since the listing
            if _stale(owner):
                if clean:
                    self.store.delete_object(key)
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
                    % (self.what, running, owner.get('owner'), owner.get('host'), owner.get('pid'), self.store.object_url(key),
                       _when(owner.get('expires_at'))))
        return ('%s is locked by %s@%s (pid %s) until %s: another run is working on it; retry later, or delete %s if that run '
                'is gone' % (self.what, owner.get('owner'), owner.get('host'), owner.get('pid'), _when(owner.get('expires_at')),
                             self.store.object_url(key)))

    def _hold(self):
        self.held = True
        self.store.own_leases.add(self.key)
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
            self.store.delete_object(self.key)
        except MultistoreError:
            _RELEASED_TOKENS.add(self.token)  # unreachable: the lease expires, or the next run deletes it

    def busy(self):
        """True when some live run holds this lock now."""
        return self.held or bool(self._rivals(clean=False))

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
            self._beat.join(READ_TIMEOUT)
            self._beat = None
        self._remove()
        self.store.own_leases.discard(self.key)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class ObjectStore(Store):
    """The Store interface over a bucket; a subclass supplies the client library's primitives."""

    remote = True
    # The client library's exception classes that call() turns into StoreError (set by subclasses).
    library_errors = ()
    # What to call the bucket in messages ('bucket', 'container').
    container_word = 'bucket'

    def __init__(self, name, config):
        super(ObjectStore, self).__init__(name, config)
        self.prefix = (config.get('prefix') or '').strip('/')
        if self.prefix:
            self.prefix += '/'
        self.own_leases = set()
        self._pool = None
        self._pool_lock = threading.Lock()

    # ---- what a subclass provides
    def _get(self, key):
        """The object's bytes, or None when it (or the bucket) does not exist."""
        raise NotImplementedError

    def _put(self, key, data):
        raise NotImplementedError

    def _head(self, key):
        """The object's size, or None when it (or the bucket) does not exist."""
        raise NotImplementedError

    def _delete(self, key):
        """Delete the object; a missing object is not an error."""
        raise NotImplementedError

    def _list(self, prefix):
        """Iterate (key, size) over the objects whose key starts with ``prefix``."""
        raise NotImplementedError

    def _ensure_container(self):
        """Create the bucket (container) unless it exists."""
        raise NotImplementedError

    def _describe_error(self, exc, what):
        """What went wrong, for the operator (the caller adds the store's name and removes secrets)."""
        raise NotImplementedError

    def _unreachable(self, exc):
        """True when ``exc`` says the endpoint could not be reached (the store is disconnected)."""
        raise NotImplementedError

    def config_problem(self):
        """None, or what is wrong in the store's declaration (a missing bucket name...)."""
        return None

    def endpoint_url(self):
        """The endpoint and bucket as a URL without credentials, for messages."""
        raise NotImplementedError

    def _location_base(self):
        """'<scheme>://<host[:port]>/<bucket>' for location URLs."""
        raise NotImplementedError

    def _secrets(self):
        return [self.config.get('secret_key')]

    # ---- plumbing
    def full_key(self, key):
        return self.prefix + key

    def object_url(self, key):
        return '%s/%s' % (self.endpoint_url(), self.full_key(key))

    def where(self):
        return '%s/%s' % (self.endpoint_url(), self.prefix) if self.prefix else self.endpoint_url()

    def scrub(self, text):
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, '********')
        return text

    def explain(self, exc, what):
        """The message for a library error, without the store's name (nor any secret)."""
        return self.scrub(self._describe_error(exc, what))

    def call(self, what, primitive, *args, **kwargs):
        """Run a primitive; the library's errors become StoreError (TransferInterrupted when ``interrupted``
        and the endpoint is unreachable: the transfer keeps what it sent for the next run)."""
        problem = self.config_problem()
        if problem:
            raise StoreError("store '%s': %s" % (self.name, problem))
        try:
            return primitive(*args)
        except MultistoreError:
            raise
        except self.library_errors as exc:
            text = self.explain(exc, what)
            if kwargs.get('interrupted') and self._unreachable(exc):
                raise TransferInterrupted("store '%s': %s; run again to resume: the slices already uploaded stay and are not sent again"
                                          % (self.name, text))
            raise StoreError("store '%s': %s" % (self.name, text))

    def executor(self):
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix='%s-%s' % (self.kind, self.name))
            return self._pool

    def parallel(self, function, items):
        """[function(item) for item in items] on the store's threads (never call it from one of them)."""
        return list(self.executor().map(function, items))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def listing(self, prefix):
        """[(key, size)] of the objects under ``prefix``, keys relative to the store's prefix."""
        cut = len(self.prefix)
        return [(key[cut:], size) for key, size in self.call('list %s' % (self.full_key(prefix) or '/'),
                                                             lambda: list(self._list(self.full_key(prefix))))]

    def get_object(self, key, what=None):
        """The bytes of the object at ``key`` (relative to the prefix), None when absent."""
        return self.call(what or 'read %s' % key, self._get, self.full_key(key))

    def put_object(self, key, data, what=None, interrupted=False):
        self.call(what or 'write %s' % key, self._put, self.full_key(key), data, interrupted=interrupted)

    def head_object(self, key, what=None, interrupted=False):
        """The size of the object at ``key``, None when absent."""
        return self.call(what or 'check %s' % key, self._head, self.full_key(key), interrupted=interrupted)

    def delete_object(self, key, what=None):
        self.call(what or 'delete %s' % key, self._delete, self.full_key(key))

    def read_json(self, key):
        data = self.get_object(key)
        if data is None:
            return None
        try:
            return json.loads(data.decode('utf-8'))
        except ValueError as exc:
            raise StoreError("store '%s': %s is corrupt (%s): restore it from another store or remove the image"
                             % (self.name, self.object_url(key), exc))

    def write_json(self, key, obj, interrupted=False):
        self.put_object(key, dump_json(obj), interrupted=interrupted)

    def read_lease(self, key):
        """A lease's content; None when it is gone; an unreadable lease reads as expired (a PUT is atomic:
        it is not being written, it is garbage)."""
        data = self.get_object(key)
        if data is None:
            return None
        try:
            owner = json.loads(data.decode('utf-8'))
        except ValueError:
            owner = None
        return owner if isinstance(owner, dict) else {'expires_at': 0}

    # ---- identity and health
    def read_identity(self):
        """The identity; None when the bucket or the identity object does not exist; StoreError when unreachable."""
        return self.read_json(IDENTITY_OBJECT)

    def write_identity(self, identity):
        self.call('create the %s' % self.container_word, self._ensure_container)
        self.write_json(IDENTITY_OBJECT, identity)

    def check_root(self):
        return self.config_problem()

    def status(self):
        try:
            found = self.head_object(IDENTITY_OBJECT)
        except StoreError:
            return 'disconnected'
        return 'connected' if found is not None else 'disconnected'

    def writable_problem(self):
        """None, or why no object can be written (a probe object is written and deleted)."""
        probe = '%s%d-%s' % (PROBE_PREFIX, time.time(), uuid.uuid4().hex[:8])  # named by time: store_cleanup finds old ones
        try:
            self.put_object(probe, b'', 'write a probe object')
            self.delete_object(probe, 'delete a probe object')
        except StoreError as exc:
            text = str(exc)
            lead = "store '%s': " % self.name
            return text[len(lead):] if text.startswith(lead) else text
        return None

    def stats(self):
        used = 0
        slice_count = 0
        for _key, size in self.listing('slices/'):
            slice_count += 1
            used += size
        image_ids = set()
        for key, size in self.listing('images/'):
            used += size
            image_ids.add(key.split('/')[1])
        image_ids = sorted(image_ids)
        records = self.parallel(self.read_record, image_ids)
        # Only active images count (for quota.images too); a failed import's record is not an image.
        image_count = sum(1 for record in records if is_complete(record))
        return {'capacity': None, 'free': None, 'used': used, 'image_count': image_count, 'slice_count': slice_count}

    def location(self, image_id):
        return '%s/%simages/%s' % (self._location_base(), self.prefix, image_id)

    # ---- slices
    @staticmethod
    def slice_key(digest):
        return 'slices/%s/%s' % (digest[:2], digest)

    def has_slice(self, digest):
        return self.head_object(self.slice_key(digest), 'check slice %s' % digest) is not None

    def read_slice(self, digest):
        data = self.get_object(self.slice_key(digest), 'read slice %s' % digest)
        if data is None:
            raise StoreError("store '%s': slice %s is missing from %s: delete the damaged image from this store and copy it again from another store"
                             % (self.name, digest, self.where()))
        return data

    def read_slices(self, digests):
        """Yield (digest, data) in order, READ_AHEAD slices fetched ahead in parallel."""
        digests = list(digests)
        window = collections.deque()
        position = 0
        try:
            while position < len(digests) or window:
                while position < len(digests) and len(window) < READ_AHEAD:
                    window.append((digests[position], self.executor().submit(self.read_slice, digests[position])))
                    position += 1
                digest, future = window.popleft()
                yield digest, future.result()
        finally:
            for _digest, future in window:
                future.cancel()

    def hash_slices(self, digests):
        """Yield (digest, sha256 or None when absent, size), READ_AHEAD slices fetched and hashed ahead on the store's threads."""
        def fetch(digest):
            data = self.get_object(self.slice_key(digest), 'read slice %s' % digest)
            return (digest, None, 0) if data is None else (digest, hashlib.sha256(data).hexdigest(), len(data))
        window = collections.deque()
        try:
            for digest in digests:
                window.append(self.executor().submit(fetch, digest))
                if len(window) >= READ_AHEAD:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()

    def replace_slice(self, digest, data):
        self.put_object(self.slice_key(digest), bytes(data), 'replace slice %s' % digest)  # a PUT is atomic

    def missing_slices(self, digests):
        digests = list(digests)
        present = self.parallel(self.has_slice, digests)
        return [digest for digest, there in zip(digests, present) if not there]

    def slice_writer(self, image_id):
        return ObjectSliceWriter(self, image_id)

    def referenced_slices(self):
        referenced = set()
        for slice_list in self.parallel(self.read_slice_list, self.image_ids()):
            if slice_list is not None:
                referenced |= slice_list.digests()
        return referenced

    def remove_unreferenced(self, candidates):
        """Delete those of ``candidates`` no slice list references (the caller holds the exclusive guard)."""
        doomed = sorted(set(candidates) - self.referenced_slices())

        def remove(digest):
            key = self.slice_key(digest)
            size = self.head_object(key)
            if size is None:
                return 0
            self.delete_object(key)
            return size
        return sum(self.parallel(remove, doomed))

    # ---- garbage collection (store_cleanup)
    def stored_slices(self):
        return set(key.rsplit('/', 1)[1] for key, _size in self.listing('slices/') if len(key.rsplit('/', 1)[1]) == 64)

    def clean_staging(self, max_age, check_mode):
        """Leftovers of runs that are gone: a slice list whose record is gone (a deletion cut short, the image
        not locked), leases that expired or whose process is gone, probe objects older than ``max_age``.

        There is no staging area: the slices of an interrupted upload are in place, unreferenced, and the
        slice step of store_cleanup removes them (a re-run after that sends them again).
        """
        removed = []
        images = {}
        for key, size in self.listing('images/'):
            images.setdefault(key.split('/')[1], []).append((key, size))
        for image_id, objects in sorted(images.items()):
            if any(key.endswith('/record.json') for key, _size in objects) or self.image_lock(image_id).busy():
                continue
            for key, _size in objects:
                if not check_mode:
                    self.delete_object(key)
            removed.append(('images/%s (no record)' % image_id, sum(size for _key, size in objects)))
        now = time.time()
        for key, size in self.listing('locks/'):
            if key.startswith(PROBE_PREFIX):
                try:
                    stale = now - int(key[len(PROBE_PREFIX):].split('-')[0]) > max_age
                except ValueError:
                    stale = True
            else:
                owner = self.read_lease(key)
                stale = owner is not None and _stale(owner)
            if stale:
                if not check_mode:
                    self.delete_object(key)
                removed.append((key, size))
        return removed

    # ---- images
    def image_ids(self):
        found = set()
        for key, _size in self.listing('images/'):
            parts = key.split('/')
            if len(parts) == 3 and parts[1]:
                found.add(parts[1])
        return sorted(found)

    def read_record(self, image_id):
        return self.read_json('images/%s/record.json' % image_id)

    def read_records(self):
        image_ids = self.image_ids()
        return dict(zip(image_ids, self.parallel(self.read_record, image_ids)))

    def write_record(self, image_id, record):
        self.write_json('images/%s/record.json' % image_id, record)

    def read_slice_list(self, image_id):
        data = self.read_json('images/%s/slices.json' % image_id)
        return None if data is None else SliceList.from_dict(data)

    def write_slice_list(self, image_id, slice_list):
        self.write_json('images/%s/slices.json' % image_id, slice_list.to_dict())

    def remove_image(self, image_id):
        """Delete the record first (the image is gone from listings at once), then the slice list, then
        the image's leases but this process's own (its holder deletes it when it lets go)."""
        directory = 'images/%s/' % image_id
        keys = [key for key, _size in self.listing(directory)]
        if not keys:
            return False
        record = directory + 'record.json'
        for key in sorted(keys, key=lambda k: k != record):
            self.delete_object(key)
        for key, _size in self.listing('locks/%s/' % image_id):
            if key not in self.own_leases:
                self.delete_object(key)
        return True

    # ---- concurrency
    def image_lock(self, image_id):
        return Lease(self, 'locks/%s/' % image_id, '{token}', "image %s in store '%s'" % (image_id, self.name),
                     conflicts=lambda name: True)

    def slice_guard(self, exclusive, wait=DEFAULT_WAIT, beside_own=False):
        what = "the slices of store '%s'" % self.name
        if exclusive:
            return Lease(self, GUARD_DIR, 'exclusive-{token}', what, conflicts=lambda name: name.startswith(('shared-', 'exclusive-')),
                         ttl=GUARD_TTL, wait=wait, heartbeat=True, beside_own=beside_own)
        return Lease(self, GUARD_DIR, 'shared-{token}', what, conflicts=lambda name: name.startswith('exclusive-'),
                     ttl=GUARD_TTL, wait=wait, heartbeat=True, beside_own=beside_own)
