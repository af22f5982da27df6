# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Differential test: our inspector and oslo.utils' format inspector (as Glance uses it) agree on a corpus.

The corpus is made here, good images with qemu-img, parted, sgdisk, xorriso and genisoimage, hostile ones by
writing header bytes with struct. For each file and declared disk_format, our verdict (the inspector fed like
the import pipeline, then check_declared) must equal Glance's (oslo_glance_verdicts.py, run with the pinned
oslo.utils that make setup puts into .venv/oslo-inspector). STRICTER lists the files we refuse and oslo accepts,
each with its reason; for qemu's limits the test also shows that qemu-img refuses the file. LENIENT lists the one
file oslo refuses and we accept.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import FormatInspector, check_declared

from image_bytes import luks_volume, patched, qemu_refusal, read, run, write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..', '..'))
OSLO_DIR = os.path.join(ROOT, '.venv', 'oslo-inspector')
MIB = 1024 * 1024

# Files we refuse and oslo accepts, and why. Everything else must get the same verdict.
STRICTER = {
    'qcow2-l1-table-too-large': 'qemu refuses it ("Active L1 table too large"); oslo reads only the backing/data-file/feature fields',
    'qcow2-image-too-big': 'qemu refuses it ("Image is too big")',
    'qcow2-l1-table-too-small': 'qemu refuses it ("L1 table is too small")',
    'qcow2-refcount-table-too-large': 'qemu refuses it ("Reference count table too large")',
    'gpt-header-bad-crc': 'a GPT whose header fails its CRC32 is no disk a guest can read; oslo checks only the MBR',
    'gpt-protective-mbr-without-header': 'a protective MBR with no GPT behind it; oslo checks only the MBR',
}
QEMU_REFUSES = [name for name in STRICTER if name.startswith('qcow2-')]
# Files we accept and oslo refuses, and why.
LENIENT = {
    'iso-hybrid-mbr': 'bootable ISOs carry an MBR for USB sticks (every Linux installer ISO); oslo calls them ambiguous '
                      '(gpt, iso), we keep them as iso: qemu reads them the same either way',
}


def mbr(entries, size=MIB, body=b''):
    """A raw disk of size bytes whose MBR holds entries: (boot flag, start CHS bytes, type, start LBA, sectors)."""
    data = bytearray(size)
    data[:len(body)] = body
    for index, (boot, chs, kind, start, sectors) in enumerate(entries):
        struct.pack_into('<B3sB3sII', data, 446 + 16 * index, boot, chs, kind, b'\xff\xff\xff', start, sectors)
    data[510:512] = b'\x55\xaa'
    return bytes(data)


def vmdk_with_descriptor(src, dst, text):
    """A monolithicSparse VMDK of qemu-img with its embedded descriptor (sector 1, NUL padded) replaced by text."""
    data = bytearray(read(src))
    end = data.index(b'\x00', 512)
    assert len(text) <= 20 * 512 - 1
    data[512:max(end, 512 + len(text))] = b'\x00' * (max(end, 512 + len(text)) - 512)
    data[512:512 + len(text)] = text
    return write(dst, bytes(data))


VMDK_FLAT_PASSWD = (b'# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n'
                    b'RW 2048 FLAT "/etc/passwd" 0\n\nddb.virtualHWVersion = "4"\nddb.adapterType = "ide"\n')


def qcow2_field(src, dst, **fields):
    """Copy a qcow2 image with header fields rewritten (offsets of qcow2.txt)."""
    where = {'cluster_bits': (20, '>I'), 'size': (24, '>Q'), 'l1_size': (36, '>I'), 'refcount_table_clusters': (56, '>I'),
             'incompatible_features': (72, '>Q')}
    return patched(src, dst, dict((where[name][0], struct.pack(where[name][1], value)) for name, value in fields.items()))


def gpt_disk(workdir, name):
    path = write(str(workdir / name), bytes(4 * MIB))
    run('sgdisk', '-o', '-n', '1:2048:4095', '-t', '1:8300', path)
    return path


def build_corpus(workdir):
    """[(name, path, declared disk_format)]."""
    src = write(str(workdir / 'source.raw'), os.urandom(512 * 1024) + bytes(MIB + 512 * 1024))

    def qemu(name, fmt, options=None, source=src, extra=()):
        path = str(workdir / name)
        args = ['qemu-img', 'convert', '-q', '-f', 'raw', '-O', fmt] + list(extra)
        if options:
            args += ['-o', options]
        run(*(args + [source, path]))
        return path

    def create(name, fmt, size, *args):
        path = str(workdir / name)
        run('qemu-img', 'create', '-q', '-f', fmt, *(list(args) + [path, size]))
        return path

    qcow2 = qemu('good.qcow2', 'qcow2')
    vmdk = qemu('good.vmdk', 'vmdk')
    iso_dir = workdir / 'iso'
    iso_dir.mkdir()
    write(str(iso_dir / 'meta_data.json'), b'{"uuid": "x"}')
    xorriso = str(workdir / 'xorriso.iso')
    run('xorriso', '-as', 'mkisofs', '-quiet', '-V', 'cidata', '-o', xorriso, str(iso_dir))
    genisoimage = str(workdir / 'genisoimage.iso')
    run('genisoimage', '-quiet', '-V', 'cidata', '-r', '-J', '-o', genisoimage, str(iso_dir))
    luks = luks_volume(str(workdir / 'luks1.img'), 1)
    msdos = write(str(workdir / 'mbr.raw'), bytes(4 * MIB))
    run('parted', '-s', msdos, 'mklabel', 'msdos', 'mkpart', 'primary', 'ext4', '1MiB', '3MiB')
    gpt = gpt_disk(workdir, 'gpt.raw')
    gpt_data = read(gpt)
    snapshot = qemu('snapshot.qcow2', 'qcow2')
    run('qemu-img', 'snapshot', '-c', 'snap1', snapshot)
    data_file = str(workdir / 'external.data')
    fat = bytearray(MIB)
    fat[0:3], fat[3:11], fat[0x10], fat[0x15], fat[510:512] = b'\xeb\x3c\x90', b'mkfs.fat', 2, 0xf8, b'\x55\xaa'
    fat[446:462] = b'\x17' * 16   # boot code where an MBR keeps its table: a FAT boot sector is not checked as one

    corpus = [
        # good images
        ('raw-random', src, 'raw'),
        ('raw-zeros', write(str(workdir / 'zeros.raw'), bytes(MIB)), 'raw'),
        ('raw-mbr-parted', msdos, 'raw'),
        ('raw-gpt-sgdisk', gpt, 'raw'),
        ('raw-fat-boot-sector', write(str(workdir / 'fat.raw'), bytes(fat)), 'raw'),
        ('raw-mbr-bootable', write(str(workdir / 'boot.raw'), mbr([(0x80, b'\x20\x21\x00', 0x83, 2048, 2048)], 2 * MIB)), 'raw'),
        ('raw-mbr-overlapping', write(str(workdir / 'overlap.raw'), mbr([(0, b'\0\0\0', 0x83, 1, 1000),
                                                                         (0, b'\0\0\0', 0x83, 500, 1000)])), 'raw'),
        ('raw-mbr-past-the-end', write(str(workdir / 'beyond.raw'), mbr([(0, b'\0\0\0', 0x83, 2048, 1 << 30)])), 'raw'),
        ('qcow2-v3', qcow2, 'qcow2'),
        ('qcow2-v2', qemu('v2.qcow2', 'qcow2', 'compat=0.10'), 'qcow2'),
        ('qcow2-compressed', qemu('compressed.qcow2', 'qcow2', extra=['-c']), 'qcow2'),
        ('qcow2-512-byte-clusters', qemu('c512.qcow2', 'qcow2', 'cluster_size=512'), 'qcow2'),
        ('qcow2-2m-clusters', qemu('c2m.qcow2', 'qcow2', 'cluster_size=2M'), 'qcow2'),
        ('qcow2-extended-l2', qemu('extl2.qcow2', 'qcow2', 'extended_l2=on'), 'qcow2'),
        ('qcow2-internal-snapshot', snapshot, 'qcow2'),
        ('qcow2-aes-encrypted', create('aes.qcow2', 'qcow2', '1M', '--object', 'secret,id=sec0,data=123456',
                                       '-o', 'encrypt.format=aes,encrypt.key-secret=sec0'), 'qcow2'),
        ('qcow2-64t-virtual-size', create('big.qcow2', 'qcow2', '64T'), 'qcow2'),
        ('vmdk-monolithic-sparse', vmdk, 'vmdk'),
        ('vmdk-stream-optimized', qemu('stream.vmdk', 'vmdk', 'subformat=streamOptimized'), 'vmdk'),
        ('vhd-dynamic', qemu('dynamic.vhd', 'vpc'), 'vhd'),
        ('vhdx', qemu('good.vhdx', 'vhdx'), 'vhdx'),
        ('vdi-dynamic', qemu('dynamic.vdi', 'vdi'), 'vdi'),
        ('vdi-static', qemu('static.vdi', 'vdi', 'static=on'), 'vdi'),
        ('iso-xorriso', xorriso, 'iso'),
        ('iso-genisoimage', genisoimage, 'iso'),
        ('iso-hybrid-mbr', patched(xorriso, str(workdir / 'hybrid.iso'), {446: struct.pack(
            '<B3sB3sII', 0x80, b'\x00\x01\x00', 0x17, b'\xff\xff\xff', 0, os.path.getsize(xorriso) // 512), 510: b'\x55\xaa'}),
         'iso'),
        # another format declared raw
        ('qcow2-declared-raw', qcow2, 'raw'),
        ('vmdk-declared-raw', vmdk, 'raw'),
        ('vhdx-declared-raw', qemu('raw-claim.vhdx', 'vhdx'), 'raw'),
        ('vdi-declared-raw', qemu('raw-claim.vdi', 'vdi'), 'raw'),
        ('iso-declared-raw', xorriso, 'raw'),
        ('luks1-declared-raw', luks, 'raw'),
        ('luks2-declared-raw', luks_volume(str(workdir / 'luks2.img'), 2), 'raw'),
        ('luks1-declared-qcow2', luks, 'qcow2'),
        ('qed-declared-raw', create('disk.qed', 'qed', '1M'), 'raw'),
        ('raw-declared-qcow2', src, 'qcow2'),
        # images that make qemu open other files
        ('qcow2-backing-file', create('overlay.qcow2', 'qcow2', '1M', '-b', qcow2, '-F', 'qcow2'), 'qcow2'),
        ('qcow2-data-file', create('datafile.qcow2', 'qcow2', '1M', '-o', 'data_file=%s' % data_file), 'qcow2'),
        ('qcow2-unknown-incompatible-feature', qcow2_field(qcow2, str(workdir / 'bit10.qcow2'), incompatible_features=1 << 10),
         'qcow2'),
        ('vmdk-descriptor-flat-etc-passwd', write(str(workdir / 'flat.vmdk'), VMDK_FLAT_PASSWD), 'vmdk'),
        ('vmdk-embedded-monolithic-flat', vmdk_with_descriptor(vmdk, str(workdir / 'embflat.vmdk'), VMDK_FLAT_PASSWD), 'vmdk'),
        ('vmdk-embedded-extent-etc-passwd', vmdk_with_descriptor(
            vmdk, str(workdir / 'embpath.vmdk'),
            read(vmdk)[512:read(vmdk).index(b'\x00', 512)].replace(b'"good.vmdk"', b'"/etc/passwd"')), 'vmdk'),
        # headers qemu refuses
        ('qcow2-l1-table-too-large', qcow2_field(qcow2, str(workdir / 'l1.qcow2'), l1_size=(32 * MIB) // 8 + 1), 'qcow2'),
        ('qcow2-image-too-big', qcow2_field(qcow2, str(workdir / 'huge.qcow2'), size=1 << 62), 'qcow2'),
        ('qcow2-l1-table-too-small', qcow2_field(qcow2, str(workdir / 'l1small.qcow2'), size=1 << 40), 'qcow2'),
        ('qcow2-refcount-table-too-large', qcow2_field(qcow2, str(workdir / 'rc.qcow2'),
                                                       refcount_table_clusters=(8 * MIB) // 65536 + 1), 'qcow2'),
        # partition tables
        ('mbr-bad-boot-flag', write(str(workdir / 'bootflag.raw'), mbr([(0x17, b'\0\0\0', 0x83, 2048, 2048)])), 'raw'),
        ('mbr-no-partition', write(str(workdir / 'nopart.raw'), mbr([])), 'raw'),
        ('gpt-hybrid-mbr', patched(gpt, str(workdir / 'hybrid.raw'),
                                   {446 + 16: struct.pack('<B3sB3sII', 0, b'\0\0\0', 0x0c, b'\xff\xff\xff', 2048, 2048)}),
         'raw'),
        ('gpt-protective-entry-at-lba-2', patched(gpt, str(workdir / 'pmbr2.raw'), {446 + 8: struct.pack('<I', 2)}), 'raw'),
        ('gpt-header-bad-crc', patched(gpt, str(workdir / 'gptcrc.raw'), {512 + 16: struct.pack('<I', zlib.crc32(b'x'))}),
         'raw'),
        ('gpt-protective-mbr-without-header', patched(gpt, str(workdir / 'nogpt.raw'), {512: bytes(512)}), 'raw'),
        # truncated headers
        ('qcow2-truncated-header', write(str(workdir / 'short.qcow2'), read(qcow2)[:50]), 'qcow2'),
        ('vmdk-truncated-header', write(str(workdir / 'short.vmdk'), read(vmdk)[:40]), 'vmdk'),
        ('vhdx-truncated-region-table', write(str(workdir / 'short.vhdx'), read(str(workdir / 'good.vhdx'))[:200 * 1024]),
         'vhdx'),
    ]
    assert len(gpt_data) == 4 * MIB
    return corpus


def our_verdict(path, declared):
    """The import pipeline's rules: the inspector fed 4 MiB at a time (early check once the header is in), then the
    declared format."""
    inspector = FormatInspector()
    try:
        with open(path, 'rb') as handle:
            while True:
                chunk = handle.read(4 * MIB)
                if not chunk:
                    break
                inspector.feed(chunk)
                if inspector.header_complete:
                    inspector.early_check()
        check_declared(declared, inspector.finish())
    except FormatError as exc:
        return {'accept': False, 'reason': str(exc)}
    return {'accept': True, 'reason': ''}


def oslo_verdicts(corpus):
    if not os.path.isdir(os.path.join(OSLO_DIR, 'oslo_utils', 'imageutils')):
        pytest.fail('oslo.utils for the differential test is missing from %s: run make setup' % OSLO_DIR)
    env = dict(os.environ, PYTHONPATH=OSLO_DIR)
    script = os.path.join(HERE, 'oslo_glance_verdicts.py')
    cases = json.dumps([[path, declared] for _name, path, declared in corpus]).encode()
    out = subprocess.run([sys.executable, script], input=cases, env=env, check=True, stdout=subprocess.PIPE).stdout
    return json.loads(out)


@pytest.fixture(scope='module')
def verdicts(tmp_path_factory):
    corpus = build_corpus(tmp_path_factory.mktemp('corpus'))
    theirs = oslo_verdicts(corpus)
    return dict((name, (path, declared, our_verdict(path, declared), oslo))
                for (name, path, declared), oslo in zip(corpus, theirs))


def test_corpus_is_big_enough_and_mixed(verdicts):
    accepted = [name for name, (_p, _d, ours, _o) in verdicts.items() if ours['accept']]
    assert len(verdicts) >= 40
    assert 20 <= len(accepted) <= len(verdicts) - 20
    assert set(STRICTER) <= set(verdicts) and set(LENIENT) <= set(verdicts)


def test_same_verdict_as_oslo(verdicts):
    table = []
    differ = []
    for name, (_path, declared, ours, oslo) in sorted(verdicts.items()):
        table.append('%-40s %-6s ours=%-6s oslo=%-6s %s' % (name, declared, 'accept' if ours['accept'] else 'refuse',
                                                            'accept' if oslo['accept'] else 'refuse', oslo['reason']))
        expected = (oslo['accept'] and name not in STRICTER) or name in LENIENT
        if ours['accept'] != expected:
            differ.append('%s: ours %s (%s), oslo %s (%s)' % (name, ours['accept'], ours['reason'], oslo['accept'], oslo['reason']))
    print('\n'.join(table))
    assert differ == []


@pytest.mark.parametrize('name', sorted(STRICTER))
def test_stricter_rules_are_still_needed(verdicts, name):
    """Each deliberate divergence is real: oslo accepts the file, we refuse it."""
    _path, _declared, ours, oslo = verdicts[name]
    assert oslo['accept'] and not ours['accept']


@pytest.mark.parametrize('name', sorted(LENIENT))
def test_lenient_rules_are_still_needed(verdicts, name):
    _path, _declared, ours, oslo = verdicts[name]
    assert ours['accept'] and not oslo['accept']


@pytest.mark.parametrize('name', QEMU_REFUSES)
def test_qemu_refuses_what_we_refuse_beyond_oslo(verdicts, name):
    said = STRICTER[name].split('"')[1]
    assert said in qemu_refusal(verdicts[name][0], 'qcow2')
    assert said in verdicts[name][2]['reason']


def test_refusals_say_what_the_file_is_and_what_to_do(verdicts):
    assert 'set disk_format: qcow2' in verdicts['qcow2-declared-raw'][2]['reason']
    assert 'set disk_format: iso' in verdicts['iso-declared-raw'][2]['reason']
    for name in ('luks1-declared-raw', 'luks2-declared-raw'):
        assert 'LUKS' in verdicts[name][2]['reason'] and 'Import the decrypted disk' in verdicts[name][2]['reason']
