# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The qcow2 header values qemu refuses to open (block/qcow2.c, qcow2_do_open and qcow2_validate_table).

An image qemu cannot open is useless in a store, and a header that makes qemu allocate a 32 MiB L1 table or
walk a 2^60-byte disk is how a crafted upload costs the hypervisor memory and time. Each rule names the
message qemu-img gives for the same bytes (checked against qemu-img 7.2 in the tests).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError

MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_L1_BYTES = 32 * 1024 * 1024             # QCOW_MAX_L1_SIZE
MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024  # QCOW_MAX_REFTABLE_SIZE
MAX_SNAPSHOTS = 65536                       # QCOW_MAX_SNAPSHOTS
SNAPSHOT_HEADER_BYTES = 40                  # sizeof(QCowSnapshotHeader)
CRYPT_METHODS = (0, 1, 2)                   # none, AES, LUKS
COMPRESSION_TYPES = {0: 'zlib', 1: 'zstd'}
_INCOMPAT_COMPRESSION = 1 << 3
_INT_MAX = (1 << 31) - 1
_INT64_MAX = (1 << 63) - 1


def _refuse(problem, qemu_says):
    return FormatError('qemu refuses to open this qcow2 image: %s (qemu-img: "%s"). The file is damaged or crafted; '
                       'recreate it with qemu-img convert -O qcow2' % (problem, qemu_says))


def _check_table(name, offset, entries, entry_size, max_bytes, cluster_size, unit='entries'):
    """qemu's qcow2_validate_table: a bounded table, cluster-aligned, whose end fits a signed 64-bit offset."""
    what = name[0].lower() + name[1:]
    if entries > max_bytes // entry_size:
        raise _refuse('its %s has %d %s, more than the %d qemu allows' % (what, entries, unit, max_bytes // entry_size),
                      '%s too large' % name)
    if _INT64_MAX - entries * entry_size < offset or offset % cluster_size:
        raise _refuse('its %s is at offset %d: not cluster-aligned, or ending past the largest offset qemu handles'
                      % (what, offset), '%s offset invalid' % name)


def check_qcow2_header(header):
    """Raise FormatError when qemu would refuse the parsed header (a dict of the qcow2 header fields)."""
    cluster_bits = header['cluster_bits']
    if not MIN_CLUSTER_BITS <= cluster_bits <= MAX_CLUSTER_BITS:
        raise _refuse('its cluster_bits is %d (qemu accepts %d to %d)' % (cluster_bits, MIN_CLUSTER_BITS, MAX_CLUSTER_BITS),
                      'Unsupported cluster size: 2^%d' % cluster_bits)
    cluster_size = 1 << cluster_bits
    incompatible = header['incompatible_features']
    if header['header_length'] > cluster_size:
        raise _refuse('its header is %d bytes, longer than a cluster' % header['header_length'],
                      'qcow2 header exceeds cluster size')
    compression = header['compression_type']
    if compression not in COMPRESSION_TYPES:
        raise _refuse('its compression type is %d' % compression, 'unknown compression type: %d' % compression)
    if bool(compression) != bool(incompatible & _INCOMPAT_COMPRESSION):
        raise _refuse('its compression type (%s) and incompatible feature bit 3 disagree' % COMPRESSION_TYPES[compression],
                      'Compression type incompatible feature bit must %sbe set' % ('' if compression else 'not '))
    if header['refcount_order'] > 6:
        raise _refuse('its refcount_order is %d (at most 6: 64-bit refcounts)' % header['refcount_order'],
                      'Reference count entry width too large; may not exceed 64 bits')
    if header['crypt_method'] not in CRYPT_METHODS:
        raise _refuse('its encryption method is %d' % header['crypt_method'],
                      'Unsupported encryption method %d' % header['crypt_method'])
    if not header['refcount_table_clusters']:
        raise _refuse('it has no reference count table', 'Image does not contain a reference count table')
    _check_table('Reference count table', header['refcount_table_offset'], header['refcount_table_clusters'], cluster_size,
                 MAX_REFCOUNT_TABLE_BYTES, cluster_size, unit='clusters')
    _check_table('Snapshot table', header['snapshots_offset'], header['nb_snapshots'], SNAPSHOT_HEADER_BYTES,
                 SNAPSHOT_HEADER_BYTES * MAX_SNAPSHOTS, cluster_size)
    _check_table('Active L1 table', header['l1_table_offset'], header['l1_size'], 8, MAX_L1_BYTES, cluster_size)
    # One L1 entry maps an L2 table of cluster_size / 8 entries, one cluster each (extended L2 is refused before).
    l1_span_bits = cluster_bits + cluster_bits - 3
    l1_needed = -(-header['size'] // (1 << l1_span_bits))
    if l1_needed > _INT_MAX:
        raise _refuse('its virtual size is %d bytes, beyond what %d-byte clusters can address' % (header['size'], cluster_size),
                      'Image is too big')
    if header['l1_size'] < l1_needed:
        raise _refuse('its L1 table has %d entries but its virtual size of %d bytes needs %d'
                      % (header['l1_size'], header['size'], l1_needed), 'L1 table is too small')
