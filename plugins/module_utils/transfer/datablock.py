# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Empty datablocks (HyperCX DATABLOCK images): an image made here instead of read from a ``src``.

The disk is a sparse temporary file: ``truncate`` for raw, then ``mkfs`` on that file (never on a
device) when a filesystem is asked for, and ``qemu-img convert`` to qcow2 (or ``qemu-img create`` for an
empty one). The result is imported like any local file: its holes are zero slices, which no store
keeps, so a 100 GiB empty raw datablock costs a few KiB in a file or object store and is a thin image in rbd.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import os
import shutil
import subprocess
import tempfile

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SourceError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import parse_size
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource

FILESYSTEMS = {'ext4': (['mkfs.ext4', '-q', '-F'], 'e2fsprogs'), 'xfs': (['mkfs.xfs', '-q', '-f'], 'xfsprogs')}
DATABLOCK_FORMATS = ('raw', 'qcow2')
# What a host's qemu-img and mkfs accept comfortably; a bigger disk is a typo more often than a wish.
MAX_SIZE = 64 * 1024 ** 4


class Datablock:
    """An empty disk of ``size`` bytes in ``disk_format``, optionally with a filesystem; validated at once."""

    def __init__(self, size, filesystem=None, disk_format=None):
        if size is None:
            raise InvalidArgument('an empty datablock needs size: (for example size: 10G)')
        self.size = parse_size(size, 'size')
        if self.size == 0:
            raise InvalidArgument('size %r is zero: a datablock needs at least one byte (for example size: 10G)' % (size,))
        if self.size > MAX_SIZE:
            raise InvalidArgument('size %r is more than 64 TiB: give the size of the disk, for example size: 10G' % (size,))
        if filesystem is not None and filesystem not in FILESYSTEMS:
            raise InvalidArgument("filesystem '%s' is not supported for datablocks: use %s" % (filesystem, ' or '.join(sorted(FILESYSTEMS))))
        self.filesystem = filesystem
        self.disk_format = disk_format or 'raw'
        if self.disk_format not in DATABLOCK_FORMATS:
            raise InvalidArgument("a datablock's disk_format is raw or qcow2, not %s" % self.disk_format)

    def describe(self):
        """What the record keeps, so that a re-run can tell whether the same datablock is asked for."""
        return {'size': self.size, 'filesystem': self.filesystem, 'disk_format': self.disk_format}

    @property
    def description(self):
        return 'an empty %s datablock of %d bytes%s' % (self.disk_format, self.size, ' with %s' % self.filesystem if self.filesystem else '')

    def make(self, work_dir=None):
        """A context manager yielding a LocalFileSource over the new disk (removed on exit)."""
        return _made_disk(self, work_dir)


def _run(command, package):
    try:
        process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        raise SourceError('%s is needed to make the datablock (%s): install %s on the host' % (command[0], exc.strerror or exc, package))
    if process.returncode != 0:
        raise SourceError('%s failed: %s; nothing was stored' % (' '.join(command[:2]), process.stderr.decode('utf-8', 'replace').strip()))


@contextlib.contextmanager
def _made_disk(block, work_dir):
    try:
        directory = tempfile.mkdtemp(prefix='vmimages-multistore-datablock-', dir=work_dir)
    except OSError as exc:
        raise SourceError('cannot make the datablock in %s: %s' % (work_dir or tempfile.gettempdir(), exc.strerror or exc))
    try:
        yield LocalFileSource(_make_disk(block, directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _make_disk(block, directory):
    """The path of the new disk in ``directory``: sparse raw, mkfs'd when asked, converted to (or created as) qcow2."""
    raw = os.path.join(directory, 'disk.raw')
    try:
        if block.filesystem or block.disk_format == 'raw':
            with open(raw, 'wb') as handle:
                handle.truncate(block.size)  # sparse: no block is allocated
    except OSError as exc:
        raise SourceError('cannot make the datablock in %s: %s' % (directory, exc.strerror or exc))
    if block.filesystem:
        command, package = FILESYSTEMS[block.filesystem]
        _run(command + [raw], package)
    if block.disk_format == 'raw':
        return raw
    qcow2 = os.path.join(directory, 'disk.qcow2')
    if block.filesystem:
        _run(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, qcow2], 'qemu-utils')
        os.unlink(raw)
    else:
        _run(['qemu-img', 'create', '-q', '-f', 'qcow2', qcow2, str(block.size)], 'qemu-utils')
    return qcow2
