# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""qcow2 headers qemu refuses to open are refused, with qemu's own words: each file is made by patching the
header of a real qemu-img image with struct, and the real qemu-img info must refuse it too."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, UnsafeImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import inspect_file

from image_bytes import patched, qemu_refusal, run

MIB = 1024 * 1024

# (id, {field offset: (struct format, value)}, what qemu-img says). Offsets are those of qemu's docs/interop/qcow2.txt.
HOSTILE = [
    ('cluster-bits-8', {20: ('>I', 8)}, 'Unsupported cluster size: 2^8'),
    ('cluster-bits-22', {20: ('>I', 22)}, 'Unsupported cluster size: 2^22'),
    ('image-too-big', {24: ('>Q', 1 << 62)}, 'Image is too big'),
    ('image-too-big-512-byte-clusters', {20: ('>I', 9), 24: ('>Q', 1 << 47)}, 'Image is too big'),
    ('encryption-method-3', {32: ('>I', 3)}, 'Unsupported encryption method 3'),
    ('l1-table-too-large', {36: ('>I', 32 * MIB // 8 + 1)}, 'Active L1 table too large'),
    ('l1-table-too-small', {24: ('>Q', 1 << 40)}, 'L1 table is too small'),
    ('l1-table-offset-unaligned', {40: ('>Q', 12345)}, 'Active L1 table offset invalid'),
    ('l1-table-offset-overflows', {40: ('>Q', (1 << 64) - 65536)}, 'Active L1 table offset invalid'),
    ('no-refcount-table', {56: ('>I', 0)}, 'Image does not contain a reference count table'),
    ('refcount-table-too-large', {56: ('>I', 8 * MIB // 65536 + 1)}, 'Reference count table too large'),
    ('refcount-table-offset-unaligned', {48: ('>Q', 77)}, 'Reference count table offset invalid'),
    ('too-many-snapshots', {60: ('>I', 65537)}, 'Snapshot table too large'),
    ('snapshot-table-offset-unaligned', {64: ('>Q', 3)}, 'Snapshot table offset invalid'),
    ('refcount-order-7', {96: ('>I', 7)}, 'Reference count entry width too large; may not exceed 64 bits'),
    ('header-longer-than-a-cluster', {100: ('>I', 70000)}, 'qcow2 header exceeds cluster size'),
    ('compression-bit-with-zlib', {72: ('>Q', 1 << 3)}, 'Compression type incompatible feature bit must not be set'),
]


@pytest.fixture(scope='module')
def qcow2(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('qcow2') / 'good.qcow2')
    run('qemu-img', 'create', '-q', '-f', 'qcow2', path, '64M')
    return path


@pytest.mark.parametrize('fields, qemu_says', [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_what_qemu_refuses_is_refused(tmp_path, qcow2, fields, qemu_says):
    path = patched(qcow2, str(tmp_path / 'hostile.qcow2'),
                   dict((offset, struct.pack(fmt, value)) for offset, (fmt, value) in fields.items()))
    assert qemu_says in qemu_refusal(path, 'qcow2')
    with pytest.raises(FormatError) as err:
        inspect_file(path)
    assert not isinstance(err.value, UnsafeImageError)
    message = str(err.value)
    assert message.startswith('qemu refuses to open this qcow2 image: ')
    assert '(qemu-img: "%s")' % qemu_says in message and 'recreate it with qemu-img convert -O qcow2' in message


@pytest.mark.parametrize('cluster_size, size', [('512', '1'), ('512', '128G'), ('64K', '256T'), ('2M', '1P')])
def test_what_qemu_opens_is_accepted(tmp_path, cluster_size, size):
    """The limits sit where qemu's are: large images qemu-img makes pass (512-byte clusters stop at 128 GiB: a full 32 MiB L1 table)."""
    path = str(tmp_path / 'big.qcow2')
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'cluster_size=%s' % cluster_size, path, size)
    assert qemu_refusal(path, 'qcow2') is None
    assert inspect_file(path).format == 'qcow2'
