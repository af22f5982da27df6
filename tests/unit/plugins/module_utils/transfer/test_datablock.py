# -*- coding: utf-8 -*-
"""Empty datablocks: validated sizes, sparse temporary disks made with real mkfs and qemu-img."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.datablock import Datablock


@pytest.mark.parametrize('size, message', [
    (0, 'is zero'), ('0', 'is zero'), (-1, 'negative'), ('-1', 'not a size'), ('10Q', 'not a size'),
    (None, 'needs size'), (True, 'not a size'), ('65T', 'more than 64 TiB'),
])
def test_bad_sizes_are_refused(size, message):
    with pytest.raises(InvalidArgument, match=message):
        Datablock(size)


def test_bad_filesystem_and_format_are_refused():
    with pytest.raises(InvalidArgument, match='ext4 or xfs'):
        Datablock('1G', filesystem='ntfs')
    with pytest.raises(InvalidArgument, match='raw or qcow2'):
        Datablock('1G', disk_format='vmdk')


def _qemu_info(path):
    return json.loads(subprocess.check_output(['qemu-img', 'info', '--output=json', path]))


def test_raw_disk_is_sparse_and_removed_afterwards(tmp_path):
    block = Datablock('100G')
    with block.make(str(tmp_path)) as source:
        stat = os.stat(source.path)
        assert stat.st_size == 100 * 1024 ** 3 and stat.st_blocks == 0
        directory = os.path.dirname(source.path)
    assert not os.path.exists(directory)


@pytest.mark.parametrize('filesystem', ['ext4', 'xfs'])
def test_filesystem_is_made_on_the_temporary_file(tmp_path, filesystem):
    with Datablock('512M', filesystem=filesystem).make(str(tmp_path)) as source:
        kind = subprocess.check_output(['blkid', '-o', 'value', '-s', 'TYPE', source.path]).decode().strip()
        assert kind == filesystem
        assert os.stat(source.path).st_blocks * 512 < 512 * 1024 ** 2 // 4  # mkfs wrote metadata (and a zeroed xfs log) only


def test_qcow2_datablocks(tmp_path):
    with Datablock('3G', disk_format='qcow2').make(str(tmp_path)) as source:
        info = _qemu_info(source.path)
        assert info['format'] == 'qcow2' and info['virtual-size'] == 3 * 1024 ** 3
    with Datablock('1G', filesystem='ext4', disk_format='qcow2').make(str(tmp_path)) as source:
        assert _qemu_info(source.path)['virtual-size'] == 1024 ** 3
        assert os.path.getsize(source.path) < 64 * 1024 ** 2


def test_missing_mkfs_is_a_clear_error(tmp_path, monkeypatch):
    from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import SourceError
    monkeypatch.setenv('PATH', str(tmp_path))  # no mkfs on this PATH: as on a host without e2fsprogs
    with pytest.raises(SourceError, match='install e2fsprogs'):
        with Datablock('64M', filesystem='ext4').make(str(tmp_path)):
            pass
    assert os.listdir(str(tmp_path)) == []
