# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retrieve existing images (ZStack): import the image files already lying under a file store's path, once.

Which files: regular files anywhere under the store's path, except the store's own layout at its root
(``multistore.json``, ``retrieved.json``, ``slices/``, ``images/``, ``names/``, ``staging/``, ``locks/``), hidden entries
(a leading dot: temporary or partial files of other tools) and ``lost+found``. A file whose name ends with an
image extension (IMAGE_EXTENSIONS, any case) becomes an image named after the file without that extension
(``/cloud_bs/iso/ubuntu-24.04.iso`` -> ``ubuntu-24.04``); the extension declares the disk format, except
``.img``, whose format is detected. Other files, symlinks, files the inspector refuses (the rules of every
import: no qcow2 backing or data file, no vmdk extents...), names another image already has, unreadable files
and files modified while they were read are reported as skipped, with the reason; they are never changed.

Each file goes through the one import path (ImageRequest: one pass, format inspection, md5/sha512, slices).
Where the store's filesystem shares blocks (xfs reflink=1, btrfs), the file store clones the slices from the
file instead of writing them, so a retrieval costs (almost) no new space. The originals are never moved or
deleted.

Once: ``retrieved.json`` at the store root remembers each retrieved file (path relative to the root, size,
mtime, image id and name). A remembered file with the same size and mtime is not looked at again, even when
its image was deleted since: an image the operator deleted is not resurrected by the next run. To retrieve it
again, rename the file (or delete its entry from ``retrieved.json``). A file modified since its retrieval is
retrieved again when its name is free. A file in the store's root keeps the memory with the store (declaring
the same path on another host, or after a re-mount, finds it), where the store's identity belongs to the
declaration and is rewritten by it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import stat

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    FormatError, InvalidArgument, MultistoreError, StoreError)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import atomic_write_json, read_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_image_name, check_store_path
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import FormatInspector, FormatReport, check_declared
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import IDENTITY_FILE, LAYOUT_ENTRIES, RETRIEVED_FILE

MEMORY_FORMAT = 'vmimages.multistore/retrieved'
# extension -> declared disk_format (None: detected from the bytes; .img is raw or qcow2 in the wild)
IMAGE_EXTENSIONS = {'.raw': 'raw', '.img': None, '.qcow2': 'qcow2', '.vmdk': 'vmdk', '.vdi': 'vdi', '.vhd': 'vhd',
                    '.vhdx': 'vhdx', '.iso': 'iso'}
IGNORED_DIRS = ('lost+found',)
# A retrieval holds this lock in the store for its whole run (two runs would import the same file twice).
LOCK_TTL = 3600


def image_name(file_name):
    """(name, declared disk_format) of a file, or None when its extension is not an image's."""
    base, ext = os.path.splitext(file_name)
    if ext.lower() not in IMAGE_EXTENSIONS or not base:
        return None
    return base, IMAGE_EXTENSIONS[ext.lower()]


def _same_file(a, b):
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _peek(fd):
    """The format the header shows; raises FormatError/UnsafeImageError as an import would (cheap, also in check mode)."""
    inspector = FormatInspector()
    offset = 0
    while not inspector.header_complete:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            return inspector.finish().format  # shorter than the header; an empty file raises FormatError
        inspector.feed(block)
        offset += len(block)
    return inspector.early_check()


class Retrieval:
    """The retrieval of the image files under one local file store's path."""

    def __init__(self, registry, store_name, root):
        self.registry = registry
        self.store_name = store_name
        self.root = root
        self.memory_path = os.path.join(root, RETRIEVED_FILE)
        self.retrieved = []
        self.skipped = []
        self.remembered = {}
        self.changed = False
        self.before = {}  # for the diff: path relative to the store root -> image name, remembered before and after the run
        self.after = {}

    @classmethod
    def for_store(cls, registry, name, params):
        """The retrieval for the ``store`` module's parameters, checked before the store is declared."""
        if (params.get('type') or 'file') != 'file' or params.get('host'):
            raise InvalidArgument('retrieve_existing works for a file store on the host the task runs on: run the task on the host '
                                  'that holds the files (without host:)')
        if params.get('enabled') is False:
            raise InvalidArgument('retrieve_existing needs enabled: true (a disabled store takes no new images)')
        return cls(registry, name, check_store_path(params.get('path')))

    # ---- the memory of what was retrieved
    def _read_memory(self):
        try:
            data = read_json(self.memory_path, default={}) or {}
        except ValueError as exc:
            raise StoreError('%s is corrupt (%s): fix or delete it (deleting it makes the next run retrieve every file whose name is '
                             'free again)' % (self.memory_path, exc))
        return dict(data.get('files') or {})

    def _remember(self, relpath, stat_result, image_id, name):
        self.remembered[relpath] = {'size': stat_result.st_size, 'mtime_ns': stat_result.st_mtime_ns, 'id': image_id,
                                    'name': name, 'retrieved_at': utc_now()}
        atomic_write_json(self.memory_path, {'format': MEMORY_FORMAT, 'files': self.remembered})
        self.changed = True

    # ---- finding the files
    def _skip(self, path, reason):
        self.skipped.append({'path': path, 'reason': reason})

    def _candidates(self):
        """(absolute path, path relative to the root, lstat) of every regular file to consider, in path order."""
        found = []

        def unreadable(exc):
            self._skip(exc.filename, 'unreadable directory (%s): make it readable by the user running the task' % (exc.strerror or exc))

        for directory, dirnames, filenames in os.walk(self.root, onerror=unreadable):
            top = directory == self.root
            kept = []
            for name in sorted(dirnames):
                path = os.path.join(directory, name)
                if name.startswith('.') or name in IGNORED_DIRS or (top and name in LAYOUT_ENTRIES):
                    continue
                if os.path.islink(path):
                    self._skip(path, 'symlink to a directory: not followed (move the files under the store path to retrieve them)')
                    continue
                if os.path.exists(os.path.join(path, IDENTITY_FILE)):
                    self._skip(path, 'the root of another store (%s): not looked into' % IDENTITY_FILE)
                    continue
                kept.append(name)
            dirnames[:] = kept
            for name in sorted(filenames):
                path = os.path.join(directory, name)
                if name.startswith('.') or (top and name in LAYOUT_ENTRIES):
                    continue
                try:
                    info = os.lstat(path)
                except OSError as exc:
                    self._skip(path, 'unreadable (%s)' % (exc.strerror or exc))
                    continue
                if stat.S_ISLNK(info.st_mode):
                    self._skip(path, 'symlink: not followed (it could point anywhere on the host); put the file itself under the store path')
                elif not stat.S_ISREG(info.st_mode):
                    self._skip(path, 'not a regular file')
                else:
                    found.append((path, os.path.relpath(path, self.root), info))
        return sorted(found, key=lambda item: item[1])

    # ---- the run
    def run(self, check_mode):
        """Retrieve (or, in check mode, list) the files; return whether anything changed."""
        self.remembered = self._read_memory()
        self.before = dict((path, entry.get('name')) for path, entry in self.remembered.items())
        try:
            return self._run(check_mode)
        finally:
            self.skipped.sort(key=lambda entry: entry['path'])
            self.after = dict(self.before)
            self.after.update((os.path.relpath(entry['path'], self.root), entry['name']) for entry in self.retrieved)

    def _run(self, check_mode):
        if not os.path.isdir(self.root):
            return False  # a store not created yet (check mode): nothing lies there
        catalog = Catalog(self.registry)
        # In check mode the same task may create the store or enable it: its state now says nothing about the real run.
        if check_mode:
            return self._scan(catalog, check_mode=True, lock=None)
        catalog.store(self.store_name).ensure_writable()
        with ExpiringLock(os.path.join(self.root, 'locks', 'retrieve.lock'), "the retrieval of images in store '%s'" % self.store_name,
                          ttl=LOCK_TTL) as lock:
            return self._scan(catalog, check_mode=False, lock=lock)

    def _scan(self, catalog, check_mode, lock):
        taken = {}
        for view in catalog.images().values():
            record = view.reference()
            taken.setdefault(record.get('name'), (view.id, record, None))
        for path, relpath, info in self._candidates():
            known = self.remembered.get(relpath)
            if known and (known.get('size'), known.get('mtime_ns')) == (info.st_size, info.st_mtime_ns):
                continue  # retrieved once: never again, even when its image was deleted since
            naming = image_name(os.path.basename(path))
            if naming is None:
                self._skip(path, 'not named like a disk image (extensions: %s)' % ', '.join(sorted(IMAGE_EXTENSIONS)))
                continue
            name, declared = naming
            try:
                check_image_name(name)
            except InvalidArgument as exc:
                self._skip(path, str(exc))
                continue
            if name in taken:
                image_id, record, first = taken[name]
                if known:
                    self._skip(path, "changed since it was retrieved as image '%s' (id %s), which keeps the old bytes: rename the file "
                                     "to retrieve this version as another image" % (known.get('name'), known.get('id')))
                elif (record.get('properties') or {}).get('retrieved_from') == path and record.get('size') == info.st_size:
                    if not check_mode:
                        self._remember(relpath, info, image_id, name)  # retrieved by a run that stopped before it could remember it
                elif first:
                    self._skip(path, "the name '%s' goes to %s, retrieved first (files are taken in path order): rename the file to retrieve "
                                     "it under another name" % (name, first))
                else:
                    self._skip(path, "the name '%s' is taken by image %s: rename the file to retrieve it under another name" % (name, image_id))
                continue
            entry = self._retrieve(path, relpath, info, name, declared, check_mode)
            if entry is not None:
                taken[name] = (entry['id'], {}, path)
                self.retrieved.append(entry)
                if lock is not None:
                    lock.refresh()
        return self.changed or bool(self.retrieved)

    def _retrieve(self, path, relpath, info, name, declared, check_mode):
        try:
            # O_NOFOLLOW and the (device, inode) check: the file imported is the one that was listed, not a symlink
            # swapped in meanwhile; O_NONBLOCK: a FIFO swapped in cannot hang the run.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            self._skip(path, 'unreadable (%s)' % (exc.strerror or exc))
            return None
        try:
            if not _same_file(os.fstat(fd), info):
                self._skip(path, 'it changed while the store was scanned (is it being written?): it is retried on the next run')
                return None
            try:
                detected = _peek(fd)
                # The header decides, except that a fixed VHD shows as raw until its footer is read (the import checks that).
                if declared and not (declared == 'vhd' and detected == 'raw'):
                    check_declared(declared, FormatReport(detected, None))
            except FormatError as exc:
                hint = ' (the format was taken from the file extension: rename the file to match its format)' if 'disk_format is' in str(exc) else ''
                self._skip(path, 'refused by the format inspector: %s%s' % (exc, hint))
                return None
            except OSError as exc:
                self._skip(path, 'unreadable (%s)' % (exc.strerror or exc))
                return None
            entry = {'name': name, 'id': None, 'path': path, 'size': info.st_size, 'disk_format': declared or detected}
            if check_mode:
                return entry
            return self._import(fd, entry, relpath, info, declared)
        finally:
            os.close(fd)

    def _import(self, fd, entry, relpath, info, declared):
        # /proc/self/fd/N opens the very inode checked above, whatever happens to the path meanwhile.
        src = '/proc/self/fd/%d' % fd if os.path.isdir('/proc/self/fd') else entry['path']
        params = {'name': entry['name'], 'src': src, 'stores': [self.store_name], 'disk_format': declared, 'container_format': 'bare',
                  'properties': {'retrieved_from': entry['path']}}
        request = ImageRequest(Catalog(self.registry), params)
        try:
            request.present(check_mode=False)
        except MultistoreError as exc:
            # The inspector's refusals past the header, a file modified while it was read, the edge rule, the quota: this file only.
            self._skip(entry['path'], 'not retrieved: %s' % exc)
            return None
        view = request.catalog.find(request.image_id)
        record = view.reference() if view else {}
        entry.update(id=request.image_id, disk_format=record.get('disk_format', entry['disk_format']))
        self._remember(relpath, info, request.image_id, entry['name'])
        return entry
