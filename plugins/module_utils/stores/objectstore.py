# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Object stores (S3, Swift): the slice repository (repository.py) over the objects of one bucket or container.

Keys live under an optional prefix (config ``prefix``, default empty); the layout is the repository's, the
locks are leases (leases.py) under ``locks/``, and probe objects ``locks/probe-<time>-<random>`` are written
and deleted by writable_problem().

There is no staging area. A PUT is atomic (readers see no object or the whole object) and a slice is
named by its content, so an uploaded slice is in its final place at once; no slice list references it
until the transfer commits. A transfer that was interrupted leaves its slices in place: the next run
finds them with HEAD and does not send them again (whatever the image id), and store_cleanup removes
them if no run comes back for them. A removal deletes key by key (the record first), so store_cleanup
also removes the slice lists a removal cut short left without a record.

``stats()`` reports capacity and free as None: S3 and Swift have no notion of either (a bucket grows
until a quota on the server side stops it); ``used`` is what the store's objects take.

A blob back end (ObjectBlobs) provides the client library's part: five primitives on full object keys
(``_get``, ``_put``, ``_head``, ``_delete``, ``_list``), ``_ensure_container``, and how to explain the
library's errors (``_describe_error``, ``_unreachable``). Everything else, and every error message, is
here or in the repository.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError, StoreError, TransferInterrupted
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import dump_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import DEFAULT_WAIT
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.leases import GUARD_DIR, GUARD_TTL, Lease, _stale
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.objectwriter import ObjectSliceWriter
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import (
    Blobs, Leftover, SliceRepository, ordered_window)

PROBE_PREFIX = 'locks/probe-'
# Parallel requests per store; the client's connection pool is sized to match.
WORKERS = 8
READ_AHEAD = 12
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


class ObjectBlobs(Blobs):
    """Blobs as the objects of one bucket; a subclass supplies the client library's primitives."""

    kind = None
    # The client library's exception classes that call() turns into StoreError (set by subclasses).
    library_errors = ()
    # What to call the bucket in messages ('bucket', 'container').
    container_word = 'bucket'

    def __init__(self, name, config):
        self.name = name
        self.config = config
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

    @staticmethod
    def payload(data):
        """A copy of ``data`` (a view of a buffer the pipeline reuses) in the form ``_put_slice`` sends best."""
        return bytes(data)

    def _put_slice(self, key, data, sha256):
        """Put a slice whose sha256 is known: a back end that hashes what it sends may use it instead."""
        self._put(key, data)

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

    def put_slice(self, key, data, sha256, what=None, interrupted=False):
        self.call(what or 'write %s' % key, self._put_slice, self.full_key(key), data, sha256, interrupted=interrupted)

    def head_object(self, key, what=None, interrupted=False):
        """The size of the object at ``key``, None when absent."""
        return self.call(what or 'check %s' % key, self._head, self.full_key(key), interrupted=interrupted)

    def delete_object(self, key, what=None):
        self.call(what or 'delete %s' % key, self._delete, self.full_key(key))

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

    # ---- the blob interface of the repository
    def get(self, key, what=None):
        return self.get_object(key, what)

    def put(self, key, data, what=None):
        self.put_object(key, data, what)

    def stat(self, key, what=None):
        return self.head_object(key, what)

    def list(self, prefix, sizes=True):
        return self.listing(prefix)

    def children(self, prefix):
        found = set()
        for key, _size in self.listing(prefix):
            parts = key[len(prefix):].split('/')
            if len(parts) == 2 and parts[0]:
                found.add(parts[0])
        return sorted(found)

    def remove(self, key):
        size = self.head_object(key)
        if size is None:
            return 0
        self.delete_object(key)
        return size

    def remove_tree(self, prefix, first):
        keys = [key for key, _size in self.listing(prefix)]
        if not keys:
            return False
        for key in sorted(keys, key=lambda k: k != first):
            self.delete_object(key)
        return True

    def map(self, function, items):
        return self.parallel(function, items)

    def prefetch(self, function, items):
        """READ_AHEAD items fetched ahead in parallel on the store's threads."""
        return ordered_window(lambda item: self.executor().submit(function, item), list(items), READ_AHEAD)

    def hash(self, key, what=None):
        data = self.get_object(key, what)
        return (None, 0) if data is None else (hashlib.sha256(data).hexdigest(), len(data))

    def create(self):
        self.call('create the %s' % self.container_word, self._ensure_container)

    def check_root(self):
        return self.config_problem()

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

    def url(self, key):
        return self.object_url(key)

    def location(self, key):
        return '%s/%s%s' % (self._location_base(), self.prefix, key)

    def missing_slice(self, digest, reason):
        return ('slice %s is missing from %s: delete the damaged image from this store and copy it again from another store'
                % (digest, self.where()))

    def corrupt(self, key, exc):
        return '%s is corrupt (%s): restore it from another store or remove the image' % (self.object_url(key), exc)

    # ---- concurrency and leftovers
    def lock(self, name, what, wait=DEFAULT_WAIT):
        return Lease(self, 'locks/%s/' % name, '{token}', what, conflicts=lambda name: True, wait=wait)

    def guard(self, exclusive, wait=DEFAULT_WAIT, beside_own=False):
        what = "the slices of store '%s'" % self.name
        if exclusive:
            return Lease(self, GUARD_DIR, 'exclusive-{token}', what, conflicts=lambda name: name.startswith(('shared-', 'exclusive-')),
                         ttl=GUARD_TTL, wait=wait, heartbeat=True, beside_own=beside_own)
        return Lease(self, GUARD_DIR, 'shared-{token}', what, conflicts=lambda name: name.startswith('exclusive-'),
                     ttl=GUARD_TTL, wait=wait, heartbeat=True, beside_own=beside_own)

    def drop_locks(self, name):
        """The image's leases but this process's own (its holder deletes it when it lets go)."""
        for key, _size in self.listing('locks/%s/' % name):
            if key not in self.own_leases:
                self.delete_object(key)

    def leftovers(self, now, max_age):
        """Leases that expired or whose process is gone, and probe objects (``born`` from their name)."""
        found = []
        for key, size in self.listing('locks/'):
            if key.startswith(PROBE_PREFIX):
                try:
                    born = int(key[len(PROBE_PREFIX):].split('-')[0])
                except ValueError:
                    born = None
            else:
                owner = self.read_lease(key)
                if owner is None or not _stale(owner):
                    continue
                born = None
            found.append(Leftover(key, None, born, lambda size=size: size, lambda key=key: self.delete_object(key)))
        return found

    def writer(self, store, image_id):
        return ObjectSliceWriter(store, image_id)


class ObjectStore(SliceRepository):
    """The slice repository over a bucket: a subclass names its kind and its blob back end (``blob_class``)."""

    remote = True
    blob_class = ObjectBlobs

    def __init__(self, name, config):
        super(ObjectStore, self).__init__(name, config, self.blob_class(name, config))

    def close(self):
        self.blobs.close()
