# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Store hosts fetching slices from each other: the store agent's side of direct sync and fan-out.

A controller that copies between two stores on other hosts asks the destination's agent to pull the
slices it lacks straight from the source's host (images/fanout.py), so the data goes host to host over
the destination's sync network and never through the controller. The destination finds the source in
its own host's registry (the store_host role registers the stores a host reaches, with its sync key),
by the source's store id, so a controller cannot point it at anything its administrator did not declare.

Two pieces:

- ``SlicePull``: runs in the destination's agent, in a thread beside the agent's request loop (the
  controller keeps refreshing its locks and asking for ``status()`` meanwhile). It tries its sources
  in order (the store upstream in the chain first, then the copy's source), verifies every slice's
  sha256 before it is staged, and moves on to the next source when one fails or stalls.
- ``StagedSlices``: runs in the agent serving the upstream store, and reads the slices of an image
  that another transfer is still staging there, waiting for each one to arrive. This is what lets a
  chain of stores (central -> edge1 -> edge2 ...) move every slice down the chain while the first hop
  is still receiving it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import re
import threading
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import read_json, write_all
from ansible_collections.vmimages.multistore.plugins.module_utils.common.registry_path import declared_names, default_registry
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import slice_key

FAILED_MARK = '.pull-failed'  # in the staging directory: downstream readers stop waiting for its slices
IMAGE_ID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
DIGEST = re.compile(r'^[0-9a-f]{64}$')
DEFAULT_STALL = 30  # seconds without a new slice upstream before a reader turns to its next source
POLL_START = 0.005
POLL_MAX = 0.2


class StagedSlices:
    """Slices of ``image_id`` in ``store``: stored ones at once, staged ones as another transfer stages them.

    A slice not there yet is waited for while that transfer makes progress (its staging directory changes);
    after ``stall`` seconds without a change, or at once when that transfer marked itself failed or is gone,
    the read fails and the reader turns to its next source.
    """

    def __init__(self, store, image_id, stall):
        if not IMAGE_ID.match(str(image_id)):
            raise errors.StoreError('staged_for must be an image id, not %r' % (image_id,))
        self.store = store
        self.directory = os.path.join(store.root, 'staging', '%s.partial' % image_id)
        self.stall = float(stall)

    def read(self, digest):
        if not DIGEST.match(str(digest)):
            raise errors.StoreError('%r is not a slice digest' % (digest,))
        delay = POLL_START
        waiting_since = time.time()
        while True:
            data = self.store.blobs.get(slice_key(digest), 'read slice %s' % digest)
            if data is not None:
                return data
            try:
                with open(os.path.join(self.directory, digest), 'rb') as handle:
                    return handle.read()
            except (IOError, OSError):
                pass  # not staged yet, or committed (renamed into slices/) since we looked: look again
            self._check_alive(digest, waiting_since)
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def _check_alive(self, digest, waiting_since):
        try:
            changed = os.stat(self.directory).st_mtime
        except OSError:
            if self.store.has_slice(digest):
                return  # committed between the two looks
            raise errors.StoreError("store '%s' is not receiving slice %s any more (its transfer ended without it)"
                                    % (self.store.name, digest))
        marked = os.path.join(self.directory, FAILED_MARK)
        if os.path.exists(marked):
            with open(marked, 'rb') as handle:
                reason = handle.read().decode('utf-8', 'replace')
            raise errors.StoreError("store '%s' will not receive slice %s: its own transfer failed (%s)" % (self.store.name, digest, reason))
        if time.time() - max(changed, waiting_since) > self.stall:
            raise errors.TransferInterrupted("store '%s' received no slice for %d s while slice %s was awaited: its transfer "
                                             "stalled" % (self.store.name, self.stall, digest))


def open_declared(name, store_id, registry=None):
    """The store with id ``store_id`` as this host declared it (a file store on another host), connected.

    The declaration named ``name`` is tried first (the role gives a store the same name on every host),
    then the other remote file-store declarations; each is confirmed by the id in the store's identity.
    """
    # Imported here: ssh.py ships this agent's own code and imports it.
    from ansible_collections.vmimages.multistore.plugins.module_utils.stores.ssh import SshFileStore
    directory = registry or default_registry()
    entries = declared_names(directory)
    candidates = ([name] if name in entries else []) + [entry for entry in entries if entry != name]
    tried = []
    for entry in candidates:
        try:
            declaration = read_json(os.path.join(directory, entry + '.json'))
        except ValueError:
            continue
        if not declaration or declaration.get('type') != 'file' or not declaration.get('host'):
            continue
        store = SshFileStore(entry, declaration)
        try:
            identity = store.read_identity()
        except errors.MultistoreError as exc:
            store.close()
            tried.append(str(exc))
            continue
        if (identity or {}).get('id') == store_id:
            return store
        store.close()
    raise errors.StoreError("this host (registry %s) declares no store with id %s (%s)%s: register it here with the store_host "
                            "role (multistore_remote_stores) to let this host fetch from it directly"
                            % (directory, store_id, name, '; unreachable: %s' % '; '.join(tried) if tried else ''))


class SlicePull:
    """Fetch ``digests`` into ``writer`` from ``sources`` (dicts: name, id, staged_for), in a thread.

    ``status()`` says how far it got; a failure of one source moves on to the next one, a failure to
    write here (disk full) ends the pull. When it fails, it marks its staging directory so that stores
    pulling from this one stop waiting for its slices.
    """

    def __init__(self, writer, sources, digests, stall, registry=None):
        self.writer = writer
        self.sources = list(sources)
        self.digests = list(digests)
        self.stall = stall
        self.registry = registry
        self.done_bytes = 0
        self.done_slices = 0
        self.served = {}
        self.notes = []
        self.error = None
        self.reached = False  # a source answered: False at the end means no route at all (the controller relays)
        self.cancelled = False
        self._thread = threading.Thread(target=self._run)
        self._thread.daemon = True

    def start(self):
        self._thread.start()
        return self

    def status(self):
        return {'running': self._thread.is_alive(), 'bytes': self.done_bytes, 'slices': self.done_slices,
                'served': dict(self.served), 'notes': list(self.notes), 'error': self.error,
                'no_route': bool(self.error) and not self.reached}

    def cancel(self):
        self.cancelled = True
        if self._thread.is_alive():
            self._thread.join(60)

    def _lacking(self):
        store = self.writer.store
        staged = set(self.writer.staged_digests())
        return [digest for digest in self.digests if digest not in staged and not store.has_slice(digest)]

    def _run(self):
        try:
            remaining = self._lacking()
            for source in self.sources:
                if not remaining or self.cancelled:
                    break
                remaining = self._from(source, remaining)
            if self.cancelled:
                self.error = 'cancelled'
            elif remaining:
                self.error = 'no source served %d of the slices: %s' % (len(remaining), '; '.join(self.notes))
        except _WriteFailed as exc:
            self.error = str(exc)
        except Exception as exc:  # pylint: disable=broad-except  # a thread's failure must reach status(), not vanish
            self.error = 'the pull failed: %r' % exc
        if self.error:
            self._mark_failed()

    def _from(self, source, remaining):
        try:
            store = open_declared(source['name'], source['id'], self.registry)
        except errors.MultistoreError as exc:
            self.notes.append(str(exc))
            return remaining
        got = set()
        try:
            self.reached = True
            options = {'staged_for': source['staged_for'], 'stall': self.stall} if source.get('staged_for') else {}
            for digest, data in store.agent().stream_slices(remaining, **options):
                if self.cancelled:
                    break
                if hashlib.sha256(data).hexdigest() != digest:
                    raise errors.ImageError("slice %s arrived damaged from store '%s' (sha256 differs)" % (digest, source['name']))
                try:
                    self.writer.put(digest, data)
                except (errors.MultistoreError, IOError, OSError) as exc:
                    raise _WriteFailed("store '%s': write failed: %s" % (self.writer.store.name, getattr(exc, 'strerror', None) or exc))
                got.add(digest)
                self.done_bytes += len(data)
                self.done_slices += 1
                self.served[source['name']] = self.served.get(source['name'], 0) + len(data)
        except errors.MultistoreError as exc:
            self.notes.append("from '%s': %s" % (source['name'], exc))
        finally:
            store.close()
        return [digest for digest in remaining if digest not in got]

    def _mark_failed(self):
        directory = getattr(self.writer, 'directory', None)
        if not directory or not os.path.isdir(directory):
            return
        try:
            fd = os.open(os.path.join(directory, FAILED_MARK), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, (self.error or '').encode('utf-8')[:4000])
            finally:
                os.close(fd)
        except OSError:
            pass  # readers downstream then wait until their stall timeout instead


class _WriteFailed(errors.StoreError):
    """Writing here failed: no other source helps."""


def start_pull(writer, sources, digests, stall):
    """The agent's ``writer_pull``: start fetching into the open ``writer``; True (an older agent has no such line)."""
    previous = getattr(writer, 'pull', None)
    if previous is not None and previous.status()['running']:
        raise errors.StoreError('a pull into this writer is running already')
    writer.pull = SlicePull(writer, sources, digests, stall).start()
    return True


def pull_status(writer):
    pull = getattr(writer, 'pull', None)
    if pull is None:
        raise errors.StoreError('no pull was started into this writer')
    return pull.status()


def stop_pull(writer):
    """Before a writer commits or aborts: a pull still running is stopped first."""
    pull = getattr(writer, 'pull', None)
    if pull is not None:
        pull.cancel()
