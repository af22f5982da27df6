# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming disk image format inspector.

The import pipeline feeds every chunk of an image stream to a FormatInspector. The inspector keeps a
bounded copy of the first HEADER_BYTES, a rolling copy of the last 512 bytes (the footer of a fixed VHD)
and, for the few layouts whose metadata lives past the header (VHDX metadata, a far VMDK descriptor, a
VHD dynamic header), small captures of exactly those ranges. It never keeps or scans anything else, so
feeding a multi-GB stream costs a counter update per chunk once the header is complete.

From those bytes it detects the disk format (Glance disk_format names), its virtual size (as qemu counts it),
the image properties its headers state (FormatReport.properties, Glance names where Glance has them), and refuses
images that would make qemu open other files (backing files, external data files, VMDK extents,
differencing parents: the CVE-2024-32498 class) or that use features it does not know. A raw image's MBR or GPT
must be sane (partition_tables.py), a qcow2 header must be one qemu opens (qcow2_limits.py), and a LUKS volume is
refused whatever is declared; check_declared() then refuses a file that is recognisably another format than the
declared one, an ISO declared raw included. tests/.../formats/test_oslo_differential.py holds these rules against
oslo.utils' format inspector, which Glance uses.

The on-disk layouts come from the public specifications (qcow2.txt of qemu, VMware Virtual Disk Format
1.1, Microsoft VHD and MS-VHDX specifications, ECMA-119, VirtualBox VDI and Parallels headers as qemu
reads them). The rules follow what qemu would do with the same bytes, because qemu is what later opens
the image.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import struct
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, UnsafeImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.partition_tables import inspect_partition_table
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.qcow2_limits import COMPRESSION_TYPES, check_qcow2_header


DISK_FORMATS = ('raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ploop', 'aki', 'ari', 'ami')
CONTAINER_FORMATS = ('bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed')

# Formats the inspector can report (a subset of DISK_FORMATS: aki/ari/ami are raw bytes).
DETECTED_FORMATS = ('raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ploop')

CVE = 'CVE-2024-32498'

_KIB = 1024
_MIB = 1024 * 1024

# Largest single range captured past the header (a VMDK descriptor is at most 1 MiB for qemu).
_MAX_CAPTURE = _MIB

# --- qcow2 (big-endian; docs/interop/qcow2.txt) ---
_QCOW_MAGIC = b'QFI\xfb'
_QCOW_V2 = struct.Struct('>4sIQIIQIIQQIIQ')        # 72 bytes
_QCOW_V3 = struct.Struct('>QQQII')                 # at 72: incompatible, compatible, autoclear, refcount_order, header_length
_QCOW_INCOMPAT = (          # bit 3 (compression type) is reported as details['compression_type']
    (0, 'dirty'),
    (1, 'corrupt'),
    (2, 'external_data_file'),
)
_QCOW_INCOMPAT_DATA_FILE = 1 << 2
_QCOW_INCOMPAT_EXTENDED_L2 = 1 << 4
_QCOW_INCOMPAT_KNOWN = 0x0f
_QED_MAGIC = b'QED\x00'

# --- vmdk (little-endian; VMware Virtual Disk Format 1.1) ---
_VMDK4_MAGIC = b'KDMV'
_VMDK3_MAGIC = b'COWD'
_VMDK_HEADER = struct.Struct('<4sIIQQQQIQQQ')      # 72 bytes
_VMDK_GD_AT_END = 0xffffffffffffffff
_VMDK_CREATE_TYPES = ('monolithicsparse', 'streamoptimized')
_VMDK_EXTENT_RE = re.compile(r'^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?$', re.IGNORECASE)
_VMDK_FIELD_RE = re.compile(r'^[A-Za-z][A-Za-z0-9_.\-]*$')
_VMDK_EXTENT_ACCESS = ('rw', 'rdonly', 'noaccess')
_VMDK_DESC_SCAN = 20 * 512                         # what qemu reads at offset 512 to find parentFileNameHint
# Glance's vmware_disktype for the createTypes the inspector accepts (monolithicFlat/vmfs, Glance's
# 'preallocated', keep their data in other files and are refused).
_VMWARE_DISKTYPES = {'monolithicsparse': 'sparse', 'streamoptimized': 'streamOptimized'}
# ddb.adapterType as VMware and qemu-img write it (lower-cased) -> Glance's vmware_adaptertype
_VMWARE_ADAPTERTYPES = {'ide': 'ide', 'lsilogic': 'lsiLogic', 'buslogic': 'busLogic', 'lsisas1068': 'lsiLogicsas',
                        'lsilogicsas': 'lsiLogicsas', 'pvscsi': 'paraVirtual', 'paravirtual': 'paraVirtual'}

# --- vdi (little-endian; VirtualBox) ---
_VDI_SIGNATURE = struct.pack('<I', 0xbeda107f)
_VDI_TYPES = {1: 'dynamic', 2: 'fixed', 3: 'undo', 4: 'differencing'}

# --- vhd (big-endian; Microsoft Virtual Hard Disk Image Format) ---
_VHD_COOKIE = b'conectix'
_VHD_FOOTER = struct.Struct('>IIQI4sIIQQHBBII')     # from offset 8, 60 bytes
_VHD_TYPES = {2: 'fixed', 3: 'dynamic', 4: 'differencing'}
_VHD_DYN_COOKIE = b'cxsparse'
# qemu (block/vpc.c) sizes a VHD by current_size when one of these wrote it (Hyper-V, qemu with force_size,
# Disk2vhd, XenConverter, XenServer) or when the CHS geometry is the maximum, and by CHS geometry otherwise.
_VHD_SIZE_CREATORS = (b'win ', b'qem2', b'd2v ', b'CTXS', b'tap\x00')
_VHD_MAX_GEOMETRY = 65535 * 16 * 255

# --- vhdx (little-endian; MS-VHDX) ---
_VHDX_MAGIC = b'vhdxfile'
_VHDX_HEADERS = (64 * _KIB, 128 * _KIB)
_VHDX_REGION_TABLE = 192 * _KIB
_VHDX_TABLE_SIZE = 64 * _KIB
_VHDX_MAX_ENTRIES = 2047


def _guid(text):
    return uuid.UUID(text).bytes_le


_VHDX_REGION_BAT = _guid('2DC27766-F623-4200-9D64-115E9BFD4A08')
_VHDX_REGION_METADATA = _guid('8B7CA206-4790-4B9A-B8FE-575F050F886E')
_VHDX_FILE_PARAMETERS = _guid('CAA16737-FA36-4D43-B3B6-33F0AA44E76B')
_VHDX_VIRTUAL_DISK_SIZE = _guid('2FA54224-CD1B-4876-B211-5DBED83BF4B8')
_VHDX_PAGE83 = _guid('BECA12AB-B2E6-4523-93EF-C309E000C746')
_VHDX_LOGICAL_SECTOR = _guid('8141BF1D-A96F-4709-BA47-F233A8FAAB5F')
_VHDX_PHYSICAL_SECTOR = _guid('CDA348C7-445D-4471-9CC9-E9885251C556')
_VHDX_PARENT_LOCATOR = _guid('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C')
_VHDX_KNOWN_ITEMS = (_VHDX_FILE_PARAMETERS, _VHDX_VIRTUAL_DISK_SIZE, _VHDX_PAGE83, _VHDX_LOGICAL_SECTOR,
                     _VHDX_PHYSICAL_SECTOR, _VHDX_PARENT_LOCATOR)

# --- iso 9660 / udf (ECMA-119, ECMA-167) ---
_ISO_SIGNATURE_OFFSETS = (0x8001, 0x8801, 0x9001)
_ISO_SIGNATURES = (b'CD001', b'NSR02', b'NSR03')

# --- LUKS (cryptsetup's on-disk format, versions 1 and 2): recognised to be refused, whatever is declared
_LUKS_MAGIC = b'LUKS\xba\xbe'

# --- ploop (Parallels, little-endian, as qemu block/parallels.c reads it) ---
_PLOOP_MAGICS = (b'WithoutFreeSpace', b'WithouFreSpacExt')
_PLOOP_HEADER = struct.Struct('<16sIIIIIQIIIQ')    # 64 bytes


def _unsafe(message):
    return UnsafeImageError(message)


def _printable(raw, limit=80):
    """A short, log-safe rendering of untrusted bytes or text."""
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode('ascii', 'replace')
    text = ''.join(c if 32 <= ord(c) < 127 else '?' for c in raw)
    if len(text) > limit:
        text = text[:limit] + '...'
    return text


class FormatReport(object):
    """What the inspector found: Glance disk format name, virtual size in bytes, details and image properties.

    properties holds str -> str image properties (Glance names where Glance has them, e.g. vmware_disktype)
    read from the headers; the operator's own properties take precedence over them.
    """

    def __init__(self, format, virtual_size, details=None, properties=None):  # pylint: disable=redefined-builtin
        self.format = format
        self.virtual_size = virtual_size
        self.details = details if details is not None else {}
        self.properties = properties if properties is not None else {}

    def to_dict(self):
        return {'format': self.format, 'virtual_size': self.virtual_size, 'details': dict(self.details),
                'properties': dict(self.properties)}

    def __repr__(self):
        return ('FormatReport(format=%r, virtual_size=%r, details=%r, properties=%r)'
                % (self.format, self.virtual_size, self.details, self.properties))


class FormatInspector(object):
    """Streaming detector of a disk image format.

    Call feed() with the chunks of the stream in order, optionally early_check() once header_complete is
    True, and finish() after the last chunk.
    """

    # 4 MiB: the ISO volume descriptors (0x8000-0x9800), any sane VMDK descriptor, the VHDX headers and
    # region table (192 KiB) and, for the layouts qemu and Hyper-V write, the VHDX metadata region too.
    HEADER_BYTES = 4 * _MIB
    # The last 512 bytes are the footer of a fixed VHD; a streamOptimized VMDK whose grain directory is at the
    # end keeps its authoritative header in a 1536-byte footer (marker, header, end-of-stream marker).
    TAIL_BYTES = 1536

    def __init__(self):
        self._header = bytearray()
        self._header_bytes = None      # immutable copy once the header is final
        self._tail = bytearray()
        self._size = 0
        self._eof = False
        self._planned = False
        self._replan = False
        self._mode = 'final'
        self._pending = []             # [key, offset, length, bytearray] ranges being captured past the header
        self._regions = {}             # key -> (offset, bytes) captured ranges
        self._missed = {}              # key -> reason the range could not be captured
        self._current = (None, 0)      # (memoryview, offset) of the chunk being fed, while planning
        self._early_format = None
        self._report = None

    # ------------------------------------------------------------------ streaming

    def feed(self, data):
        """Present the next chunk of the stream (bytes, bytearray or memoryview)."""
        if self._eof:
            raise ValueError('feed() called after finish()')
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast('B')
        length = len(view)
        if not length:
            return
        start = self._size
        end = start + length
        self._size = end
        if start < self.HEADER_BYTES:
            self._header += view[:self.HEADER_BYTES - start]
        if self._pending:
            self._capture(view, start)
        tail = self._tail
        if length >= self.TAIL_BYTES:
            tail[:] = view[length - self.TAIL_BYTES:]
        else:
            tail += view
            if len(tail) > 8 * self.TAIL_BYTES:
                del tail[:-self.TAIL_BYTES]
        if not self._planned and end >= self.HEADER_BYTES:
            self._planned = True
            self._current = (view, start)
            try:
                self._plan()
            finally:
                self._current = (None, 0)

    @property
    def header_complete(self):
        """True once HEADER_BYTES (or the end of the stream) were seen."""
        return self._eof or len(self._header) >= self.HEADER_BYTES

    @property
    def bytes_seen(self):
        return self._size

    def early_check(self):
        """Detect the format from the header and refuse unsafe images before the rest is streamed.

        Returns the detected format name, or None when the header is not complete yet. The answer is
        provisional for 'raw': a fixed VHD is only recognised by its footer, at finish().
        Raises UnsafeImageError (or FormatError for ambiguous or corrupt headers).
        """
        if not self.header_complete:
            return None
        if self._early_format is None:
            fmt, _size, _details = self._analyse('early')
            self._early_format = fmt
        return self._early_format

    def finish(self):
        """Return the FormatReport of the complete stream; raise UnsafeImageError or FormatError."""
        if self._report is not None:
            return self._report
        self._eof = True
        if not self._planned:
            self._planned = True
            self._plan()
        if not self._size:
            raise FormatError('the image is empty (0 bytes): check the source URL or file')
        fmt, virtual_size, details = self._analyse('final')
        details['stream_size'] = self._size
        self._report = FormatReport(fmt, virtual_size, details, image_properties(fmt, details))
        return self._report

    # ------------------------------------------------------------------ captures past the header

    def _capture(self, view, start):
        end = start + len(view)
        still = []
        completed = False
        for item in self._pending:
            key, offset, length, buf = item
            need = offset + len(buf)
            if start <= need < end:
                buf += view[need - start:min(offset + length, end) - start]
            if len(buf) >= length:
                self._regions[key] = (offset, bytes(buf))
                completed = True
            else:
                still.append(item)
        self._pending = still
        if completed:
            self._current = (view, start)
            try:
                self._plan()
            finally:
                self._current = (None, 0)

    def _want(self, key, offset, length):
        """Arrange for [offset, offset+length) of the stream to be captured under key."""
        if key in self._regions or key in self._missed or any(item[0] == key for item in self._pending):
            return
        end = offset + length
        if length > _MAX_CAPTURE:
            self._missed[key] = 'it is %d bytes long (limit %d)' % (length, _MAX_CAPTURE)
            return
        # Whatever part was already streamed comes from the header, the chunk being fed or an earlier capture.
        buf = bytearray()
        pos = offset
        seen = min(end, self._size)
        view, view_start = self._current
        while pos < seen:
            piece = None
            if pos < len(self._header):
                piece = self._header[pos:min(seen, len(self._header))]
            elif view is not None and view_start <= pos < view_start + len(view):
                piece = view[pos - view_start:seen - view_start]
            else:
                for region_offset, region_data in self._regions.values():
                    if region_offset <= pos < region_offset + len(region_data):
                        piece = region_data[pos - region_offset:min(seen, region_offset + len(region_data)) - region_offset]
                        break
            if not piece:
                self._missed[key] = 'it lies before the metadata that points to it'
                return
            buf += piece
            pos += len(piece)
        if pos >= end:
            self._regions[key] = (offset, bytes(buf))
            self._replan = True
        elif not self._eof:
            self._pending.append([key, offset, length, buf])

    def _plan(self):
        """Run the parser in planning mode until it asks for no new range."""
        self._replan = True
        while self._replan:
            self._replan = False
            try:
                self._analyse('plan')
            except FormatError:
                pass

    def _need(self, key, offset, length, what):
        """Like _fetch, for fixed header fields every mode needs: raises FormatError instead of returning None."""
        data = self._fetch(key, offset, length, what)
        if data is None:
            raise FormatError('the image is truncated: its %s (bytes %d-%d) is incomplete' % (what, offset, offset + length))
        return data

    def _fetch(self, key, offset, length, what):
        """Bytes [offset, offset+length) from the header or a capture; None when not (yet) available."""
        end = offset + length
        if end <= len(self._header):
            return self._hdr()[offset:end]
        region = self._regions.get(key)
        if region is not None and region[0] == offset and len(region[1]) == length:
            return region[1]
        if self._mode == 'plan':
            self._want(key, offset, length)
            region = self._regions.get(key)
            if region is not None:
                return region[1]
            return None
        if self._mode == 'early':
            return None
        if end > self._size:
            raise FormatError('the image is truncated: its %s (bytes %d-%d) lies past the end of the stream (%d bytes)'
                              % (what, offset, end, self._size))
        reason = self._missed.get(key, 'it was not captured')
        raise FormatError('cannot inspect the %s at offset %d while streaming: %s; convert the image with qemu-img first'
                          % (what, offset, reason))

    def _hdr(self):
        if self._header_bytes is None or len(self._header_bytes) != len(self._header):
            self._header_bytes = bytes(self._header)
        return self._header_bytes

    def _last_bytes(self, count):
        """The last count (<= TAIL_BYTES) bytes of the stream, or b'' when the stream is shorter."""
        if self._size < count:
            return b''
        return bytes(self._tail[-count:])

    # ------------------------------------------------------------------ detection

    def _candidates(self, head):
        found = []
        magic4 = head[:4]
        if magic4 == _QCOW_MAGIC:
            found.append('qcow2')
        if magic4 == _QED_MAGIC:
            found.append('qed')
        if magic4 in (_VMDK4_MAGIC, _VMDK3_MAGIC) or _is_vmdk_text(head):
            found.append('vmdk')
        if head[0x40:0x44] == _VDI_SIGNATURE:
            found.append('vdi')
        if head[:8] == _VHD_COOKIE or (self._mode == 'final' and self._last_bytes(512)[:8] == _VHD_COOKIE):
            found.append('vhd')
        if head[:8] == _VHDX_MAGIC:
            found.append('vhdx')
        if any(head[off:off + 5] in _ISO_SIGNATURES for off in _ISO_SIGNATURE_OFFSETS):
            found.append('iso')
        if head[:16] in _PLOOP_MAGICS:
            found.append('ploop')
        if head[:6] == _LUKS_MAGIC:
            found.append('luks')
        return found

    def _analyse(self, mode):
        self._mode = mode
        head = self._hdr()
        found = self._candidates(head)
        if len(found) > 1:
            raise FormatError('ambiguous image: the bytes match several disk formats (%s); qemu could read them '
                              'either way, so the image is refused. Convert it to a single format with qemu-img'
                              % ', '.join(found))
        fmt = found[0] if found else 'raw'
        parser = getattr(self, '_parse_' + fmt)
        problem = None
        try:
            virtual_size, details = parser(head)
        except (struct.error, ValueError, IndexError, OverflowError) as exc:
            problem = exc
        if problem is not None:
            raise FormatError('cannot parse the %s header: %s' % (fmt, problem))
        if mode == 'final' and virtual_size is None:
            raise FormatError('cannot determine the virtual size of the %s image' % fmt)
        return fmt, virtual_size, details

    # ------------------------------------------------------------------ raw / iso

    def _parse_raw(self, head):
        return (self._size if self._mode == 'final' else None), inspect_partition_table(head)

    def _parse_luks(self, head):
        version = struct.unpack_from('>H', head, 6)[0] if len(head) >= 8 else 0
        raise FormatError('the bytes are a LUKS%s encrypted volume, not a disk image: qemu cannot open it without its key '
                          'and no disk_format (raw included) describes it, so its contents cannot be checked. Import '
                          'the decrypted disk, or a qcow2 with built-in encryption (qemu-img convert -O qcow2 -o '
                          'encrypt.format=luks)' % (version if version in (1, 2) else ''))

    def _parse_iso(self, head):
        details = {'udf': False}
        sector = 16
        while sector < 32 and (sector + 1) * 2048 <= len(head):
            desc = head[sector * 2048:(sector + 1) * 2048]
            ident = desc[1:6]
            if ident in (b'NSR02', b'NSR03'):
                details['udf'] = True
            if ident == b'CD001' and desc[0] == 1 and 'volume_size' not in details:
                block_size = struct.unpack_from('<H', desc, 128)[0]
                blocks = struct.unpack_from('<I', desc, 80)[0]
                details['block_size'] = block_size
                details['volume_size'] = blocks * block_size
                details['volume_id'] = _printable(desc[40:72].rstrip(b' \x00'), 32)
            if ident == b'CD001' and desc[0] == 255:
                break
            sector += 1
        return (self._size if self._mode == 'final' else None), details

    # ------------------------------------------------------------------ qcow2

    def _parse_qcow2(self, head):
        base = self._need('qcow2_header', 0, _QCOW_V2.size, 'qcow2 header')
        (_magic, version, backing_offset, backing_size, cluster_bits, size, crypt_method, l1_size, l1_offset,
         rc_offset, rc_clusters, nb_snapshots, snap_offset) = _QCOW_V2.unpack(base)
        if backing_offset:
            name = ''
            if 0 < backing_size <= 1023 and backing_offset + backing_size <= len(head):
                name = ' %r' % _printable(head[backing_offset:backing_offset + backing_size])
            raise _unsafe('the qcow2 image has a backing file%s: qemu would open that file from the host when using '
                          'the image (%s). Flatten it first: qemu-img convert -O qcow2 IMAGE FLAT.qcow2' % (name, CVE))
        if version == 1:
            raise FormatError('the image is in the old qcow (version 1) format, which is not accepted: '
                              'convert it with qemu-img convert -O qcow2')
        if version not in (2, 3):
            raise FormatError('unsupported qcow2 version %d (qemu knows 2 and 3)' % version)
        incompatible = compatible = autoclear = 0
        refcount_order = 4
        header_length = 72
        compression_type = 0
        if version == 3:
            ext = self._need('qcow2_header_v3', 0, 104, 'qcow2 version 3 header')
            incompatible, compatible, autoclear, refcount_order, header_length = _QCOW_V3.unpack_from(ext, 72)
            if header_length < 104:
                raise FormatError('invalid qcow2 header length %d (at least 104 for version 3)' % header_length)
            if incompatible & _QCOW_INCOMPAT_DATA_FILE:
                raise _unsafe('the qcow2 image uses an external data file (incompatible feature bit 2): qemu would read '
                              'the guest data from another file named inside the image (%s). Convert it to a '
                              'self-contained image: qemu-img convert -O qcow2 IMAGE FLAT.qcow2' % CVE)
            if incompatible & _QCOW_INCOMPAT_EXTENDED_L2:
                raise FormatError('the qcow2 image uses extended L2 entries (incompatible feature bit 4, qemu 5.2 and '
                                  'later): Glance refuses them, as oslo.utils knows only bits 0-3, and older hypervisors '
                                  'cannot open them. Convert it: qemu-img convert -O qcow2 -o extended_l2=off')
            unknown = incompatible & ~_QCOW_INCOMPAT_KNOWN
            if unknown:
                bits = ', '.join(str(bit) for bit in range(64) if unknown >> bit & 1)
                raise _unsafe('the qcow2 image sets unknown incompatible feature bit(s) %s: their meaning cannot be '
                              'checked, so the image is refused (%s class). Convert it with a qemu-img that knows '
                              'them' % (bits, CVE))
            if header_length > 104:
                compression_type = self._need('qcow2_compression', 0, 105, 'qcow2 compression type')[104]
        check_qcow2_header({
            'cluster_bits': cluster_bits, 'size': size, 'crypt_method': crypt_method, 'l1_size': l1_size,
            'l1_table_offset': l1_offset, 'refcount_table_offset': rc_offset, 'refcount_table_clusters': rc_clusters,
            'nb_snapshots': nb_snapshots, 'snapshots_offset': snap_offset, 'incompatible_features': incompatible,
            'refcount_order': refcount_order, 'header_length': header_length, 'compression_type': compression_type})
        details = {
            'version': version,
            'cluster_bits': cluster_bits,
            'cluster_size': 1 << cluster_bits,
            'encrypted': crypt_method != 0,
            'encryption_method': crypt_method,
            'snapshots': nb_snapshots,
            'incompatible_features': incompatible,
            'compatible_features': compatible,
            'autoclear_features': autoclear,
            'refcount_bits': 1 << refcount_order,
            'header_length': header_length,
            'compression_type': COMPRESSION_TYPES[compression_type],
            'compression_type_id': compression_type,
        }
        for bit, name in _QCOW_INCOMPAT:
            details[name] = bool(incompatible >> bit & 1)
        return size // 512 * 512, details      # qemu counts whole 512-byte sectors

    def _parse_qed(self, _head):
        raise _unsafe('the image is in the QED format: it can name a backing file qemu would open (%s) and has no '
                      'Glance disk_format; convert it: qemu-img convert -f qed -O qcow2 IMAGE OUT.qcow2' % CVE)

    # ------------------------------------------------------------------ vmdk

    def _parse_vmdk(self, head):
        if head[:4] == _VMDK3_MAGIC:
            raise _unsafe('the VMDK uses the old version 3 (COWD) sparse layout, whose createType cannot be checked; '
                          'only monolithicSparse and streamOptimized VMDKs are accepted: convert it with qemu-img')
        if head[:4] != _VMDK4_MAGIC:
            raise _unsafe('the file is a plain VMDK descriptor: qemu would open the extent files it names on the host '
                          '(%s). Upload a single-file monolithicSparse or streamOptimized VMDK instead '
                          '(qemu-img convert -O vmdk -o subformat=streamOptimized)' % CVE)
        raw = self._need('vmdk_header', 0, _VMDK_HEADER.size + 8, 'VMDK header')
        (_magic, version, flags, capacity, grain, desc_sectors, desc_count, gtes_per_gt, _rgd, gd_offset,
         overhead) = _VMDK_HEADER.unpack_from(raw)
        compress = struct.unpack_from('<H', raw, 77)[0]
        if version not in (1, 2, 3):
            raise FormatError('unsupported VMDK sparse header version %d' % version)
        if not capacity:
            raise _unsafe('the VMDK header has a capacity of 0: qemu would then read the extents named in its '
                          'descriptor, which can be other host files (%s)' % CVE)
        if not desc_sectors or not desc_count:
            raise _unsafe('the VMDK has no embedded descriptor, so its createType and extents cannot be checked')
        if desc_sectors != 1:
            # qemu looks for parentFileNameHint at offset 512 whatever the header says: accept only that layout
            raise _unsafe('the VMDK descriptor is at sector %d instead of sector 1, so it cannot be checked the way '
                          'qemu reads it' % desc_sectors)
        if gd_offset == _VMDK_GD_AT_END and self._mode == 'final':
            # qemu then takes every header field from the footer
            capacity = self._vmdk_footer_capacity()
        details = {
            'version': version,
            'flags': flags,
            'capacity_sectors': capacity,
            'grain_size': grain * 512,
            'gtes_per_gt': gtes_per_gt,
            'overhead_sectors': overhead,
            'compressed': compress != 0,
            'gd_at_end': gd_offset == _VMDK_GD_AT_END,
            'descriptor_offset': desc_sectors * 512,
        }
        # qemu reads the descriptor as a C string: its declared size does not bound what qemu reads, but the
        # first NUL does, and qemu's parent lookup reads 10 KiB. Parse at least that much, up to the first NUL.
        desc_size = min(max(desc_count * 512, _VMDK_DESC_SCAN), _MAX_CAPTURE)
        if self._eof:
            desc_size = max(0, min(desc_size, self._size - 512))
        desc = self._fetch('vmdk_descriptor', 512, desc_size, 'VMDK descriptor')
        if desc is not None:
            details.update(_check_vmdk_descriptor(desc))
        return capacity * 512, details

    def _vmdk_footer_capacity(self):
        if self._size % 512 or self._size < 512 + 1536:
            raise FormatError('invalid streamOptimized VMDK: its grain directory is at the end but the stream (%d '
                              'bytes) cannot hold a sector-aligned footer' % self._size)
        footer = self._last_bytes(1536)
        _val, marker_size, marker_type = struct.unpack_from('<QII', footer, 0)
        eos_val, eos_size, eos_type = struct.unpack_from('<QII', footer, 1024)
        if (footer[512:516] != _VMDK4_MAGIC or marker_size != 0 or marker_type != 3 or eos_val != 0
                or eos_size != 0 or eos_type != 0):
            raise FormatError('invalid streamOptimized VMDK: its grain directory is at the end but the footer is '
                              'missing or invalid (qemu refuses it too)')
        version, capacity = struct.unpack_from('<I4xQ', footer, 516)
        if version not in (1, 2, 3):
            raise FormatError('unsupported VMDK footer header version %d' % version)
        if not capacity:
            raise FormatError('invalid streamOptimized VMDK: its footer gives a capacity of 0')
        return capacity

    # ------------------------------------------------------------------ vdi

    def _parse_vdi(self, _head):
        raw = self._need('vdi_header', 0, 0x1c8, 'VDI header')
        version, header_size, image_type, image_flags = struct.unpack_from('<IIII', raw, 0x44)
        offset_bmap, offset_data = struct.unpack_from('<II', raw, 0x154)
        sector_size = struct.unpack_from('<I', raw, 0x168)[0]
        disk_size, block_size, block_extra, blocks, allocated = struct.unpack_from('<QIIII', raw, 0x170)
        uuid_link = raw[0x1a8:0x1b8]
        uuid_parent = raw[0x1b8:0x1c8]
        if image_type in (3, 4) or uuid_link.strip(b'\x00') or uuid_parent.strip(b'\x00'):
            raise _unsafe('the VDI is a differencing (%s) image that depends on a parent image file (%s); '
                          'merge it first: qemu-img convert or VBoxManage clonemedium'
                          % (_VDI_TYPES.get(image_type, 'type %d' % image_type), CVE))
        if version >> 16 != 1:
            raise FormatError('unsupported VDI header version %d.%d' % (version >> 16, version & 0xffff))
        if image_type not in _VDI_TYPES:
            raise FormatError('unknown VDI image type %d' % image_type)
        details = {
            'version': '%d.%d' % (version >> 16, version & 0xffff),
            'header_size': header_size,
            'image_type': _VDI_TYPES[image_type],
            'image_flags': image_flags,
            'offset_bmap': offset_bmap,
            'offset_data': offset_data,
            'sector_size': sector_size,
            'block_size': block_size,
            'block_extra': block_extra,
            'blocks': blocks,
            'blocks_allocated': allocated,
        }
        # qemu rounds an odd size (VBoxManage convertfromraw writes them) up to a whole sector
        return (disk_size + 511) // 512 * 512, details

    # ------------------------------------------------------------------ vhd

    def _parse_vhd(self, head):
        at_start = head[:8] == _VHD_COOKIE
        if at_start:
            footer = self._need('vhd_footer', 0, 512, 'VHD footer copy')
        else:
            footer = self._last_bytes(512)
        (features, version, data_offset, _timestamp, creator_app, _creator_ver, _creator_os, original_size,
         current_size, cylinders, heads, sectors, disk_type, checksum) = _VHD_FOOTER.unpack_from(footer, 8)
        if disk_type == 4:
            raise _unsafe('the VHD is a differencing disk that depends on a parent image file (%s); merge it into a '
                          'standalone (fixed or dynamic) VHD first' % CVE)
        if disk_type not in _VHD_TYPES:
            raise FormatError('unknown VHD disk type %d' % disk_type)
        computed = ~sum(footer[:64] + b'\x00\x00\x00\x00' + footer[68:]) & 0xffffffff
        details = {
            'subformat': _VHD_TYPES[disk_type],
            'disk_type': disk_type,
            'features': features,
            'version': '%d.%d' % (version >> 16, version & 0xffff),
            'creator_app': _printable(creator_app.rstrip(b'\x00 '), 8),
            'original_size': original_size,
            'current_size': current_size,
            'geometry': {'cylinders': cylinders, 'heads': heads, 'sectors': sectors},
            'chs_size': cylinders * heads * sectors * 512,
            'checksum_ok': computed == checksum,
        }
        if at_start:
            if disk_type != 3:
                raise FormatError('invalid VHD: the footer copy at offset 0 describes a %s disk' % _VHD_TYPES[disk_type])
            dyn = self._fetch('vhd_dynamic_header', data_offset, 1024, 'VHD dynamic disk header')
            if dyn is not None:
                if dyn[:8] != _VHD_DYN_COOKIE:
                    raise FormatError('invalid VHD: no dynamic disk header (cxsparse) at offset %d' % data_offset)
                locators = [struct.unpack_from('>I', dyn, 576 + 24 * idx)[0] for idx in range(8)]
                if dyn[40:56].strip(b'\x00') or any(locators):
                    raise _unsafe('the VHD dynamic header names a parent image (parent UUID or parent locators), '
                                  'so it is a differencing disk in disguise (%s); merge it first' % CVE)
                details['block_size'] = struct.unpack_from('>I', dyn, 32)[0]
        else:
            if disk_type != 2:
                raise FormatError('invalid VHD: a %s disk must start with a copy of its footer' % _VHD_TYPES[disk_type])
            if self._mode == 'final' and current_size > self._size - 512:
                raise FormatError('the fixed VHD is truncated: its footer says %d bytes but only %d bytes of data '
                                  'precede it' % (current_size, self._size - 512))
            details['data_size'] = self._size - 512
        return _vhd_virtual_size(creator_app, current_size, details['chs_size']), details

    # ------------------------------------------------------------------ vhdx

    def _parse_vhdx(self, _head):
        details = {}
        seqs = []
        for offset in _VHDX_HEADERS:
            hdr = self._fetch('vhdx_header_%d' % offset, offset, 80, 'VHDX header')
            if hdr is not None and hdr[:4] == b'head':
                seq = struct.unpack_from('<Q', hdr, 8)[0]
                seqs.append((seq, bool(hdr[48:64].strip(b'\x00')), struct.unpack_from('<H', hdr, 66)[0]))
        if self._mode == 'final' and not seqs:
            raise FormatError('invalid VHDX: no header with a "head" signature at 64 KiB or 128 KiB')
        if seqs:
            seqs.sort()
            details['log_pending'] = seqs[-1][1]
            details['version'] = seqs[-1][2]

        table = self._fetch('vhdx_region_table', _VHDX_REGION_TABLE, _VHDX_TABLE_SIZE, 'VHDX region table')
        if table is None:
            return None, details
        signature, _checksum, count = struct.unpack_from('<4sII', table)
        if signature != b'regi':
            raise FormatError('invalid VHDX: no region table signature at 192 KiB')
        if count > _VHDX_MAX_ENTRIES:
            raise FormatError('invalid VHDX: %d region table entries (limit %d)' % (count, _VHDX_MAX_ENTRIES))
        meta = None
        for idx in range(count):
            entry = table[16 + 32 * idx:48 + 32 * idx]
            guid = entry[:16]
            offset, length, required = struct.unpack_from('<QII', entry, 16)
            if guid == _VHDX_REGION_METADATA:
                meta = (offset, length)
            elif guid == _VHDX_REGION_BAT:
                details['bat_offset'] = offset
            elif required & 1:
                raise FormatError('the VHDX has an unknown required region %s; it cannot be checked' % uuid.UUID(bytes_le=guid))
        if meta is None:
            raise FormatError('invalid VHDX: the region table has no metadata region')
        meta_offset, meta_length = meta
        details['metadata_offset'] = meta_offset
        if meta_length < 32:
            raise FormatError('invalid VHDX: metadata region of %d bytes' % meta_length)
        table_length = min(meta_length, _VHDX_TABLE_SIZE)
        mtable = self._fetch('vhdx_metadata_table', meta_offset, table_length, 'VHDX metadata table')
        if mtable is None:
            return None, details
        signature, _reserved, count = struct.unpack_from('<8sHH', mtable)
        if signature != b'metadata':
            raise FormatError('invalid VHDX: no metadata table signature at offset %d' % meta_offset)
        if count > _VHDX_MAX_ENTRIES or 32 + 32 * count > table_length:
            raise FormatError('invalid VHDX: %d metadata entries do not fit the metadata table' % count)
        items = {}
        for idx in range(count):
            entry = mtable[32 + 32 * idx:64 + 32 * idx]
            guid = entry[:16]
            offset, length, flags = struct.unpack_from('<III', entry, 16)
            if guid == _VHDX_PARENT_LOCATOR:
                raise _unsafe('the VHDX has a parent locator: it is a differencing disk that depends on a parent '
                              'image file (%s); merge it first' % CVE)
            if guid not in _VHDX_KNOWN_ITEMS and flags & 4:
                raise FormatError('the VHDX has an unknown required metadata item %s; it cannot be checked'
                                  % uuid.UUID(bytes_le=guid))
            items[guid] = (meta_offset + offset, length)

        def item(guid, size, name, key):
            if guid not in items:
                raise FormatError('invalid VHDX: the metadata table has no %s item' % name)
            offset, length = items[guid]
            if length < size:
                raise FormatError('invalid VHDX: the %s item is %d bytes long' % (name, length))
            return self._fetch(key, offset, size, 'VHDX %s' % name)

        params = item(_VHDX_FILE_PARAMETERS, 8, 'File Parameters', 'vhdx_file_parameters')
        vds = item(_VHDX_VIRTUAL_DISK_SIZE, 8, 'Virtual Disk Size', 'vhdx_virtual_disk_size')
        sector = None
        if _VHDX_LOGICAL_SECTOR in items:
            sector = item(_VHDX_LOGICAL_SECTOR, 4, 'Logical Sector Size', 'vhdx_logical_sector_size')
        if params is not None:
            block_size, param_flags = struct.unpack('<II', params)
            if param_flags & 2:
                raise _unsafe('the VHDX file parameters say HasParent: it is a differencing disk that depends on a '
                              'parent image file (%s); merge it first' % CVE)
            details['block_size'] = block_size
            details['leave_blocks_allocated'] = bool(param_flags & 1)
        if sector is not None:
            details['logical_sector_size'] = struct.unpack('<I', sector)[0]
        if vds is None:
            return None, details
        return struct.unpack('<Q', vds)[0] // 512 * 512, details      # qemu counts whole 512-byte sectors

    # ------------------------------------------------------------------ ploop

    def _parse_ploop(self, _head):
        raw = self._need('ploop_header', 0, _PLOOP_HEADER.size, 'ploop header')
        (magic, version, heads, cylinders, tracks, bat_entries, nb_sectors, inuse, data_off, flags,
         ext_off) = _PLOOP_HEADER.unpack(raw)
        if version != 2:
            raise FormatError('unsupported ploop (Parallels) header version %d' % version)
        if magic == _PLOOP_MAGICS[0]:
            nb_sectors &= 0xffffffff
        details = {
            'magic': magic.decode('ascii'),
            'version': version,
            'heads': heads,
            'cylinders': cylinders,
            'cluster_size': tracks * 512,
            'bat_entries': bat_entries,
            'in_use': inuse != 0,
            'data_offset_sectors': data_off,
            'flags': flags,
            'extension_offset': ext_off,
        }
        return nb_sectors * 512, details


def _vhd_virtual_size(creator_app, current_size, chs_size):
    """The size qemu gives a VHD: Virtual PC and qemu itself size it by CHS geometry, the others by current_size."""
    if creator_app in _VHD_SIZE_CREATORS or chs_size == _VHD_MAX_GEOMETRY * 512:
        return current_size // 512 * 512
    return chs_size


def image_properties(fmt, details):
    """Image properties (str -> str) for a format's details, with Glance's names where Glance has them."""
    props = {}
    if fmt == 'qcow2':
        version = details['version']
        props['qcow2_version'] = str(version)
        props['qcow2_compat'] = '1.1' if version == 3 else '0.10'
        props['qcow2_cluster_size'] = str(details['cluster_size'])
        props['qcow2_encrypted'] = 'true' if details['encrypted'] else 'false'
        if version == 3:
            props['qcow2_compression_type'] = details['compression_type']
    elif fmt == 'vmdk':
        disktype = _VMWARE_DISKTYPES.get(details.get('create_type', '').lower())
        if disktype:
            props['vmware_disktype'] = disktype
        adapter = _VMWARE_ADAPTERTYPES.get(details.get('adapter_type', '').lower())
        if adapter:
            props['vmware_adaptertype'] = adapter
    elif fmt == 'vhd':
        props['vhd_disk_type'] = details['subformat']
    return props


def _is_vmdk_text(head):
    """True for a plain-text VMDK descriptor, as qemu's vmdk probe sees one."""
    if head.startswith(b'# Disk DescriptorFile'):
        return True
    lines = head[:2048].split(b'\n')
    for idx, line in enumerate(lines):
        if line.startswith(b'#'):
            continue
        line = line.lstrip(b' ')
        if not line:
            continue
        complete = idx < len(lines) - 1
        return complete and line.rstrip(b'\r') in (b'version=1', b'version=2', b'version=3')
    return False


def _check_vmdk_descriptor(raw):
    """Parse an embedded VMDK descriptor like qemu does and refuse anything that is not a single local extent."""
    raw = raw.split(b'\x00', 1)[0]     # qemu reads the descriptor as a C string
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        text = None
    if text is None:
        raise _unsafe('the VMDK descriptor is not UTF-8 text, so it cannot be checked')
    # qemu looks these keys up with strstr() anywhere in the text, comments included.
    if 'parentfilenamehint' in text.lower():
        raise _unsafe('the VMDK descriptor names a parent (parentFileNameHint): qemu would open that file as a backing '
                      'image (%s). Flatten it first: qemu-img convert -O vmdk IMAGE FLAT.vmdk' % CVE)
    if text.count('createType') > 1:
        raise _unsafe('the VMDK descriptor mentions createType more than once, so it cannot be checked')
    fields = {}
    extents = []
    for line in text.split('\n'):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        first = line.split(None, 1)[0].lower()
        if first in _VMDK_EXTENT_ACCESS:
            match = _VMDK_EXTENT_RE.match(line)
            if not match:
                raise _unsafe('the VMDK descriptor has an extent line that cannot be checked: %r' % _printable(line))
            extents.append(match)
            continue
        key, sep, value = line.partition('=')
        key = key.strip()
        if sep and _VMDK_FIELD_RE.match(key):
            fields[key.lower()] = value.strip().strip('"')
            continue
        raise _unsafe('the VMDK descriptor has an unexpected line %r, so it cannot be checked' % _printable(line))
    create_type = fields.get('createtype')
    if create_type is None:
        raise _unsafe('the VMDK descriptor has no createType, so it cannot be checked')
    if create_type.lower() not in _VMDK_CREATE_TYPES:
        raise _unsafe('the VMDK createType is %r: only monolithicSparse and streamOptimized keep the data in the '
                      'image itself, other types make qemu open extent files on the host (%s). Convert it: '
                      'qemu-img convert -O vmdk -o subformat=streamOptimized' % (_printable(create_type, 40), CVE))
    if len(extents) != 1:
        raise _unsafe('the VMDK descriptor names %d extents; a monolithicSparse or streamOptimized image has exactly '
                      'one, stored in the image itself (%s)' % (len(extents), CVE))
    extent = extents[0]
    extent_type = extent.group(3).upper()
    name = extent.group(4)
    if extent_type != 'SPARSE' or name is None or extent.group(5) is not None:
        raise _unsafe('the VMDK extent %r is not the single SPARSE extent of the image itself (%s)'
                      % (_printable(extent.group(0)), CVE))
    if not name or '/' in name or '\\' in name or any(ord(c) < 32 for c in name):
        raise _unsafe('the VMDK extent names the file %r: qemu would open it on the host (%s)' % (_printable(name), CVE))
    found = {
        'create_type': create_type,
        'extent': {'access': extent.group(1).upper(), 'sectors': int(extent.group(2)), 'type': extent_type,
                   'file': name},
        'cid': fields.get('cid'),
        'parent_cid': fields.get('parentcid'),
    }
    if 'ddb.adaptertype' in fields:
        found['adapter_type'] = _printable(fields['ddb.adaptertype'], 40)
    return found


def check_declared(declared_disk_format, report, converted=False):
    """Raise FormatError when the detected format does not satisfy the declared disk_format.

    A file that is recognisably another format is refused when declared raw, an ISO included (as Glance does since
    CVE-2024-32498's follow-ups). ``converted``: the bytes are qemu-img's raw output of an image that was vetted
    already; they are the guest's disk, which may well hold an ISO 9660 filesystem.
    """
    if declared_disk_format not in DISK_FORMATS:
        raise FormatError('unknown disk_format %r: use one of %s' % (declared_disk_format, ', '.join(DISK_FORMATS)))
    detected = report.format
    if declared_disk_format == detected:
        return
    if declared_disk_format in ('aki', 'ari', 'ami'):
        if detected == 'raw':
            return
        raise FormatError('the bytes are a %s image but disk_format is %s, which must be raw bytes: '
                          'convert the image to raw (qemu-img convert -O raw)' % (detected, declared_disk_format))
    if declared_disk_format == 'raw':
        if detected == 'iso':
            if converted:
                return
            raise FormatError('the bytes are an iso image (an ISO 9660 or UDF volume descriptor at 32 KiB) but disk_format '
                              'is raw: set disk_format: iso, so that it is attached as a CD-ROM')
        raise FormatError('the bytes are a %s image but disk_format is raw: set disk_format: %s, or convert the image'
                          % (detected, detected))
    if declared_disk_format == 'iso':
        raise FormatError('the bytes are a %s image but disk_format is iso: no ISO 9660 volume descriptor was found; '
                          'set disk_format: %s' % (detected, detected))
    raise FormatError('the bytes are a %s image but disk_format is %s: set disk_format: %s, or convert the image'
                      % (detected, declared_disk_format, detected))


def inspect_file(path, chunk_size=4 << 20):
    """Feed a whole file to a FormatInspector and return its FormatReport."""
    inspector = FormatInspector()
    with open(path, 'rb') as handle:
        while True:
            chunk = handle.read(chunk_size)
            if not chunk:
                break
            inspector.feed(chunk)
    return inspector.finish()
