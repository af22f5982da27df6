# -*- coding: utf-8 -*-
"""The stricter format rules end to end: an import of a file that is another format than it claims, a LUKS volume, an
insane partition table or a qcow2 header qemu refuses fails before the commit and leaves every store as it was."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import struct
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import FormatError, ImageError

from image_files import leftovers, stored_slices


def tree(path):
    """Every file of a store with its size: what a refused import must leave untouched."""
    found = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, path)] = os.path.getsize(full)
    return found


@pytest.fixture
def store_with_an_image(declare, image_request, make_raw):
    path = declare('central')
    image_request(name='kept', src=make_raw('kept.raw', [1, 2]), stores=['central']).present(False)
    return path


def luks(tmp_path):
    """A LUKS1 volume in a file (cryptsetup; PBKDF2 with the fewest iterations, so no benchmark)."""
    path = str(tmp_path / 'volume.img')
    with open(path, 'wb') as handle:
        handle.truncate(8 << 20)
    (tmp_path / 'key').write_bytes(b'123456')
    subprocess.check_call(['cryptsetup', 'luksFormat', '-q', '--type', 'luks1', '--pbkdf-force-iterations', '1000',
                           '--key-file', str(tmp_path / 'key'), path])
    return path


def qcow2(tmp_path, make_raw, name='disk.qcow2'):
    path = str(tmp_path / name)
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', make_raw('src.raw', [1, 2, None]), path])
    return path


def mbr_without_partitions(tmp_path, make_raw):
    path = make_raw('disk.raw', [1, None])
    with open(path, 'r+b') as handle:
        handle.seek(446)
        handle.write(bytes(64) + b'\x55\xaa')
    return path


def qcow2_with_huge_l1(tmp_path, make_raw):
    path = qcow2(tmp_path, make_raw, 'hostile.qcow2')
    with open(path, 'r+b') as handle:
        handle.seek(36)
        handle.write(struct.pack('>I', 32 * 1024 * 1024 // 8 + 1))
    return path


@pytest.mark.parametrize('make, declared, message', [
    (lambda tmp_path, make_raw: luks(tmp_path), 'raw', 'the bytes are a LUKS1 encrypted volume'),
    (lambda tmp_path, make_raw: luks(tmp_path), None, 'the bytes are a LUKS1 encrypted volume'),
    (qcow2, 'raw', 'the bytes are a qcow2 image but disk_format is raw: set disk_format: qcow2'),
    (mbr_without_partitions, 'raw', 'an MBR .* that has no partition'),
    (mbr_without_partitions, None, 'an MBR .* that has no partition'),
    (qcow2_with_huge_l1, 'qcow2', 'Active L1 table too large'),
], ids=['luks-declared-raw', 'luks-undeclared', 'qcow2-declared-raw', 'empty-mbr', 'empty-mbr-undeclared', 'qcow2-huge-l1'])
def test_refused_import_leaves_the_store_unchanged(store_with_an_image, image_request, make_raw, tmp_path, make, declared,
                                                   message):
    before = tree(store_with_an_image)
    params = dict(name='hostile', src=make(tmp_path, make_raw), stores=['central'])
    if declared:
        params['disk_format'] = declared
    with pytest.raises(FormatError, match=message):
        image_request(**params).present(False)
    assert tree(store_with_an_image) == before
    with pytest.raises(ImageError, match="image 'hostile' is in no store"):
        image_request(name='hostile').present(True)


def test_iso_declared_raw_is_refused_but_an_iso_inside_a_converted_qcow2_is_not(declare, image_request, tmp_path):
    central = declare('central')
    content = tmp_path / 'content'
    content.mkdir()
    (content / 'meta_data.json').write_text('{}')
    iso = str(tmp_path / 'config.iso')
    subprocess.check_call(['xorriso', '-as', 'mkisofs', '-quiet', '-V', 'cidata', '-o', iso, str(content)])
    with pytest.raises(FormatError, match='set disk_format: iso'):
        image_request(name='cd', src=iso, disk_format='raw', stores=['central']).present(False)
    assert stored_slices(central) == [] and leftovers(central) == []
    image_request(name='cd', src=iso, disk_format='iso', stores=['central']).present(False)
    # qemu-img's raw output of a vetted qcow2 is the guest's disk, here an ISO 9660 filesystem: stored as raw
    wrapped = str(tmp_path / 'cd.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', iso, wrapped])
    request = image_request(name='cd-disk', src=wrapped, disk_format='qcow2', convert_to='raw', stores=['central'])
    assert request.present(False) is True and request.result()['disk_format'] == 'raw'
