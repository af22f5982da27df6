# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Materialize an image from a store into a file for hypervisors (the logic of ``image_export``).

The file is written sparse (zero slices become holes) under a temporary name, every slice is checked
against its sha256 and the whole file against the record's sha512 while it is written, then it is
renamed into place. A stamp in an extended attribute (image id, digest, size, mtime) lets the next
run see that the file is up to date without reading it again.

From a local file store to a destination on the same xfs (reflink=1) or btrfs filesystem, the slices are
cloned instead (see write_raw): a 10 GiB image materializes in well under a second and shares its blocks
with the store, copy-on-write.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import hashlib
import json
import os
import subprocess
import threading
import uuid

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps pylint's py2 checks quiet
    import Queue as queue  # noqa

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, InvalidArgument, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import clone_range, fsync_dir, remove_file, write_all
from ansible_collections.vmimages.multistore.plugins.module_utils.common.owners import pid_alive, this_process
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_file_path
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileStore

STAMP_XATTR = 'user.vmimages.multistore'
# qemu-img's names for Glance's disk formats it can convert from.
QEMU_FORMATS = {'raw': 'raw', 'qcow2': 'qcow2', 'vmdk': 'vmdk', 'vdi': 'vdi', 'vhd': 'vpc', 'vhdx': 'vhdx',
                'iso': 'raw', 'aki': 'raw', 'ari': 'raw', 'ami': 'raw'}
ZEROS = bytes(4 * 1024 * 1024)


def _stamp(record, output_format, stat):
    return json.dumps({'id': record['id'], 'os_hash_value': record.get('os_hash_value'), 'format': output_format,
                       'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns}, sort_keys=True).encode('utf-8')


def is_up_to_date(dest, record, output_format):
    """True when ``dest`` is a regular file stamped with this image (a symlink never is: it is replaced, not followed)."""
    try:
        stat = os.lstat(dest)
        return stat_is_file(stat) and os.getxattr(dest, STAMP_XATTR, follow_symlinks=False) == _stamp(record, output_format, stat)
    except (OSError, AttributeError):
        return False


def export_temp_name(dest):
    """A temporary name beside ``dest`` that names this process (pid and start time): an export killed while it writes
    leaves its file behind, and the next export of ``dest`` removes it once that process is gone."""
    directory, base = os.path.split(dest)
    owner = this_process()
    return os.path.join(directory, '.%s.export-%d-%d-%s' % (base, owner['pid'], owner.get('started', 0), uuid.uuid4().hex[:12]))


def remove_dead_temps(dest):
    """Remove the temporary files of exports of ``dest`` whose process is gone (killed while writing); the names removed.
    Those of a live export (another run writing the same dest now) stay."""
    directory, base = os.path.split(dest)
    prefix = '.%s.export-' % base
    removed = []
    for name in sorted(os.listdir(directory)):
        fields = name[len(prefix):].split('-') if name.startswith(prefix) else ()
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            continue
        if not pid_alive(int(fields[0]), int(fields[1]) or None) and remove_file(os.path.join(directory, name)):
            removed.append(name)
    return removed


def stat_is_file(stat):
    return (stat.st_mode & 0o170000) == 0o100000


class _Sha512Thread(threading.Thread):
    """The whole-image sha512 beside the slice checks and writes (hashlib releases the GIL on large buffers)."""

    def __init__(self):
        super(_Sha512Thread, self).__init__()
        self.daemon = True
        self.inbox = queue.Queue(4)
        self.whole = hashlib.sha512()

    def update(self, data):
        self.inbox.put(data)

    def run(self):
        for data in iter(self.inbox.get, None):
            self.whole.update(data)

    def hexdigest(self):
        self.inbox.put(None)
        self.join()
        return self.whole.hexdigest()


def write_raw(store, record, slice_list, path, verify=False):
    """Write the image's bytes as imported to ``path``, sparse, verified; return how: 'reflink' or 'copy'.

    From a local file store on a filesystem that shares blocks (xfs with reflink=1, btrfs) each slice file is
    cloned to its offset (O(1) per slice, no data read). The slices were verified against their sha256 when they
    were written, and a clone shares their blocks, so a clone is checked by the slice file's size and the ioctl's
    success; ``verify`` adds a full read of the result against the record's sha512. Elsewhere the slices are read,
    each checked against its sha256 and the whole against the sha512 while it is written.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        cloned = _clone_slices(store, record, slice_list, fd) if isinstance(store.backend, FileStore) else None
        if cloned is None:
            os.lseek(fd, 0, os.SEEK_SET)
            _copy_slices(store, record, slice_list, fd)
        os.ftruncate(fd, slice_list.size)
        os.fsync(fd)
    finally:
        os.close(fd)
    if cloned and verify:
        digest = _file_sha512(path)
        if digest != record.get('os_hash_value'):
            raise StoreError("image %s in store '%s': the cloned file does not match the image's sha512: run store_cleanup with verify: true "
                             "on the store, or export from another store" % (record['id'], store.name))
    return 'reflink' if cloned else 'copy'


def _corrupt(store, record, digest):
    return StoreError("slice %s of image %s is corrupt in store '%s': export from another store, or delete the image from this one and copy it "
                      "from another store" % (digest, record['id'], store.name))


def _clone_slices(store, record, slice_list, fd):
    """Clone every data slice into ``fd`` at its offset; return the number cloned, or None when the filesystem
    shares no blocks between the store and ``fd`` (the caller copies instead). A range the filesystem refuses
    alone (EINVAL: an unaligned tail) is copied, verified."""
    cloned = 0
    for index, digest in enumerate(slice_list.slices):
        if digest is None:
            continue  # a hole
        length = slice_list.slice_length(index)
        offset = index * slice_list.slice_size
        try:
            source = os.open(store.backend.slice_path(digest), os.O_RDONLY)
        except OSError:
            raise _corrupt(store, record, digest)
        try:
            if os.fstat(source).st_size != length:
                raise _corrupt(store, record, digest)
            refused = clone_range(source, 0, length, fd, offset)
            if refused is None:
                cloned += 1
                continue
            if not cloned and refused != errno.EINVAL:
                return None
            data = os.pread(source, length, 0)
        finally:
            os.close(source)
        if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
            raise _corrupt(store, record, digest)
        os.lseek(fd, offset, os.SEEK_SET)
        write_all(fd, data)
    return cloned


def _copy_slices(store, record, slice_list, fd):
    """Write every slice's bytes, sparse; each checked against its sha256 and the whole against the sha512."""
    whole = _Sha512Thread()
    whole.start()
    try:
        stored = store.backend.read_image_slices(record['id'], slice_list, [digest for digest in slice_list.slices if digest])
        for index, digest in enumerate(slice_list.slices):
            length = slice_list.slice_length(index)
            if digest is None:
                whole.update(memoryview(ZEROS)[:length])
                os.lseek(fd, length, os.SEEK_CUR)
                continue
            dummy, data = next(stored)
            if len(data) != length or hashlib.sha256(data).hexdigest() != digest:
                raise _corrupt(store, record, digest)
            whole.update(data)
            write_all(fd, data)
    finally:
        digest = whole.hexdigest()
    if digest != record.get('os_hash_value'):
        raise StoreError("image %s in store '%s' does not match its sha512: its slice list is damaged; export from another store"
                         % (record['id'], store.name))


def _file_sha512(path):
    whole = hashlib.sha512()
    with open(path, 'rb', buffering=0) as handle:
        buf = bytearray(len(ZEROS))
        while True:
            count = handle.readinto(buf)
            if not count:
                return whole.hexdigest()
            whole.update(memoryview(buf)[:count])


def convert(source, source_format, dest, output_format):
    qemu_source = QEMU_FORMATS.get(source_format)
    if qemu_source is None:
        raise ImageError("an image in %s format cannot be converted to %s: export it with format: original" % (source_format, output_format))
    # -f is explicit so that qemu-img never probes (CVE-2024-32498); the inspector vetted the image at import.
    command = ['qemu-img', 'convert', '-q', '-f', qemu_source, '-O', output_format, source, dest]
    if output_format == 'raw':
        command[2:2] = ['-S', '4k']
    try:
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise ImageError('qemu-img is needed to convert images (%s): install qemu-utils' % exc)
    if process.returncode != 0:
        raise ImageError('qemu-img convert failed: %s' % process.stderr.decode('utf-8', 'replace').strip())


class Export:
    """The export of one image to ``dest``. A symlink at ``dest`` is never followed: the export replaces the link itself
    (one rename), its target is neither written nor chmod-ed; ``replaced_symlink`` says where it pointed."""

    def __init__(self, catalog, view, store_name, dest, output_format='original', mode=None, verify=False):
        if not os.path.isabs(dest):
            raise InvalidArgument("dest '%s' is relative: give an absolute path on the host" % dest)
        check_file_path(dest, 'dest', follow=False)
        self.view = view
        self.store = catalog.store(store_name)
        if store_name in view.deactivated_stores():
            raise ImageError("image '%s' (id %s) is deactivated: re-enable it with enabled: true (vmimages.multistore.image) before "
                             "exporting it" % (view.reference().get('name'), view.id))
        if store_name not in view.active_stores():
            raise ImageError("image '%s' (id %s) is not active in store '%s' (active in: %s)"
                             % (view.reference().get('name'), view.id, store_name, ', '.join(view.active_stores()) or 'none'))
        self.record = view.copies[store_name]
        self.dest = dest
        self.output_format = self.record['disk_format'] if output_format in (None, 'original') else output_format
        self.mode = mode
        self.verify = verify
        self.method = None  # how run() materialized the file: 'reflink' or 'copy'
        self.removed_temps = []  # temporary files of killed exports of dest that run() removed
        directory = os.path.dirname(dest)
        if not os.path.isdir(directory):
            raise InvalidArgument('the directory of dest %s does not exist: create it first' % dest)
        if os.path.isdir(dest) and not os.path.islink(dest):
            raise InvalidArgument('dest %s is a directory: give the path of the file to write' % dest)
        self.symlink_target = os.readlink(dest) if os.path.islink(dest) else None
        self.replaced_symlink = None
        if self.symlink_target is None and os.path.lexists(dest) and not stat_is_file(os.lstat(dest)):
            raise InvalidArgument('dest %s exists and is not a regular file (a device, socket or fifo): give the path of a '
                                  'file to write' % dest)

    def needs_export(self):
        return not is_up_to_date(self.dest, self.record, self.output_format)

    def needs_chmod(self):
        if self.mode is None or self.symlink_target is not None or not os.path.lexists(self.dest):
            return False
        return os.lstat(self.dest).st_mode & 0o7777 != self.mode

    def chmod(self):
        fd = os.open(self.dest, os.O_RDONLY | os.O_NOFOLLOW)  # a link put there meanwhile fails (ELOOP), it is not followed
        try:
            os.fchmod(fd, self.mode)
        finally:
            os.close(fd)

    def run(self):
        slice_list = self.store.backend.read_slice_list(self.view.id)
        self.removed_temps = remove_dead_temps(self.dest)
        raw = export_temp_name(self.dest)
        converted = None
        try:
            self.method = write_raw(self.store, self.record, slice_list, raw, self.verify)
            final = raw
            if self.output_format != self.record['disk_format'] and not (
                    self.output_format == 'raw' and QEMU_FORMATS.get(self.record['disk_format']) == 'raw'):
                converted = export_temp_name(self.dest)
                convert(raw, self.record['disk_format'], converted, self.output_format)
                self.method = 'copy'  # qemu-img wrote the converted bytes
                remove_file(raw)
                final = converted
            if self.mode is not None:
                os.chmod(final, self.mode)
            os.rename(final, self.dest)  # replaces a symlink at dest, never its target
            fsync_dir(os.path.dirname(self.dest))
            self.replaced_symlink = self.symlink_target
        except BaseException:
            remove_file(raw)
            if converted:
                remove_file(converted)
            raise
        try:
            os.setxattr(self.dest, STAMP_XATTR, _stamp(self.record, self.output_format, os.lstat(self.dest)), follow_symlinks=False)
        except OSError:
            pass  # filesystem without user xattrs: the next run exports again, which is correct, only slower

    def predicted(self):
        """What describe() will say once the export ran (for check mode)."""
        info = self.describe()
        info['up_to_date'] = True
        if self.mode is not None:
            info['mode'] = '%04o' % self.mode
        if self.needs_export():
            info.pop('allocated', None)
            info['size'] = self.record['size'] if self.output_format == self.record['disk_format'] else None
            info['replaced_symlink'] = self.symlink_target
        return info

    def describe(self):
        info = {'dest': self.dest, 'id': self.view.id, 'name': self.record.get('name'), 'store': self.store.name,
                'format': self.output_format, 'os_hash_value': self.record.get('os_hash_value'),
                'up_to_date': not self.needs_export(), 'method': self.method, 'replaced_symlink': self.replaced_symlink}
        if os.path.lexists(self.dest) and stat_is_file(os.lstat(self.dest)):
            stat = os.lstat(self.dest)
            info['mode'] = '%04o' % (stat.st_mode & 0o7777)
            info['size'] = stat.st_size
            info['allocated'] = stat.st_blocks * 512
        return info
