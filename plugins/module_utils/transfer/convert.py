# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turning a source into raw bytes before an import (``convert_to: raw``, and every import into an rbd store).

RBD stores hold raw images (what Nova and Cinder clone from). A qcow2, vmdk, vdi, vhd or vhdx source
is read once in full: the inspector vets it (the same rules as any import: no backing file, no data
file, no foreign extents), the declared checksum is verified, and a source from
a URL is spooled to a sparse local file on the way. Then ``qemu-img convert`` runs with an explicit
``-f`` (never a probe) into a sparse raw file, and that raw file is what the stores receive. Raw and
ISO sources pass through untouched, with no extra pass and no temporary copy.

The image's record then describes the raw bytes (disk_format raw, their md5 and sha512) and keeps the
source's format, size and declared digest under ``source``, so a re-run with the source's checksum
is recognised.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import mmap
import os
import shutil
import tempfile

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, SourceError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import FormatInspector, check_declared
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import convert
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, is_zero
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import LocalFileSource

# Formats qemu-img turns into raw; everything else is stored as its bytes.
CONVERTIBLE = ('qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx')
RAW_LIKE = ('raw', 'iso', 'aki', 'ari', 'ami')


class SpoolSink:
    """A sparse local copy of a downloaded source, written by slice position (zero slices become holes)."""

    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write_at(self, index, data):
        view = memoryview(data)
        offset = index * SLICE_SIZE
        try:
            while len(view):
                written = os.pwrite(self.fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise SourceError('cannot spool the source to %s: %s' % (self.path, exc.strerror or exc))

    def close(self):
        os.close(self.fd)


def peek_format(path):
    """The format a local file's header shows (provisional 'raw' for a fixed VHD, caught later)."""
    inspector = FormatInspector()
    with open(path, 'rb') as handle:
        while not inspector.header_complete:
            block = handle.read(1 << 20)
            if not block:
                inspector.finish()
                break
            inspector.feed(block)
    return inspector.early_check()


class RawPreparation:
    """Context manager: ``source`` becomes a raw source; ``origin`` describes the converted original (or None)."""

    def __init__(self, source, checksum=None, declared=None, work_dir=None, observers=()):
        self.original = source
        self.observers = observers  # see every byte of the source when this pass reads it (a signature verifier)
        self.observed = False
        self.checksum = checksum
        self.declared = declared
        self.work_dir = work_dir
        self.directory = None
        self.source = source
        self.origin = None

    def __enter__(self):
        try:
            self._prepare()
        except BaseException:
            self._clean()
            raise
        return self

    def __exit__(self, *exc_info):
        self._clean()
        return False

    def _clean(self):
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def _passes_through(self):
        if self.declared in RAW_LIKE:
            return True
        if isinstance(self.original, LocalFileSource):
            return peek_format(self.original.path) not in CONVERTIBLE and self.declared not in CONVERTIBLE
        return False

    def _prepare(self):
        if self._passes_through():
            return
        try:
            self.directory = tempfile.mkdtemp(prefix='vmimages-multistore-convert-', dir=self.work_dir)
        except OSError as exc:
            raise SourceError('cannot create a work directory for the conversion in %s: %s' % (self.work_dir or tempfile.gettempdir(), exc))
        local = isinstance(self.original, LocalFileSource)
        spool = None if local else SpoolSink(os.path.join(self.directory, 'source'))
        size, report, digest = self._vet(spool)
        if spool:
            os.truncate(spool.path, size)  # trailing zero slices were holes never written
        if self.checksum and digest != self.checksum[1]:
            raise SourceError('checksum mismatch for %s: %s is %s, expected %s; nothing was stored'
                              % (self.original.description, self.checksum[0], digest, self.checksum[1]))
        if self.declared:
            check_declared(self.declared, report)
        fmt = report.format
        path = self.original.path if local else spool.path
        if fmt not in CONVERTIBLE:
            self.source = self.original if local else LocalFileSource(path)
            return
        raw = os.path.join(self.directory, 'raw')
        convert(path, fmt, raw, 'raw')
        if spool:
            os.unlink(spool.path)  # the raw file is all that is needed now
        self.source = LocalFileSource(raw)
        self.origin = {'disk_format': fmt, 'size': size, 'virtual_size': report.virtual_size, 'extra_digests': {},
                       'properties': dict(getattr(report, 'properties', None) or {})}
        if self.checksum:
            algorithm = self.checksum[0]
            if algorithm == 'md5':
                self.origin['checksum'] = digest
            elif algorithm == 'sha512':
                self.origin.update(os_hash_algo='sha512', os_hash_value=digest)
            else:
                self.origin['extra_digests'][algorithm] = digest

    def _vet(self, spool):
        """One pass over the source: the format inspector, the declared digest, and the spool copy of a download.

        Only what the conversion needs: the record's md5, sha512 and slice digests are those of the raw
        bytes, computed by the import that follows.
        """
        inspector = FormatInspector()
        hasher = hashlib.new(self.checksum[0]) if self.checksum else None
        buffer = mmap.mmap(-1, SLICE_SIZE)
        size = 0
        index = 0
        reader = self.original.open()
        try:
            while True:
                view = memoryview(buffer)
                count = reader.read_into(view)
                if not count:
                    break
                view = view[:count]
                inspector.feed(view)
                if inspector.header_complete and index == 0:
                    inspector.early_check()  # an unsafe header stops the pass at once
                if hasher is not None:
                    hasher.update(view)
                for observer in self.observers:
                    observer(view)
                if spool is not None and not is_zero(view):
                    spool.write_at(index, view)
                size += count
                index += 1
            reader.finish(size)
            self.observed = True
        finally:
            reader.close()
            if spool:
                spool.close()
        return size, inspector.finish(), hasher.hexdigest() if hasher is not None else None


def check_raw(report):
    """Raise when an image bound for a raw-only store (rbd) is not raw after all (a fixed VHD has only a footer)."""
    if report.format not in RAW_LIKE:
        raise FormatError('the image is %s, and rbd stores hold raw images: set disk_format: %s so that it is converted, '
                          'or convert it to raw first' % (report.format, report.format))
