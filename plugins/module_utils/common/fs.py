# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe file primitives: every visible file is complete (write temp, fsync, rename, fsync dir)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import json
import os
import struct
import uuid

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

# ioctl FICLONERANGE = _IOW(0x94, 13, struct file_clone_range {s64 src_fd; u64 src_offset, src_length, dest_offset}).
FICLONERANGE = 0x4020940d
# Why a clone can be refused while a plain write would work: another filesystem or mount (EXDEV), a filesystem
# without reflink such as ext4, tmpfs or xfs made with reflink=0 (EOPNOTSUPP), no such ioctl (ENOTTY, ENOSYS),
# an unaligned range (EINVAL: only a range that ends at the source's end may have a partial last block).
CLONE_REFUSED = frozenset(getattr(errno, name) for name in (
    'EXDEV', 'EOPNOTSUPP', 'ENOTSUP', 'ENOTTY', 'ENOSYS', 'EINVAL', 'EBADF', 'EPERM', 'ETXTBSY', 'EISDIR') if hasattr(errno, name))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path):
    """A sibling name for a temporary file that no other writer picks."""
    directory, base = os.path.split(path)
    return os.path.join(directory, '.%s.tmp-%s' % (base, uuid.uuid4().hex[:12]))


def write_all(fd, data):
    """os.write until every byte of ``data`` (bytes-like) is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def atomic_write(path, data, mode=0o644, sync=True):
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix."""
    tmp = temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        fsync_dir(os.path.dirname(path) or '.')


def dump_json(obj):
    return json.dumps(obj, indent=1, sort_keys=True).encode('utf-8') + b'\n'


def atomic_write_json(path, obj, mode=0o644):
    atomic_write(path, dump_json(obj), mode=mode)


def read_json(path, default=None):
    """The decoded JSON at ``path``, or ``default`` when the file does not exist."""
    try:
        with open(path, 'rb') as handle:
            return json.loads(handle.read().decode('utf-8'))
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return default
        raise


def makedirs(path, mode=0o755):
    try:
        os.makedirs(path, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(path):
            raise


def remove_file(path):
    """Unlink ``path``; a missing file is not an error (the goal is its absence)."""
    try:
        os.unlink(path)
        return True
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise


def clone_range(src_fd, src_offset, length, dest_fd, dest_offset):
    """Share ``length`` bytes of ``src_fd`` at ``dest_offset`` of ``dest_fd`` (reflink: xfs with reflink=1, btrfs).

    Returns None when done (O(1): no data is read or written, the blocks are shared copy-on-write), else the
    errno why the filesystem refused (see CLONE_REFUSED), for the caller to write the bytes instead. Other
    errors (ENOSPC, EIO) raise. FICLONERANGE rather than os.copy_file_range: copy_file_range silently copies
    where it cannot share blocks, so the caller could not tell (nor report) a clone from a copy.
    """
    if fcntl is None:
        return errno.ENOTTY
    try:
        fcntl.ioctl(dest_fd, FICLONERANGE, struct.pack('=qQQQ', src_fd, src_offset, length, dest_offset))
    except (IOError, OSError) as exc:
        if exc.errno in CLONE_REFUSED:
            return exc.errno
        raise
    return None
