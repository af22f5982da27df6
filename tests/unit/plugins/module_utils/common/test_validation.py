# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import (
    check_cidr, check_image_id, check_port, check_store_name, check_store_path, parse_checksum, parse_size)


@pytest.mark.parametrize('path', ['/', '/dev', '/proc', '/sys', '/usr/bin', '/bin', '/dev/shm/x', '/proc/1',
                                  '/sys/fs', '//', '/usr/bin/', '/srv/../dev', '/bin/'])
def test_forbidden_store_paths(path):
    with pytest.raises(InvalidArgument, match='forbidden'):
        check_store_path(path)


def test_relative_store_path():
    with pytest.raises(InvalidArgument, match='relative'):
        check_store_path('cloud_bs')


def test_symlink_into_system_path_is_refused(tmp_path):
    link = tmp_path / 'sneaky'
    link.symlink_to('/proc')
    with pytest.raises(InvalidArgument, match='forbidden'):
        check_store_path(str(link))


@pytest.mark.parametrize('path', ['/cloud_bs', '/srv/images/', '/dev_images', '/usr/bin2', '/var/lib/store'])
def test_allowed_store_paths(path):
    assert check_store_path(path) == path.rstrip('/')


@pytest.mark.parametrize('value,expected', [(0, 0), (512, 512), ('1K', 1024), ('50G', 50 << 30), ('1.5M', 3 << 19),
                                            ('2TiB', 2 << 40), ('10 MB', 10 << 20)])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize('value', ['ten', '-1', '5X', True, -3])
def test_parse_size_rejects(value):
    with pytest.raises(InvalidArgument):
        parse_size(value)


def test_cidr():
    assert check_cidr('10.1.0.11/24', 'data_network') == '10.1.0.11/24'
    assert check_cidr('fd00::1/64', 'sync_network') == 'fd00::1/64'
    with pytest.raises(InvalidArgument, match='data_network'):
        check_cidr('10.1.0.300/24', 'data_network')


def test_port():
    assert check_port(22) == 22
    for bad in (0, 65536, '22', True):
        with pytest.raises(InvalidArgument):
            check_port(bad)


def test_checksum_forms():
    assert parse_checksum('SHA256:' + 'A' * 64) == ('sha256', 'a' * 64)
    assert parse_checksum('d' * 32) == ('md5', 'd' * 32)
    assert parse_checksum('e' * 128) == ('sha512', 'e' * 128)
    for bad in ('sha256:abc', 'crc32:1234abcd', 'zz' * 16, 'sha512:' + 'g' * 128):
        with pytest.raises(InvalidArgument):
            parse_checksum(bad)


def test_names_and_ids():
    assert check_store_name('dcn0.edge-1') == 'dcn0.edge-1'
    for bad in ('', '-x', 'a/b', 'a b', 'x' * 64):
        with pytest.raises(InvalidArgument):
            check_store_name(bad)
    assert check_image_id('3F1C5E0A-8F7B-4F64-9B7E-0C2A1D9E4B11') == '3f1c5e0a-8f7b-4f64-9b7e-0c2a1d9e4b11'
    with pytest.raises(InvalidArgument, match='UUID'):
        check_image_id('not-a-uuid')
