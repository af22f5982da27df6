# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the streaming disk image format inspector, on real images made by qemu-img and mkisofs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import struct
import uuid

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, UnsafeImageError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import (
    CONTAINER_FORMATS,
    DISK_FORMATS,
    FormatInspector,
    FormatReport,
    check_declared,
    inspect_file,
)

from image_bytes import patched, qemu_refusal, read, run, write

MIB = 1024 * 1024

# (id, qemu-img -f name, Glance name, qemu-img -o options)
CASES = [
    ('raw', 'raw', 'raw', None),
    ('qcow2', 'qcow2', 'qcow2', None),
    ('qcow2-v2', 'qcow2', 'qcow2', 'compat=0.10'),
    ('vmdk-monolithicSparse', 'vmdk', 'vmdk', None),
    ('vmdk-streamOptimized', 'vmdk', 'vmdk', 'subformat=streamOptimized'),
    ('vdi-dynamic', 'vdi', 'vdi', None),
    ('vdi-static', 'vdi', 'vdi', 'static=on'),
    ('vhd-dynamic', 'vpc', 'vhd', None),
    ('vhd-fixed', 'vpc', 'vhd', 'subformat=fixed'),
    ('vhdx', 'vhdx', 'vhdx', 'block_size=1M'),
    ('ploop', 'parallels', 'ploop', None),
]
CASE_IDS = [case[0] for case in CASES]
GLANCE_NAME = dict((case[0], case[2]) for case in CASES)


def qemu_virtual_size(path, fmt):
    return json.loads(run('qemu-img', 'info', '--output=json', '-f', fmt, path))['virtual-size']


def feed_all(data, sizes, inspector=None):
    """Feed data in chunks whose sizes cycle through sizes; return (inspector, report)."""
    inspector = inspector or FormatInspector()
    view = memoryview(data)
    pos = idx = 0
    while pos < len(view):
        size = sizes[idx % len(sizes)]
        inspector.feed(view[pos:pos + size])
        pos += size
        idx += 1
    return inspector, inspector.finish()


def feed_bytewise(data):
    inspector = FormatInspector()
    view = memoryview(data)
    for pos in range(len(view)):
        inspector.feed(view[pos:pos + 1])
    return inspector.finish()


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp('images')


@pytest.fixture(scope='module')
def source(workdir):
    """A 2 MiB raw disk: 768 KiB of random data (so every format stores real clusters), then zeros."""
    path = str(workdir / 'source.raw')
    write(path, os.urandom(768 * 1024) + b'\x00' * (2 * MIB - 768 * 1024))
    return path


@pytest.fixture(scope='module')
def images(workdir, source):
    """Every CASES image converted from source by qemu-img."""
    made = {}
    for name, qfmt, _glance, options in CASES:
        path = str(workdir / ('%s.img' % name))
        args = ['qemu-img', 'convert', '-q', '-f', 'raw', '-O', qfmt]
        if options:
            args += ['-o', options]
        run(*(args + [source, path]))
        made[name] = path
    return made


@pytest.fixture(scope='module')
def iso_images(workdir):
    tree = workdir / 'isotree'
    tree.mkdir()
    (tree / 'hello.txt').write_text('hello\n')
    (tree / 'blob.bin').write_bytes(os.urandom(300 * 1024))
    made = {}
    made['genisoimage'] = str(workdir / 'gen.iso')
    run('genisoimage', '-quiet', '-V', 'TESTVOL', '-o', made['genisoimage'], str(tree))
    made['xorriso'] = str(workdir / 'xorriso.iso')
    run('xorriso', '-as', 'mkisofs', '-quiet', '-V', 'TESTVOL', '-o', made['xorriso'], str(tree))
    return made


@pytest.fixture(scope='module')
def qcow2(images):
    return images['qcow2']


@pytest.fixture(scope='module')
def vmdk(workdir):
    path = str(workdir / 'disk.vmdk')
    run('qemu-img', 'create', '-q', '-f', 'vmdk', path, '1M')
    return path


def vmdk_with_descriptor(src, dst, edit):
    """Copy a monolithicSparse VMDK with its embedded descriptor rewritten by edit(text) -> text."""
    data = bytearray(read(src))
    desc_sector, desc_count = struct.unpack_from('<QQ', data, 28)
    start, end = desc_sector * 512, (desc_sector + desc_count) * 512
    text = bytes(data[start:end]).split(b'\x00', 1)[0].decode('ascii')
    new = edit(text).encode('ascii')
    assert new != text.encode('ascii') and len(new) < end - start
    data[start:end] = new + b'\x00' * (end - start - len(new))
    return write(dst, bytes(data))


# ---------------------------------------------------------------- detection and virtual size

@pytest.mark.parametrize('name, qfmt, glance', [case[:3] for case in CASES], ids=CASE_IDS)
def test_detects_format_and_virtual_size(images, name, qfmt, glance):
    path = images[name]
    report = inspect_file(path)
    assert isinstance(report, FormatReport)
    assert report.format == glance
    assert report.virtual_size == qemu_virtual_size(path, qfmt)
    assert report.details['stream_size'] == os.path.getsize(path)


@pytest.mark.parametrize('name', CASE_IDS)
def test_chunk_sizes_give_the_same_result(images, name):
    data = read(images[name])
    expected = inspect_file(images[name]).to_dict()
    for sizes in ([4 * MIB], [4093], [1, 3, 7, 511, 4097, 65537, 1 << 20 | 1], [len(data)]):
        assert feed_all(data, sizes)[1].to_dict() == expected, sizes
    assert feed_bytewise(data).to_dict() == expected


@pytest.mark.parametrize('chunk', [bytes, bytearray, memoryview])
def test_accepts_bytes_like_chunks(qcow2, chunk):
    data = read(qcow2)
    inspector = FormatInspector()
    for pos in range(0, len(data), 100000):
        inspector.feed(chunk(data[pos:pos + 100000]))
    assert inspector.finish().format == 'qcow2'


def test_details(images):
    qcow = inspect_file(images['qcow2']).details
    assert qcow['version'] == 3 and qcow['cluster_size'] == 65536 and not qcow['dirty']
    assert inspect_file(images['qcow2-v2']).details['version'] == 2
    assert inspect_file(images['vmdk-monolithicSparse']).details['create_type'] == 'monolithicSparse'
    assert inspect_file(images['vmdk-streamOptimized']).details['create_type'] == 'streamOptimized'
    assert inspect_file(images['vdi-static']).details['image_type'] == 'fixed'
    assert inspect_file(images['vdi-dynamic']).details['image_type'] == 'dynamic'
    assert inspect_file(images['vhd-fixed']).details['subformat'] == 'fixed'
    assert inspect_file(images['vhd-dynamic']).details['subformat'] == 'dynamic'
    assert inspect_file(images['vhdx']).details['block_size'] == MIB


@pytest.mark.parametrize('tool', ['genisoimage', 'xorriso'])
def test_iso(iso_images, tool):
    path = iso_images[tool]
    report = inspect_file(path)
    assert report.format == 'iso'
    assert report.virtual_size == os.path.getsize(path)
    assert report.details['volume_id'] == 'TESTVOL'
    assert report.details['volume_size'] == os.path.getsize(path)
    data = read(path)
    assert feed_all(data, [1, 2047, 4099])[1].to_dict() == report.to_dict()
    check_declared('iso', report)
    with pytest.raises(FormatError, match='but disk_format is raw: set disk_format: iso'):
        check_declared('raw', report)
    check_declared('raw', report, converted=True)  # the raw output of a vetted qcow2 may hold an ISO filesystem


def test_random_data_is_raw(workdir):
    data = os.urandom(3 * MIB + 12345)
    path = write(str(workdir / 'random.raw'), data)
    report = inspect_file(path)
    assert report.format == 'raw'
    assert report.virtual_size == len(data)
    assert feed_all(data, [777, 4 * MIB])[1].to_dict() == report.to_dict()


def test_small_raw_never_completes_header_until_finish():
    inspector = FormatInspector()
    inspector.feed(b'\x01' * 1000)
    assert not inspector.header_complete
    assert inspector.early_check() is None
    report = inspector.finish()
    assert inspector.header_complete
    assert (report.format, report.virtual_size) == ('raw', 1000)


def test_memory_stays_bounded():
    inspector = FormatInspector()
    chunk = os.urandom(MIB + 3)
    for _count in range(12):
        inspector.feed(chunk)
    assert inspector.header_complete
    assert len(inspector._header) == FormatInspector.HEADER_BYTES
    assert len(inspector._tail) <= 8 * FormatInspector.TAIL_BYTES
    assert not inspector._pending
    assert inspector.finish().virtual_size == 12 * (MIB + 3)


def test_empty_stream_is_refused():
    with pytest.raises(FormatError, match='empty'):
        FormatInspector().finish()


def test_feed_after_finish_is_an_error():
    inspector = FormatInspector()
    inspector.feed(b'x' * 10)
    inspector.finish()
    with pytest.raises(ValueError):
        inspector.feed(b'x')


def test_finish_is_idempotent(qcow2):
    inspector = FormatInspector()
    inspector.feed(read(qcow2))
    assert inspector.finish() is inspector.finish()


def test_truncated_qcow2_header(workdir, qcow2):
    path = write(str(workdir / 'truncated.qcow2'), read(qcow2)[:50])
    with pytest.raises(FormatError, match='truncated'):
        inspect_file(path)


def test_truncated_vhdx(workdir, images):
    path = write(str(workdir / 'truncated.vhdx'), read(images['vhdx'])[:3 * MIB + 1000])
    with pytest.raises(FormatError, match='truncated'):
        inspect_file(path)


class SmallHeaderInspector(FormatInspector):
    """Forces the VHDX metadata (at 3 MiB in qemu's layout) to be captured past the header."""
    HEADER_BYTES = 256 * 1024


def test_vhdx_metadata_past_the_header_is_captured(images):
    data = read(images['vhdx'])
    expected = inspect_file(images['vhdx']).to_dict()
    for sizes in ([1, 3, 7, 511, 4097, 65537], [4 * MIB], [256 * 1024], [len(data)], [300000]):
        inspector, report = feed_all(data, sizes, SmallHeaderInspector())
        assert report.to_dict() == expected, sizes
        captured = sum(len(region[1]) for region in inspector._regions.values())
        assert captured <= 2 * 64 * 1024


@pytest.mark.parametrize('item_offset', [1000, 32768 - 4, 32768, 32768 + 100])
def test_vhdx_odd_metadata_layouts_are_chunk_size_independent(workdir, images, item_offset):
    """Items inside, straddling or after a short metadata table give the same answer whatever the chunking."""
    data = bytearray(read(images['vhdx']))
    meta, entry, _item = vhdx_item_offset(bytes(data), '2FA54224-CD1B-4876-B211-5DBED83BF4B8')
    table = 192 * 1024
    for idx in range(struct.unpack_from('<I', data, table + 8)[0]):
        region = table + 16 + 32 * idx
        if struct.unpack_from('<Q', data, region + 16)[0] == meta:
            struct.pack_into('<I', data, region + 24, 32768)         # metadata region length: 32 KiB
    struct.pack_into('<I', data, entry + 16, item_offset)
    struct.pack_into('<Q', data, meta + item_offset, 123 * MIB)
    data = bytes(data)
    expected = feed_all(data, [len(data)])[1].to_dict()
    assert expected['virtual_size'] == 123 * MIB
    for sizes in ([1, 3, 7, 511, 4097, 65537], [4093], [32768], [len(data)]):
        assert feed_all(data, sizes, SmallHeaderInspector())[1].to_dict() == expected, sizes


# ---------------------------------------------------------------- ambiguity

def test_qcow2_that_is_also_an_iso_is_ambiguous(workdir, qcow2):
    path = patched(qcow2, str(workdir / 'iso-qcow2.img'), {0x8000: b'\x01CD001\x01'})
    with pytest.raises(FormatError, match='ambiguous') as err:
        inspect_file(path)
    assert 'qcow2' in str(err.value) and 'iso' in str(err.value)


def test_qcow2_with_a_vhd_footer_is_ambiguous(workdir, qcow2, images):
    footer = read(images['vhd-fixed'])[-512:]
    path = write(str(workdir / 'vhd-qcow2.img'), read(qcow2) + footer)
    with pytest.raises(FormatError, match='ambiguous'):
        inspect_file(path)


def test_vdi_signature_in_a_qcow2_is_ambiguous(workdir, qcow2):
    path = patched(qcow2, str(workdir / 'vdi-qcow2.img'), {0x40: struct.pack('<I', 0xbeda107f)})
    with pytest.raises(FormatError, match='ambiguous'):
        inspect_file(path)


# ---------------------------------------------------------------- qcow2 safety

@pytest.fixture(scope='module')
def backing_qcow2(workdir):
    run('qemu-img', 'create', '-q', '-f', 'raw', 'base.raw', '1M', cwd=str(workdir))
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'child.qcow2', cwd=str(workdir))
    return str(workdir / 'child.qcow2')


def test_qcow2_backing_file_is_refused(backing_qcow2):
    with pytest.raises(UnsafeImageError, match='backing file') as err:
        inspect_file(backing_qcow2)
    assert 'CVE-2024-32498' in str(err.value)
    assert 'base.raw' in str(err.value)


def test_qcow2_data_file_is_refused(workdir):
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'data_file=guest.data', 'external.qcow2', '1M', cwd=str(workdir))
    with pytest.raises(UnsafeImageError, match='external data file') as err:
        inspect_file(str(workdir / 'external.qcow2'))
    assert 'CVE-2024-32498' in str(err.value)


@pytest.mark.parametrize('bit', [5, 7, 12, 63])
def test_qcow2_unknown_incompatible_bit_is_refused(workdir, qcow2, bit):
    header = read(qcow2)[:104]
    incompatible = struct.unpack_from('>Q', header, 72)[0] | (1 << bit)
    path = patched(qcow2, str(workdir / ('bit%d.qcow2' % bit)), {72: struct.pack('>Q', incompatible)})
    with pytest.raises(UnsafeImageError, match='unknown incompatible feature bit') as err:
        inspect_file(path)
    assert str(bit) in str(err.value)


def test_qcow2_known_incompatible_bits_are_accepted(workdir, qcow2):
    path = patched(qcow2, str(workdir / 'dirty.qcow2'), {72: struct.pack('>Q', 0b00011)})
    report = inspect_file(path)
    assert report.format == 'qcow2'
    assert report.details['dirty'] and report.details['corrupt']


def test_qcow2_extended_l2_is_refused_as_glance_does(workdir):
    path = str(workdir / 'extl2.qcow2')
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on', path, '1M')
    with pytest.raises(FormatError, match='extended L2 entries .*extended_l2=off'):
        inspect_file(path)


def test_qcow_version_1_is_refused(workdir, qcow2):
    path = patched(qcow2, str(workdir / 'v1.qcow'), {4: struct.pack('>I', 1)})
    with pytest.raises(FormatError, match='version 1'):
        inspect_file(path)


def test_qed_is_refused(workdir):
    run('qemu-img', 'create', '-q', '-f', 'qed', str(workdir / 'disk.qed'), '1M')
    with pytest.raises(UnsafeImageError, match='QED'):
        inspect_file(str(workdir / 'disk.qed'))


# ---------------------------------------------------------------- early check

def stream_of(data, padding, chunk=MIB):
    """The bytes of data followed by padding zero bytes, in chunks (never materialised as a whole)."""
    view = memoryview(data)
    for pos in range(0, len(view), chunk):
        yield view[pos:pos + chunk]
    zeros = bytes(chunk)
    while padding > 0:
        yield zeros[:min(chunk, padding)]
        padding -= chunk


def test_early_check_stops_an_unsafe_image(backing_qcow2):
    total = 64 * MIB
    data = read(backing_qcow2)
    inspector = FormatInspector()
    with pytest.raises(UnsafeImageError, match='backing file'):
        for chunk in stream_of(data, total - len(data)):
            inspector.feed(chunk)
            if inspector.header_complete:
                inspector.early_check()
    assert inspector.bytes_seen <= FormatInspector.HEADER_BYTES + MIB
    assert inspector.bytes_seen < total


def test_early_check_on_header_from_one_byte_chunks(backing_qcow2):
    data = read(backing_qcow2)
    inspector = FormatInspector()
    for pos in range(len(data)):
        inspector.feed(data[pos:pos + 1])
    assert not inspector.header_complete
    assert inspector.early_check() is None
    for chunk in stream_of(b'', FormatInspector.HEADER_BYTES):
        inspector.feed(chunk)
    assert inspector.header_complete
    with pytest.raises(UnsafeImageError):
        inspector.early_check()


def test_early_check_refuses_bad_vmdk_descriptor(workdir, vmdk):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'early-passwd.vmdk'),
                                lambda text: text.replace('"disk.vmdk"', '"/etc/passwd"'))
    data = read(path)
    inspector = FormatInspector()
    with pytest.raises(UnsafeImageError, match='/etc/passwd'):
        for chunk in stream_of(data, 32 * MIB):
            inspector.feed(chunk)
            if inspector.header_complete:
                inspector.early_check()
    assert inspector.bytes_seen < 8 * MIB


@pytest.mark.parametrize('name', CASE_IDS)
def test_early_check_accepts_safe_images(images, name):
    """Padded past HEADER_BYTES like a multi-GB stream, every safe image gets its answer early."""
    data = read(images[name])
    inspector = FormatInspector()
    answer = None
    for chunk in stream_of(data, FormatInspector.HEADER_BYTES):
        inspector.feed(chunk)
        if answer is None and inspector.header_complete:
            answer = inspector.early_check()
    # a fixed VHD is raw data until its footer, which early_check cannot see
    assert answer == ('raw' if name == 'vhd-fixed' else GLANCE_NAME[name])


def test_early_check_before_the_header_is_complete(images):
    inspector = FormatInspector()
    inspector.feed(read(images['qcow2'])[:FormatInspector.HEADER_BYTES - 1])
    assert not inspector.header_complete
    assert inspector.early_check() is None
    assert inspector.finish().format == 'qcow2'


# ---------------------------------------------------------------- vmdk safety

def test_vmdk_extent_etc_passwd_is_refused(workdir, vmdk):
    assert inspect_file(vmdk).format == 'vmdk'
    path = vmdk_with_descriptor(vmdk, str(workdir / 'passwd.vmdk'),
                                lambda text: text.replace('"disk.vmdk"', '"/etc/passwd"'))
    with pytest.raises(UnsafeImageError, match='/etc/passwd') as err:
        inspect_file(path)
    assert 'CVE-2024-32498' in str(err.value)


def test_vmdk_second_extent_is_refused(workdir, vmdk):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'two.vmdk'),
                                lambda text: text.replace('SPARSE "disk.vmdk"', 'SPARSE "disk.vmdk"\nRW 2048 SPARSE "other.vmdk"'))
    with pytest.raises(UnsafeImageError, match='2 extents'):
        inspect_file(path)


def test_vmdk_flat_extent_is_refused(workdir, vmdk):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'flatextent.vmdk'),
                                lambda text: text.replace('SPARSE "disk.vmdk"', 'FLAT "disk.vmdk" 0'))
    with pytest.raises(UnsafeImageError, match='extent'):
        inspect_file(path)


@pytest.mark.parametrize('create_type', ['monolithicFlat', 'twoGbMaxExtentSparse', 'vmfs', 'custom'])
def test_vmdk_other_create_types_are_refused(workdir, vmdk, create_type):
    path = vmdk_with_descriptor(vmdk, str(workdir / ('%s.vmdk' % create_type)),
                                lambda text: text.replace('"monolithicSparse"', '"%s"' % create_type))
    with pytest.raises(UnsafeImageError, match='createType is'):
        inspect_file(path)


@pytest.mark.parametrize('line', ['parentFileNameHint="/etc/passwd"', '# parentFileNameHint="base.vmdk"'])
def test_vmdk_parent_hint_is_refused(workdir, vmdk, line):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'parent.vmdk'),
                                lambda text: text.replace('parentCID=ffffffff', 'parentCID=ffffffff\n' + line))
    with pytest.raises(UnsafeImageError, match='parentFileNameHint'):
        inspect_file(path)


def test_vmdk_unexpected_descriptor_line_is_refused(workdir, vmdk):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'junk.vmdk'),
                                lambda text: text.replace('# The Disk Data Base', 'include /etc/passwd'))
    with pytest.raises(UnsafeImageError, match='unexpected line'):
        inspect_file(path)


def test_vmdk_zero_capacity_is_refused(workdir, vmdk):
    path = patched(vmdk, str(workdir / 'zero.vmdk'), {12: struct.pack('<Q', 0)})
    with pytest.raises(UnsafeImageError, match='capacity of 0'):
        inspect_file(path)


def test_vmdk_plain_descriptor_file_is_refused(workdir):
    run('qemu-img', 'create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', 'flat.vmdk', '1M', cwd=str(workdir))
    path = str(workdir / 'flat.vmdk')
    assert read(path).startswith(b'# Disk DescriptorFile')
    with pytest.raises(UnsafeImageError, match='plain VMDK descriptor') as err:
        inspect_file(path)
    assert 'CVE-2024-32498' in str(err.value)
    # the same descriptor without its leading comment is still what qemu probes as a VMDK
    text = read(path).split(b'\n', 1)[1].replace(b'flat-flat.vmdk', b'/etc/passwd')
    bare = write(str(workdir / 'bare-descriptor.vmdk'), text)
    with pytest.raises(UnsafeImageError, match='plain VMDK descriptor'):
        inspect_file(bare)


def test_vmdk_parent_hint_past_the_declared_descriptor_size_is_refused(workdir, vmdk):
    """qemu reads 10 KiB at offset 512 up to the first NUL, whatever descriptorSize says."""
    filler = ''.join('# padding line %03d to push the next line past the declared descriptor size\n' % idx
                     for idx in range(8))
    path = vmdk_with_descriptor(vmdk, str(workdir / 'hidden-parent.vmdk'),
                                lambda text: text.replace('# The Disk Data Base', filler + 'parentFileNameHint="base.vmdk"'))
    data = read(path)
    assert data.index(b'parentFileNameHint') > 1024
    path = patched(path, path, {36: struct.pack('<Q', 1)})      # descriptorSize: 1 sector
    assert 'base.vmdk' in run('qemu-img', 'info', '-f', 'vmdk', path).decode()    # qemu does follow it
    with pytest.raises(UnsafeImageError, match='parentFileNameHint'):
        inspect_file(path)


def test_vmdk_descriptor_elsewhere_is_refused(workdir, vmdk):
    path = patched(vmdk, str(workdir / 'moved.vmdk'), {28: struct.pack('<Q', 2)})
    with pytest.raises(UnsafeImageError, match='sector 2'):
        inspect_file(path)


def with_vmdk_footer(src, dst, footer_capacity, marker_type=3):
    """A streamOptimized VMDK rewritten the way VMware writes it: grain directory at the end, header in a footer."""
    data = bytearray(read(src))
    assert len(data) % 512 == 0
    footer_header = bytearray(data[:512])
    struct.pack_into('<Q', footer_header, 12, footer_capacity)
    struct.pack_into('<Q', data, 56, 0xffffffffffffffff)
    marker = struct.pack('<QII', 1, 0, marker_type) + bytes(496)
    return write(dst, bytes(data) + marker + bytes(footer_header) + bytes(512))


def test_vmdk_grain_directory_at_end_uses_the_footer(workdir, images):
    src = images['vmdk-streamOptimized']
    capacity = struct.unpack_from('<Q', read(src), 12)[0]
    path = with_vmdk_footer(src, str(workdir / 'footer.vmdk'), capacity // 2)
    report = inspect_file(path)
    assert report.details['gd_at_end']
    assert report.virtual_size == capacity // 2 * 512 == qemu_virtual_size(path, 'vmdk')
    assert feed_all(read(path), [1, 511, 1537])[1].to_dict() == report.to_dict()


def test_vmdk_grain_directory_at_end_without_footer_is_an_error(workdir, images):
    src = images['vmdk-streamOptimized']
    path = with_vmdk_footer(src, str(workdir / 'badfooter.vmdk'), 2048, marker_type=1)
    with pytest.raises(FormatError, match='footer'):
        inspect_file(path)


# ---------------------------------------------------------------- vdi / vhd / vhdx differencing

def test_vdi_with_parent_uuid_is_refused(workdir, images):
    path = patched(images['vdi-dynamic'], str(workdir / 'child.vdi'), {0x1a8: uuid.uuid4().bytes})
    with pytest.raises(UnsafeImageError, match='differencing'):
        inspect_file(path)


def test_vdi_differencing_type_is_refused(workdir, images):
    path = patched(images['vdi-dynamic'], str(workdir / 'diff.vdi'), {0x4c: struct.pack('<I', 4)})
    with pytest.raises(UnsafeImageError, match='differencing') as err:
        inspect_file(path)
    assert 'CVE-2024-32498' in str(err.value)


def test_vhd_differencing_is_refused(workdir, images):
    data = read(images['vhd-dynamic'])
    path = patched(images['vhd-dynamic'], str(workdir / 'diff.vhd'),
                   {60: struct.pack('>I', 4), len(data) - 512 + 60: struct.pack('>I', 4)})
    with pytest.raises(UnsafeImageError, match='differencing disk') as err:
        inspect_file(path)
    assert 'CVE-2024-32498' in str(err.value)


def test_fixed_vhd_footer_claiming_differencing_is_refused(workdir, images):
    data = read(images['vhd-fixed'])
    path = patched(images['vhd-fixed'], str(workdir / 'fixed-diff.vhd'), {len(data) - 512 + 60: struct.pack('>I', 4)})
    with pytest.raises(UnsafeImageError, match='differencing disk'):
        inspect_file(path)


def test_vhd_dynamic_header_with_parent_locator_is_refused(workdir, images):
    data = read(images['vhd-dynamic'])
    dyn = struct.unpack_from('>Q', data, 16)[0]
    assert data[dyn:dyn + 8] == b'cxsparse'
    path = patched(images['vhd-dynamic'], str(workdir / 'locator.vhd'), {dyn + 576: b'W2ku'})
    with pytest.raises(UnsafeImageError, match='parent'):
        inspect_file(path)


def vhdx_item_offset(data, guid_text):
    """Offset of a metadata item in a VHDX, found independently of the inspector."""
    table = 192 * 1024
    assert data[table:table + 4] == b'regi'
    count = struct.unpack_from('<I', data, table + 8)[0]
    meta_guid = uuid.UUID('8B7CA206-4790-4B9A-B8FE-575F050F886E').bytes_le
    meta = None
    for idx in range(count):
        entry = table + 16 + 32 * idx
        if data[entry:entry + 16] == meta_guid:
            meta = struct.unpack_from('<Q', data, entry + 16)[0]
    assert data[meta:meta + 8] == b'metadata'
    want = uuid.UUID(guid_text).bytes_le
    for idx in range(struct.unpack_from('<H', data, meta + 10)[0]):
        entry = meta + 32 + 32 * idx
        if data[entry:entry + 16] == want:
            return meta, entry, meta + struct.unpack_from('<I', data, entry + 16)[0]
    raise AssertionError('item not found')


def test_vhdx_has_parent_is_refused(workdir, images):
    data = read(images['vhdx'])
    _meta, _entry, params = vhdx_item_offset(data, 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B')
    flags = struct.unpack_from('<I', data, params + 4)[0] | 2
    path = patched(images['vhdx'], str(workdir / 'parent.vhdx'), {params + 4: struct.pack('<I', flags)})
    with pytest.raises(UnsafeImageError, match='HasParent'):
        inspect_file(path)
    with pytest.raises(UnsafeImageError, match='HasParent'):
        feed_all(read(path), [4093], SmallHeaderInspector())


def test_vhdx_parent_locator_is_refused(workdir, images):
    data = read(images['vhdx'])
    # turn the Page 83 item into a Parent Locator item
    _meta, entry, _item = vhdx_item_offset(data, 'BECA12AB-B2E6-4523-93EF-C309E000C746')
    locator = uuid.UUID('A8D35F2D-B30B-454D-ABF7-D3D84834AB0C').bytes_le
    path = patched(images['vhdx'], str(workdir / 'locator.vhdx'), {entry: locator})
    with pytest.raises(UnsafeImageError, match='parent locator'):
        inspect_file(path)


# ---------------------------------------------------------------- ploop

def test_ploop_old_magic(workdir, images):
    path = patched(images['ploop'], str(workdir / 'old.ploop'), {0: b'WithoutFreeSpace'})
    report = inspect_file(path)
    assert report.format == 'ploop'
    assert report.virtual_size == qemu_virtual_size(images['ploop'], 'parallels')


# ---------------------------------------------------------------- check_declared

def report_of(fmt):
    return FormatReport(fmt, 1024, {})


DETECTED = ('raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ploop')
ACCEPTED = {
    'raw': ('raw',),
    'aki': ('raw',),
    'ari': ('raw',),
    'ami': ('raw',),
    'iso': ('iso',),
}


@pytest.mark.parametrize('declared', DISK_FORMATS)
@pytest.mark.parametrize('detected', DETECTED)
def test_check_declared_matrix(declared, detected):
    accepted = ACCEPTED.get(declared, (declared,))
    if detected in accepted:
        check_declared(declared, report_of(detected))
    else:
        with pytest.raises(FormatError) as err:
            check_declared(declared, report_of(detected))
        message = str(err.value)
        assert detected in message and declared in message


def test_check_declared_raw_message():
    with pytest.raises(FormatError) as err:
        check_declared('raw', report_of('qcow2'))
    assert str(err.value) == ('the bytes are a qcow2 image but disk_format is raw: set disk_format: qcow2, '
                              'or convert the image')


@pytest.mark.parametrize('declared', ['qcow', 'QCOW2', 'bare', '', None, 'vpc'])
def test_check_declared_unknown_name(declared):
    with pytest.raises(FormatError) as err:
        check_declared(declared, report_of('raw'))
    for name in DISK_FORMATS:
        assert name in str(err.value)


def test_check_declared_with_real_reports(images, iso_images):
    check_declared('vhd', inspect_file(images['vhd-fixed']))
    check_declared('ami', inspect_file(images['raw']))
    with pytest.raises(FormatError, match='disk_format: iso'):
        check_declared('raw', inspect_file(iso_images['xorriso']))
    with pytest.raises(FormatError, match='disk_format: vhd'):
        check_declared('raw', inspect_file(images['vhd-fixed']))
    with pytest.raises(FormatError):
        check_declared('iso', inspect_file(images['raw']))


def test_constants():
    assert DISK_FORMATS == ('raw', 'qcow2', 'vmdk', 'vdi', 'vhd', 'vhdx', 'iso', 'ploop', 'aki', 'ari', 'ami')
    assert CONTAINER_FORMATS == ('bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed')
    assert FormatInspector.HEADER_BYTES >= 0x9800


# ---------------------------------------------------------------- image properties

def feed_like_pipeline(path):
    """The report of the pipeline's feeding: 4 MiB chunks, early_check() once the header is complete."""
    inspector = FormatInspector()
    checked = False
    with open(path, 'rb') as handle:
        while True:
            chunk = handle.read(4 * MIB)
            if not chunk:
                break
            inspector.feed(memoryview(chunk))
            if not checked and inspector.header_complete:
                inspector.early_check()
                checked = True
    return inspector.finish()


def qemu_supports(qfmt, option):
    """True when the installed qemu-img knows the -o option of a format (zstd needs a build with libzstd)."""
    return option in run('qemu-img', 'create', '-f', qfmt, '-o', 'help').decode()


QCOW2_V3 = {'qcow2_version': '3', 'qcow2_compat': '1.1', 'qcow2_encrypted': 'false', 'qcow2_compression_type': 'zlib'}
QCOW2_V2 = {'qcow2_version': '2', 'qcow2_compat': '0.10', 'qcow2_encrypted': 'false'}

# (id, qemu-img format, -o options, size, expected properties)
PROPERTY_CASES = [
    ('raw', 'raw', None, '3M', {}),
    ('qcow2-0.10-4k', 'qcow2', 'compat=0.10,cluster_size=4096', '5M', dict(QCOW2_V2, qcow2_cluster_size='4096')),
    ('qcow2-0.10-64k', 'qcow2', 'compat=0.10,cluster_size=65536', '5M', dict(QCOW2_V2, qcow2_cluster_size='65536')),
    ('qcow2-0.10-2M', 'qcow2', 'compat=0.10,cluster_size=2M', '5M', dict(QCOW2_V2, qcow2_cluster_size='2097152')),
    ('qcow2-1.1-4k', 'qcow2', 'compat=1.1,cluster_size=4096', '5M', dict(QCOW2_V3, qcow2_cluster_size='4096')),
    ('qcow2-1.1-64k', 'qcow2', 'compat=1.1,cluster_size=65536', '1G', dict(QCOW2_V3, qcow2_cluster_size='65536')),
    ('qcow2-1.1-2M', 'qcow2', 'compat=1.1,cluster_size=2M', '5M', dict(QCOW2_V3, qcow2_cluster_size='2097152')),
    ('qcow2-zstd', 'qcow2', 'compression_type=zstd', '5M',
     dict(QCOW2_V3, qcow2_cluster_size='65536', qcow2_compression_type='zstd')),
    ('vmdk-sparse', 'vmdk', None, '3M', {'vmware_disktype': 'sparse', 'vmware_adaptertype': 'ide'}),
    ('vmdk-sparse-lsilogic', 'vmdk', 'adapter_type=lsilogic', '3M',
     {'vmware_disktype': 'sparse', 'vmware_adaptertype': 'lsiLogic'}),
    ('vmdk-sparse-buslogic', 'vmdk', 'adapter_type=buslogic', '3M',
     {'vmware_disktype': 'sparse', 'vmware_adaptertype': 'busLogic'}),
    ('vmdk-sparse-legacyESX', 'vmdk', 'adapter_type=legacyESX', '3M', {'vmware_disktype': 'sparse'}),
    ('vmdk-stream-ide', 'vmdk', 'subformat=streamOptimized,adapter_type=ide', '3M',
     {'vmware_disktype': 'streamOptimized', 'vmware_adaptertype': 'ide'}),
    ('vmdk-stream-lsilogic', 'vmdk', 'subformat=streamOptimized,adapter_type=lsilogic', '1G',
     {'vmware_disktype': 'streamOptimized', 'vmware_adaptertype': 'lsiLogic'}),
    ('vmdk-stream-buslogic', 'vmdk', 'subformat=streamOptimized,adapter_type=buslogic', '3M',
     {'vmware_disktype': 'streamOptimized', 'vmware_adaptertype': 'busLogic'}),
    ('vdi-dynamic', 'vdi', None, '3M', {}),
    ('vdi-static', 'vdi', 'static=on', '3M', {}),
    ('vhd-dynamic', 'vpc', 'subformat=dynamic', '3M', {'vhd_disk_type': 'dynamic'}),
    ('vhd-fixed', 'vpc', 'subformat=fixed', '3M', {'vhd_disk_type': 'fixed'}),
    ('vhd-dynamic-force-size', 'vpc', 'subformat=dynamic,force_size=on', '1000K', {'vhd_disk_type': 'dynamic'}),
    ('vhd-fixed-force-size', 'vpc', 'subformat=fixed,force_size=on', '1000K', {'vhd_disk_type': 'fixed'}),
    ('vhdx', 'vhdx', None, '1G', {}),
    ('vhdx-fixed', 'vhdx', 'subformat=fixed,block_size=1M', '3M', {}),
    ('ploop', 'parallels', None, '1G', {}),
]


@pytest.mark.parametrize('name, qfmt, options, size, expected', PROPERTY_CASES, ids=[case[0] for case in PROPERTY_CASES])
def test_properties_of_created_images(workdir, name, qfmt, options, size, expected):
    if name == 'qcow2-zstd' and not qemu_supports('qcow2', 'compression_type'):
        pytest.skip('qemu-img without qcow2 compression_type')
    path = str(workdir / ('props-%s.img' % name))
    run(*(['qemu-img', 'create', '-q', '-f', qfmt] + (['-o', options] if options else []) + [path, size]))
    report = feed_like_pipeline(path)
    assert report.properties == expected
    assert report.virtual_size == qemu_virtual_size(path, qfmt)
    assert report.to_dict()['properties'] == expected


@pytest.mark.parametrize('name, qfmt, options, size, expected', [case for case in PROPERTY_CASES if case[0] != 'raw'],
                         ids=[case[0] for case in PROPERTY_CASES if case[0] != 'raw'])
def test_properties_of_converted_images(workdir, source, name, qfmt, options, size, expected):
    """The same images holding data: qemu-img convert from a raw disk, then from the converted image back to raw."""
    if name == 'qcow2-zstd' and not qemu_supports('qcow2', 'compression_type'):
        pytest.skip('qemu-img without qcow2 compression_type')
    del size
    path = str(workdir / ('conv-%s.img' % name))
    run(*(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', qfmt] + (['-o', options] if options else []) + [source, path]))
    report = feed_like_pipeline(path)
    assert report.properties == expected
    assert report.virtual_size == qemu_virtual_size(path, qfmt)
    back = str(workdir / ('back-%s.raw' % name))
    run('qemu-img', 'convert', '-q', '-f', qfmt, '-O', 'raw', path, back)
    raw = feed_like_pipeline(back)
    assert (raw.format, raw.properties) == ('raw', {})
    assert raw.virtual_size == qemu_virtual_size(back, 'raw') == report.virtual_size


def test_properties_are_strings(images, iso_images):
    for path in list(images.values()) + list(iso_images.values()):
        properties = inspect_file(path).properties
        assert all(isinstance(key, str) and isinstance(value, str) for key, value in properties.items()), path


@pytest.mark.parametrize('tool', ['genisoimage', 'xorriso'])
def test_iso_properties_and_size(iso_images, tool):
    report = feed_like_pipeline(iso_images[tool])
    assert (report.format, report.properties) == ('iso', {})
    assert report.virtual_size == qemu_virtual_size(iso_images[tool], 'raw')


@pytest.mark.parametrize('compat, expected', [('0.10', QCOW2_V2), ('1.1', QCOW2_V3)])
def test_encrypted_qcow2_is_recorded(workdir, compat, expected):
    """crypt_method is read from the header; the legacy AES method because LUKS creation benchmarks its KDF for seconds."""
    path = str(workdir / ('aes-%s.qcow2' % compat))
    run('qemu-img', 'create', '-q', '--object', 'secret,id=sec0,data=123456', '-f', 'qcow2',
        '-o', 'compat=%s,encrypt.format=aes,encrypt.key-secret=sec0' % compat, path, '1M')
    report = feed_like_pipeline(path)
    assert report.format == 'qcow2' and report.details['encryption_method'] == 1
    assert report.properties == dict(expected, qcow2_cluster_size='65536', qcow2_encrypted='true')
    assert report.virtual_size == qemu_virtual_size(path, 'qcow2')


@pytest.mark.parametrize('written, glance', [('lsisas1068', 'lsiLogicsas'), ('pvscsi', 'paraVirtual'), ('LSILOGIC', 'lsiLogic'),
                                             ('lsiLogicsas', 'lsiLogicsas'), ('sata', None), ('', None)])
def test_vmware_adaptertype_as_vmware_writes_it(workdir, vmdk, written, glance):
    """VMware names the SAS and paravirtual controllers lsisas1068 and pvscsi in ddb.adapterType."""
    path = vmdk_with_descriptor(vmdk, str(workdir / ('adapter-%s.vmdk' % (written or 'empty'))),
                                lambda text: text.replace('ddb.adapterType = "ide"', 'ddb.adapterType = "%s"' % written))
    report = feed_like_pipeline(path)
    assert report.properties.get('vmware_adaptertype') == glance
    assert report.properties['vmware_disktype'] == 'sparse'


def test_vmdk_without_adapter_type(workdir, vmdk):
    path = vmdk_with_descriptor(vmdk, str(workdir / 'no-adapter.vmdk'),
                                lambda text: text.replace('ddb.adapterType = "ide"\n', ''))
    assert feed_like_pipeline(path).properties == {'vmware_disktype': 'sparse'}


def test_unknown_qcow2_compression_type_is_refused_like_qemu(workdir):
    path = str(workdir / 'zlib.qcow2')
    run('qemu-img', 'create', '-q', '-f', 'qcow2', path, '1M')
    header = read(path)[:112]
    assert struct.unpack_from('>I', header, 100)[0] >= 105
    incompatible = struct.unpack_from('>Q', header, 72)[0] | 1 << 3
    bad = patched(path, str(workdir / 'ctype7.qcow2'), {72: struct.pack('>Q', incompatible), 104: b'\x07'})
    with pytest.raises(FormatError, match="unknown compression type: 7"):
        feed_like_pipeline(bad)
    assert "unknown compression type: 7" in qemu_refusal(bad, 'qcow2')


# ---------------------------------------------------------------- virtual size as qemu counts it

def refresh_vhd_footer(data, offset, creator=None, current_size=None):
    """Rewrite a VHD footer (or its copy) at offset with another creator app or current size, and its checksum."""
    if creator is not None:
        data[offset + 28:offset + 32] = creator
    if current_size is not None:
        struct.pack_into('>QQ', data, offset + 40, current_size, current_size)
    struct.pack_into('>I', data, offset + 64, 0)
    struct.pack_into('>I', data, offset + 64, ~sum(data[offset:offset + 512]) & 0xffffffff)


@pytest.mark.parametrize('creator', [b'vpc ', b'qemu', b'win ', b'qem2', b'd2v ', b'CTXS', b'tap\x00', b'wa\x00\x00'])
@pytest.mark.parametrize('subformat', ['dynamic', 'fixed'])
def test_vhd_size_by_creator_app(workdir, creator, subformat):
    """qemu sizes Virtual PC's and its own VHDs by CHS geometry, Hyper-V's and others' by current_size."""
    path = str(workdir / ('chs-%s.vhd' % subformat))
    run('qemu-img', 'create', '-q', '-f', 'vpc', '-o', 'subformat=' + subformat, path, '1000K')
    data = bytearray(read(path))
    offsets = [len(data) - 512] + ([0] if subformat == 'dynamic' else [])
    for offset in offsets:
        refresh_vhd_footer(data, offset, creator, 1000 * 1024)   # current_size below the CHS size
    out = write(str(workdir / ('chs-%s-%s.vhd' % (subformat, creator.decode().strip('\x00 ')))), bytes(data))
    report = feed_like_pipeline(out)
    assert report.details['checksum_ok']
    assert report.virtual_size == qemu_virtual_size(out, 'vpc')
    assert report.virtual_size in (1000 * 1024, report.details['chs_size'])


def test_odd_vdi_size_is_rounded_up(workdir):
    path = str(workdir / 'odd.vdi')
    run('qemu-img', 'create', '-q', '-f', 'vdi', path, '1M')
    odd = patched(path, str(workdir / 'odd-size.vdi'), {0x170: struct.pack('<Q', MIB - 100)})
    assert feed_like_pipeline(odd).virtual_size == qemu_virtual_size(odd, 'vdi') == MIB


def test_partial_sector_sizes_are_dropped(workdir, qcow2, images):
    """qemu counts whole 512-byte sectors of a qcow2 or VHDX size field."""
    odd = patched(qcow2, str(workdir / 'odd-size.qcow2'), {24: struct.pack('>Q', 2 * MIB - 100)})
    assert feed_like_pipeline(odd).virtual_size == qemu_virtual_size(odd, 'qcow2') == 2 * MIB - 512
    _meta, _entry, item = vhdx_item_offset(read(images['vhdx']), '2FA54224-CD1B-4876-B211-5DBED83BF4B8')
    odd = patched(images['vhdx'], str(workdir / 'odd-size.vhdx'), {item: struct.pack('<Q', 2 * MIB - 100)})
    assert feed_like_pipeline(odd).virtual_size == qemu_virtual_size(odd, 'vhdx') == 2 * MIB - 512


def test_raw_virtual_size_is_the_byte_count(workdir):
    """Like Glance, a raw image's virtual size is its length, even where qemu rounds it up to a whole sector."""
    path = write(str(workdir / 'odd.raw'), os.urandom(1000))
    report = feed_like_pipeline(path)
    assert (report.virtual_size, report.properties) == (1000, {})
    assert qemu_virtual_size(path, 'raw') == 1024
