# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sanity checks of the MBR and GPT partition table at the start of a raw disk image.

A raw image whose first sector ends with the MBR signature (55 aa) claims to be a whole disk. The rules are
those Glance applies since the follow-ups of CVE-2024-32498 (oslo.utils' format inspector): every partition
entry has a boot flag of 0x00 or 0x80, at least one entry is used, and a protective MBR (type 0xee) is the only
entry, starts at LBA 1 and CHS 0/0/2. A FAT boot sector also ends with 55 aa; it is a filesystem, not a table.

One rule goes further: behind a protective MBR there must be a GPT header at LBA 1 (512- or 4096-byte sectors)
with a valid signature, size, CRC32 and self-reference (UEFI 2.10, section 5.3.2). A protective MBR without one
is a disk no firmware or kernel can read.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct
import zlib

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError

MBR_SIGNATURE = b'\x55\xaa'
_ENTRIES_AT = 446
_ENTRY = struct.Struct('<B3sB3sII')    # boot flag, start CHS, type, end CHS, start LBA, sectors
_PROTECTIVE = 0xee
_PROTECTIVE_START_CHS = b'\x00\x02\x00'
_GPT_SIGNATURE = b'EFI PART'
_GPT_HEADER = struct.Struct('<8sIIIIQQQQ16sQIII')   # 92 bytes, UEFI 2.10 table 5.5
_GPT_SECTOR_SIZES = (512, 4096)

_ADVICE = ('the table is corrupt, or the file is not a disk image. Repair it (sgdisk --verify, fdisk) '
           'or, for a filesystem or other data, wrap it in a real disk image')


def _is_fat_boot_sector(sector):
    # Two FATs and the fixed-disk media descriptor: a FAT volume boot record, which also ends with 55 aa.
    return sector[0x10] == 2 and sector[0x15] == 0xf8


def inspect_partition_table(head):
    """Details of the partition table at the start of ``head`` ({} when there is none); FormatError when insane."""
    if len(head) < 512 or head[510:512] != MBR_SIGNATURE or _is_fat_boot_sector(head):
        return {}
    used = []
    protective = False
    for index in range(4):
        boot, start_chs, kind, _end_chs, start_lba, _sectors = _ENTRY.unpack_from(head, _ENTRIES_AT + 16 * index)
        if boot not in (0x00, 0x80):
            raise FormatError('the image starts with an MBR (55 aa at byte 510) whose partition entry %d has the boot '
                              'flag 0x%02x (only 0x00 and 0x80 exist): %s' % (index + 1, boot, _ADVICE))
        if kind:
            used.append(index)
        if kind == _PROTECTIVE:
            protective = True
            if start_chs != _PROTECTIVE_START_CHS or start_lba != 1:
                raise FormatError('the image has a protective MBR for a GPT whose entry does not start at LBA 1 '
                                  '(CHS 0/0/2): %s' % _ADVICE)
    if not used:
        raise FormatError('the image starts with an MBR (55 aa at byte 510) that has no partition: %s' % _ADVICE)
    if not protective:
        return {'partition_table': 'mbr', 'partitions': len(used)}
    if used != [0]:
        raise FormatError('the image has a protective MBR for a GPT with %d more MBR partitions next to it (a hybrid '
                          'MBR): %s' % (len(used) - 1, _ADVICE))
    return _inspect_gpt_header(head)


def _inspect_gpt_header(head):
    for sector_size in _GPT_SECTOR_SIZES:
        if head[sector_size:sector_size + 8] == _GPT_SIGNATURE:
            break
    else:
        raise FormatError('the image has a protective MBR but no GPT header ("EFI PART" at LBA 1, byte 512 or 4096): '
                          '%s' % _ADVICE)
    raw = head[sector_size:sector_size + sector_size]
    if len(raw) < _GPT_HEADER.size:
        raise FormatError('the image is truncated inside its GPT header')
    (_sig, _revision, header_size, crc, _reserved, my_lba, _alternate, first_usable, last_usable, _guid, entries_lba,
     entries, entry_size, _entries_crc) = _GPT_HEADER.unpack_from(raw)
    problem = None
    if not _GPT_HEADER.size <= header_size <= sector_size:
        problem = 'its header size is %d bytes (92 to %d)' % (header_size, sector_size)
    elif zlib.crc32(raw[:16] + b'\x00' * 4 + raw[20:header_size]) & 0xffffffff != crc:
        problem = 'its header CRC32 does not match'
    elif my_lba != 1:
        problem = 'it says it lies at LBA %d' % my_lba
    elif entry_size < 128 or entry_size & (entry_size - 1):
        problem = 'its partition entries are %d bytes (128 times a power of 2)' % entry_size
    elif entries_lba < 2 or first_usable > last_usable:
        problem = 'its partition array or usable range is out of place'
    if problem:
        raise FormatError('the image has a GPT header at LBA 1 that is not valid (%s): %s' % (problem, _ADVICE))
    return {'partition_table': 'gpt', 'sector_size': sector_size, 'partition_entries': entries}
