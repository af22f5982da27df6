# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File store: a directory (usually a mount path such as /cloud_bs) on the host the module runs on.

Layout under the store root::

    multistore.json               identity: id, name, type, zone, enabled, layout version...
    slices/ab/ab12…(sha256)       content-addressed slices, written once, never modified
    images/<id>/record.json       the image record (Glance fields), status flips to active last
    images/<id>/slices.json       the ordered slice list
    staging/                      slices of running imports, removed images before deletion
    locks/                        per-image expiring locks, the slice guard
    retrieved.json                files retrieved as images (retrieve_existing), see images/retrieve.py

The layout, records, statistics and garbage collection are the slice repository's (repository.py); this
module is its blob back end on a filesystem: atomic files (temporary name, fsync, rename), a staging area for
transfers and removals, pid-aware lock files (common/locks.py) and the flock slice guard.

Where the filesystem can share blocks (xfs made with reflink=1, btrfs), a slice read from a local file is
cloned from that file's range instead of written (FileSliceWriter.put with ``origin``): importing a file
that already lies on the store's filesystem costs no new space, and exports clone slices back out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import functools
import hashlib
import mmap
import os
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import (
    atomic_write, clone_range, fsync_dir, makedirs, remove_file, write_all)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import LockError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import DEFAULT_WAIT, ExpiringLock, SliceGuard
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import SliceWriter
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.pull import StagedSlices
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.repository import (
    Blobs, Leftover, SliceRepository, ordered_window, slice_key)

IDENTITY_FILE = 'multistore.json'
DIRECT_ALIGN = 4096
LAYOUT_DIRS = ('slices', 'images', 'staging', 'locks')
RETRIEVED_FILE = 'retrieved.json'
# Slices read and hashed at once by a verify: two cores here, sha256 1.77 GB/s each.
HASH_THREADS = 2
# What the store itself keeps at its root: never taken for an image lying there (retrieve_existing).
# names/ (the name index) and usage/ (the usage ledger), repository.py, are made by their first entry: older stores lack them.
LAYOUT_ENTRIES = frozenset(LAYOUT_DIRS + ('names', 'usage', IDENTITY_FILE, RETRIEVED_FILE))
# common/fs.py temp_name: '.<name>.tmp-<12 hex>'; in names/<sha256>/, <name> is the image id
_TEMPORARY = re.compile(r'^\.(.+)\.tmp-[0-9a-f]{12}$')


class FileSliceWriter(SliceWriter):
    """Stages slices under staging/<image id>.partial/ until commit.

    The staging directory belongs to the image (its lock is held), not to one run: a transfer that was
    interrupted leaves its staged slices there and the next run adopts every one whose content still
    matches its name, so only the missing slices travel again.
    """

    def __init__(self, store, image_id):
        self.store = store
        self.directory = os.path.join(store.root, 'staging', '%s.partial' % image_id)
        makedirs(self.directory)
        self.staged = {}
        self.new_bytes = 0
        self.adopted_bytes = 0
        self._adopt()

    def _adopt(self):
        for entry in _scandir(self.directory):
            name = entry.name
            if len(name) == 64 and not self.store.has_slice(name) and _file_sha256(entry.path) == name:
                self.staged[name] = entry.path
                self.adopted_bytes += entry.stat().st_size
            else:
                remove_file(entry.path)
        self.new_bytes = self.adopted_bytes

    def staged_digests(self):
        return list(self.staged)

    direct = hasattr(os, 'O_DIRECT')
    _scratch = None

    def _write_direct(self, path, data):
        """Write around the page cache (measured here: 0.17 CPU-s/GB instead of about 1 buffered).

        O_DIRECT needs a page-aligned buffer and a length in whole blocks: the pipeline's mmap buffers
        are aligned; other data (slices read from another store) is copied into an aligned scratch
        buffer first, still far cheaper than the page cache. Filesystems that refuse O_DIRECT (tmpfs,
        some FUSE mounts) fall back to buffered writes for the rest of the transfer.
        """
        view = memoryview(data)
        if not self.direct or len(view) % DIRECT_ALIGN or not len(view):
            return False
        if not isinstance(view.obj, mmap.mmap):
            if self._scratch is None or len(self._scratch) < len(view):
                self._scratch = mmap.mmap(-1, max(len(view), SLICE_SIZE))
            self._scratch[:len(view)] = view
            view = memoryview(self._scratch)[:len(view)]
        try:
            _write_file(path, view, os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.direct = False
            remove_file(path)
            return False
        return True

    # Cleared once the filesystem refuses a clone for a reason that holds for every slice (not reflink-capable,
    # another filesystem): the rest of the transfer writes without asking again.
    clones = True
    cloned_bytes = 0

    def _clone(self, path, origin, length):
        """Clone ``length`` bytes at ``origin`` (fd, offset) into a new slice file; False when refused."""
        if not self.clones:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            refused = clone_range(origin[0], origin[1], length, fd, 0)
            if refused is None and os.fstat(fd).st_size != length:
                refused = errno.EINVAL  # the source is shorter than the slice read from it: write the bytes read
        finally:
            os.close(fd)
        if refused is None:
            self.cloned_bytes += length
            return True
        if refused != errno.EINVAL:  # EINVAL: this range only (an unaligned tail not at the source's end)
            self.clones = False
        return False

    def put(self, digest, data, index=None, origin=None):
        """Stage a slice; with ``origin`` (fd, offset), the slice's bytes are also at that range of a local file,
        which is cloned where the filesystem can (the bytes were hashed as read; the caller checks the file did
        not change meanwhile), else written."""
        if digest in self.staged or self.store.has_slice(digest):
            return False
        path = os.path.join(self.directory, digest)
        partial = path + '.part'
        if origin is None or not self._clone(partial, origin, len(data)):
            if not self._write_direct(partial, data):
                _write_file(partial, data, 0)
        os.rename(partial, path)
        self.staged[digest] = path
        self.new_bytes += len(data)
        return True

    def commit(self):
        # fsync in parallel at the end rather than after every slice: writeback has already run by
        # then, and the transfer never waits on the disk. Only then do the slices get their names.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(_fsync_path, self.staged.values()))
        touched = set()
        for digest, path in self.staged.items():
            final = self.store.slice_path(digest)
            parent = os.path.dirname(final)
            if parent not in touched:
                makedirs(parent)
                touched.add(parent)
            os.rename(path, final)
        for parent in touched:
            fsync_dir(parent)
        fsync_dir(os.path.join(self.store.root, 'slices'))
        self.staged = {}
        shutil.rmtree(self.directory, ignore_errors=True)

    def abort(self, keep=False):
        """Drop the staged slices, or with ``keep`` leave them for the next run to adopt."""
        self.staged = {}
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)


def _write_file(path, data, flags):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o644)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def _file_sha256(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return _fd_sha256(fd)[0]
    finally:
        os.close(fd)


def _fd_sha256(fd):
    """(sha256 hex, bytes read) of what is left to read from ``fd``."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = os.read(fd, 1 << 20)
        if not block:
            return digest.hexdigest(), size
        digest.update(block)
        size += len(block)


def _drop_cache(fd):
    if hasattr(os, 'posix_fadvise'):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileBlobs(Blobs):
    """Blobs as files under the store root: written to a temporary name, fsynced and renamed (common/fs.py)."""

    def __init__(self, root):
        self.root = root

    def path(self, key):
        return os.path.join(self.root, key)

    # ---- blobs
    def get(self, key, what=None):
        try:
            with open(self.path(key), 'rb') as handle:
                return handle.read()
        except (IOError, OSError) as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise

    def put(self, key, data, what=None):
        path = self.path(key)
        for attempt in (1, 2, 3):
            makedirs(os.path.dirname(path))
            try:
                atomic_write(path, data)
                return
            except OSError as exc:
                # another run pruned the emptied directory between the two calls (prune): make it again
                if exc.errno != errno.ENOENT or attempt == 3:
                    raise

    def prune(self, prefix):
        try:
            os.rmdir(self.path(prefix))
        except OSError:
            pass  # not empty (another image of that name), or gone already

    def stat(self, key, what=None):
        try:
            return os.stat(self.path(key)).st_size
        except OSError:
            return None

    def list(self, prefix, sizes=True):
        found = []

        def walk(directory, parent):
            for entry in _scandir(directory):
                if entry.name.startswith('.'):
                    continue  # a temporary file (fs.temp_name)
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, parent + entry.name + '/')
                elif not sizes:
                    found.append((parent + entry.name, None))
                else:
                    stat = _stat(entry)
                    if stat is not None:  # else removed since the directory was read (another run deleted its image)
                        found.append((parent + entry.name, stat.st_size))
        walk(self.path(prefix), prefix)
        return found

    def children(self, prefix):
        return sorted(entry.name for entry in _scandir(self.path(prefix)) if not entry.name.startswith('.'))

    def remove(self, key):
        size = self.stat(key)
        return size if size is not None and remove_file(self.path(key)) else 0

    def remove_tree(self, prefix, first):
        """One rename hides the whole directory (into staging/, where clean_staging finds it if this run dies)."""
        source = self.path(prefix.rstrip('/'))
        doomed = os.path.join(self.root, 'staging', 'removed-%s-%s' % (os.path.basename(source), uuid.uuid4().hex[:12]))
        try:
            os.rename(source, doomed)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        fsync_dir(os.path.dirname(source))
        shutil.rmtree(doomed, ignore_errors=True)
        return True

    def replace(self, key, data, what=None):
        """Staged in a ``.partial`` directory (store_cleanup removes it if the run dies), fsynced, renamed over."""
        digest = os.path.basename(key)
        staging = os.path.join(self.root, 'staging', 'repair-%s-%s.partial' % (digest[:12], uuid.uuid4().hex[:12]))
        makedirs(staging)
        partial = os.path.join(staging, digest)
        try:
            _write_file(partial, data, 0)
            _fsync_path(partial)
            final = self.path(key)
            makedirs(os.path.dirname(final))
            os.rename(partial, final)
            fsync_dir(os.path.dirname(final))
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # ---- bulk hooks
    def ordered(self, function, items):
        """HASH_THREADS slices read and hashed at once (read and sha256 both release the GIL)."""
        with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
            for item, result in ordered_window(lambda item: pool.submit(function, item), items, HASH_THREADS + 1):
                yield item, result

    def hash(self, key, what=None):
        try:
            fd = os.open(self.path(key), os.O_RDONLY)
        except OSError:
            return None, 0
        try:
            # Dropped from the page cache first: a verify must read the disk, not what memory remembers of it.
            _drop_cache(fd)
            found, size = _fd_sha256(fd)
            _drop_cache(fd)
        except OSError:  # EIO: the medium itself failed
            return None, 0
        finally:
            os.close(fd)
        return found, size

    # ---- the store as a whole
    def create(self):
        makedirs(self.root)
        for directory in LAYOUT_DIRS:
            makedirs(os.path.join(self.root, directory))

    def check_root(self):
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            return '%s exists and is not a directory' % self.root
        return None

    def accessible(self):
        return os.path.isfile(self.path(IDENTITY_FILE)) and os.access(self.root, os.W_OK)

    def writable_problem(self):
        for directory in LAYOUT_DIRS:
            path = os.path.join(self.root, directory)
            if not os.access(path, os.W_OK | os.X_OK):
                return '%s is not writable by this user' % path
        return None

    def capacity(self):
        vfs = os.statvfs(self.root)
        return vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize

    def where(self):
        return self.root

    def url(self, key):
        return self.path(key)

    def location(self, key):
        return 'file://%s' % self.path(key)

    def missing_slice(self, digest, reason):
        return ("slice %s is missing or unreadable (%s): delete the damaged image from this store and copy it again from another store"
                % (digest, reason or os.strerror(errno.ENOENT)))

    # ---- concurrency and leftovers
    def lock(self, name, what, wait=DEFAULT_WAIT):
        return ExpiringLock(os.path.join(self.root, 'locks', '%s.lock' % name), what, wait=wait)

    def guard(self, exclusive, **options):
        return SliceGuard(os.path.join(self.root, 'locks', 'slices.lock'), exclusive, **options)

    def leftovers(self, now, max_age):
        """Images being removed (``removed-*``), ``<id>.partial`` slices of an interrupted transfer (adopted by a
        re-run of that image until they are ``max_age`` old), and name locks no live run holds."""
        found = []
        for entry in _scandir(os.path.join(self.root, 'staging')):
            if entry.name.endswith('.partial'):
                stat = _stat(entry)
                if stat is None:
                    continue  # its transfer committed or gave up since the directory was read
                image_id, born = entry.name[:-len('.partial')], stat.st_mtime
            elif entry.name.startswith('removed-'):
                image_id, born = None, None
            else:
                continue
            found.append(Leftover('staging/%s' % entry.name, image_id, born, functools.partial(_tree_size, entry.path),
                                  functools.partial(shutil.rmtree, entry.path, ignore_errors=True)))
        # The name lock of a run killed while it made a new image (before its 'importing' records were written).
        for entry in _scandir(os.path.join(self.root, 'locks')):
            if entry.name.startswith('name-') and entry.name.endswith('.lock'):
                lock = ExpiringLock(entry.path, 'the name lock %s' % entry.name, wait=0)
                if not lock.busy():
                    found.append(Leftover('locks/%s' % entry.name, None, None, lambda: 0, functools.partial(_break, lock)))
        return found + self._dead_locks() + self._temporaries()

    def _temporaries(self):
        """Temporary files (common/fs.py atomic_write: ``.<name>.tmp-<random>``) of a record, a slice list or a name index
        entry whose writer was killed before its rename: invisible to every reader, kept for ever otherwise. They
        are written under their image's lock, so they are removed under it, taken without waiting: a live writer
        keeps its own."""
        found = []
        for entry in _scandir(os.path.join(self.root, 'images')):
            if entry.is_dir(follow_symlinks=False) and os.path.exists(os.path.join(entry.path, 'record.json')):
                found.extend(Leftover('images/%s/%s' % (entry.name, temp.name), entry.name, None, functools.partial(_size_of, temp.path),
                                      functools.partial(remove_file, temp.path))
                             for temp in _scandir(entry.path) if _TEMPORARY.match(temp.name))
        for entry in _scandir(os.path.join(self.root, 'names')):
            if entry.is_dir(follow_symlinks=False):
                for temp in _scandir(entry.path):
                    match = _TEMPORARY.match(temp.name)
                    if match:
                        found.append(Leftover('names/%s/%s' % (entry.name, temp.name), match.group(1), None,
                                              functools.partial(_size_of, temp.path), functools.partial(remove_file, temp.path)))
        # a usage ledger entry's: no image lock covers it, so it goes once older than max_age (a live writer renames
        # its file at once)
        for temp in _scandir(os.path.join(self.root, 'usage', 'deltas')):
            stat = _stat(temp) if _TEMPORARY.match(temp.name) else None
            if stat is not None:
                found.append(Leftover('usage/deltas/%s' % temp.name, None, stat.st_mtime, functools.partial(_size_of, temp.path),
                                      functools.partial(remove_file, temp.path)))
        return found

    def _dead_locks(self):
        """Image locks whose owner is gone or expired: a run killed before it wrote anything but its locks (the re-run
        picks a new image id, so no run would ever take them again), or killed in a store the re-run no longer touches
        (a deletion done elsewhere). Removed by taking the lock without waiting, as any run breaks a dead lock, and
        letting go of it; those of an image with staged slices or a directory without a record are left to those
        leftovers, which are removed under the lock. The temporary files of a refresh or a break cut short go too,
        once what they hold is stale."""
        found = []
        for entry in _scandir(os.path.join(self.root, 'locks')):
            name = entry.name
            if name == 'slices.lock' or (name.startswith('name-') and name.endswith('.lock')):
                continue  # the slice guard; name locks are leftovers of their own (above)
            if ExpiringLock(entry.path, name, wait=0).busy():
                continue
            size = functools.partial(_size_of, entry.path)
            if name.endswith('.lock'):
                image_id = name[:-len('.lock')]
                image = os.path.join(self.root, 'images', image_id)
                if os.path.exists(os.path.join(self.root, 'staging', '%s.partial' % image_id)) or (
                        os.path.isdir(image) and not os.path.exists(os.path.join(image, 'record.json'))):
                    continue  # that leftover is removed under this lock, which goes with it
                # removed by the lock's release, under the lock clean_staging takes
                found.append(Leftover('locks/%s' % name, image_id, None, size, lambda: None))
            elif '.lock.refresh-' in name or '.lock.broken-' in name or '.lock.new-' in name:
                found.append(Leftover('locks/%s' % name, None, None, size, functools.partial(remove_file, entry.path)))
        return found

    def writer(self, store, image_id):
        return FileSliceWriter(store, image_id)


class FileStore(SliceRepository):
    kind = 'file'

    def __init__(self, name, config):
        super(FileStore, self).__init__(name, config, FileBlobs(config['path']))
        self.root = config['path']

    def slice_path(self, digest):
        """The slice's file (image exports clone from it)."""
        return self.blobs.path(slice_key(digest))

    def read_staged_slices(self, image_id, digests, stall):
        """Yield (digest, data) for slices of ``image_id`` that a transfer still stages here (or stored ones), each
        waited for while that transfer makes progress (stores/pull.py StagedSlices)."""
        reader = StagedSlices(self, image_id, stall)
        for digest in digests:
            yield digest, reader.read(digest)


def _size_of(path):
    try:
        return os.lstat(path).st_size
    except OSError:
        return 0


def _tree_size(path):
    total = 0
    for directory, dummy, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


def _break(lock):
    """Remove a lock nobody holds (as a run breaking it would), unless a live run took it meanwhile."""
    try:
        lock.acquire()
    except LockError:
        return False
    lock.release()
    return True


def _stat(entry):
    """The stat of a directory entry, None when it is gone since its directory was read (another run removed it)."""
    try:
        return entry.stat()
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def _scandir(path):
    try:
        return list(os.scandir(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return []
        raise
