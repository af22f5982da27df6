# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Raw disks with an MBR or a GPT: sane tables (parted, sgdisk) are accepted, insane ones refused at the header."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct
import zlib

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import FormatInspector, inspect_file
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.partition_tables import inspect_partition_table

from image_bytes import patched, read, run, write

MIB = 1024 * 1024


def entry(boot=0, chs=b'\x00\x02\x00', kind=0x83, start=2048, sectors=2048):
    return struct.pack('<B3sB3sII', boot, chs, kind, b'\xff\xff\xff', start, sectors)


def disk(*entries):
    data = bytearray(MIB)
    for index, raw in enumerate(entries):
        data[446 + 16 * index:462 + 16 * index] = raw
    data[510:512] = b'\x55\xaa'
    return data


def gpt_header(sector_size, **fields):
    """A valid GPT header for a 1 MiB disk at LBA 1 of sector_size, with fields overridden, CRC recomputed."""
    values = dict(revision=0x10000, size=92, my_lba=1, alternate=MIB // sector_size - 1, first=34,
                  last=MIB // sector_size - 34, entries_lba=2, entries=128, entry_size=128)
    values.update(fields)
    raw = bytearray(struct.pack('<8sIIIIQQQQ16sQIII', b'EFI PART', values['revision'], values['size'], 0, 0, values['my_lba'],
                                values['alternate'], values['first'], values['last'], b'\x11' * 16, values['entries_lba'],
                                values['entries'], values['entry_size'], 0) + b'\x00' * 4)
    struct.pack_into('<I', raw, 16, zlib.crc32(bytes(raw[:values['size']])) & 0xffffffff)
    return bytes(raw)


def gpt_disk(sector_size=512, **fields):
    data = disk(entry(kind=0xee, start=1, sectors=MIB // sector_size - 1))
    data[sector_size:sector_size + 96] = gpt_header(sector_size, **fields)
    return data


def test_real_tables_are_accepted(tmp_path):
    msdos = write(str(tmp_path / 'mbr.raw'), bytes(4 * MIB))
    run('parted', '-s', msdos, 'mklabel', 'msdos', 'mkpart', 'primary', 'ext4', '1MiB', '2MiB', 'mkpart', 'primary',
        'ext4', '2MiB', '3MiB', 'set', '1', 'boot', 'on')
    assert inspect_file(msdos).details == {'partition_table': 'mbr', 'partitions': 2, 'stream_size': 4 * MIB}
    gpt = write(str(tmp_path / 'gpt.raw'), bytes(4 * MIB))
    run('sgdisk', '-o', '-n', '1:2048:4095', '-t', '1:ef00', '-n', '2:4096:6143', gpt)
    report = inspect_file(gpt)
    assert report.format == 'raw'
    assert report.details == {'partition_table': 'gpt', 'sector_size': 512, 'partition_entries': 128, 'stream_size': 4 * MIB}


def test_gpt_of_4096_byte_sectors():
    assert inspect_partition_table(bytes(gpt_disk(4096)))['sector_size'] == 4096


def test_no_table_and_fat_boot_sectors_are_plain_raw():
    assert inspect_partition_table(bytes(MIB)) == {}
    fat = disk(b'\x17' * 16)             # boot code where an MBR has its table
    fat[0x10], fat[0x15] = 2, 0xf8         # two FATs, fixed disk
    assert inspect_partition_table(bytes(fat)) == {}


@pytest.mark.parametrize('data, message', [
    (disk(entry(boot=0x01)), 'partition entry 1 has the boot flag 0x01'),
    (disk(entry(), entry(), entry(), entry(boot=0xff)), 'partition entry 4 has the boot flag 0xff'),
    (disk(), 'an MBR .* that has no partition'),
    (disk(entry(kind=0xee, start=2)), 'protective MBR .* does not start at LBA 1'),
    (disk(entry(kind=0xee, chs=b'\x00\x01\x00', start=1)), 'protective MBR .* does not start at LBA 1'),
    (disk(entry(kind=0xee, start=1), entry(kind=0x0c)), 'protective MBR .* 1 more MBR partitions next to it'),
    (disk(entry(kind=0x83), entry(kind=0xee, start=1)), 'protective MBR .* 1 more MBR partitions next to it'),
    (disk(entry(kind=0xee, start=1)), 'protective MBR but no GPT header'),
], ids=['boot-flag', 'boot-flag-4th', 'empty', 'pmbr-lba', 'pmbr-chs', 'hybrid', 'hybrid-2nd', 'no-gpt-header'])
def test_insane_mbr_is_refused(data, message):
    with pytest.raises(FormatError, match=message) as err:
        inspect_partition_table(bytes(data))
    assert 'Repair it (sgdisk --verify, fdisk)' in str(err.value)


@pytest.mark.parametrize('fields, problem', [
    ({'size': 91}, 'its header size is 91 bytes'),
    ({'size': 600}, 'its header size is 600 bytes'),
    ({'my_lba': 7}, 'it says it lies at LBA 7'),
    ({'entry_size': 96}, 'its partition entries are 96 bytes'),
    ({'entry_size': 384}, 'its partition entries are 384 bytes'),
    ({'entries_lba': 1}, 'partition array or usable range'),
    ({'first': 2000, 'last': 34}, 'partition array or usable range'),
])
def test_insane_gpt_header_is_refused(fields, problem):
    with pytest.raises(FormatError, match='GPT header at LBA 1 that is not valid') as err:
        inspect_partition_table(bytes(gpt_disk(**fields)))
    assert problem in str(err.value)


def test_gpt_header_crc_is_checked():
    data = gpt_disk()
    data[512 + 40] ^= 1
    with pytest.raises(FormatError, match='header CRC32 does not match'):
        inspect_partition_table(bytes(data))


def test_insane_table_stops_the_stream_at_the_header(tmp_path):
    """The early check refuses before the rest of the image is read, as for an unsafe qcow2."""
    inspector = FormatInspector()
    inspector.feed(bytes(disk()) + bytes(FormatInspector.HEADER_BYTES))
    with pytest.raises(FormatError, match='no partition'):
        inspector.early_check()


def test_sgdisk_table_with_a_corrupt_header_is_refused(tmp_path):
    gpt = write(str(tmp_path / 'gpt.raw'), bytes(4 * MIB))
    run('sgdisk', '-o', '-n', '1:2048:4095', gpt)
    bad = patched(gpt, str(tmp_path / 'bad.raw'), {512 + 24: struct.pack('<Q', 5)})   # MyLBA
    with pytest.raises(FormatError, match='CRC32'):
        inspect_file(bad)
    assert read(gpt)[512:520] == b'EFI PART'
