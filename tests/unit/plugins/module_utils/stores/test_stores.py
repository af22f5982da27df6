# -*- coding: utf-8 -*-
"""Store declaration on real directories: identity, idempotency, safety against unmounted paths."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe


def test_declare_initializes_identity_and_is_idempotent(registry, tmp_path):
    path = str(tmp_path / 'central')
    params = {'name': 'central', 'path': path, 'zone': 'zone-a', 'site_role': 'central', 'quota': {'bytes': '1G', 'images': 3}}
    assert StoreDeclaration(registry, dict(params)).present(check_mode=False) is True
    identity = json.load(open(os.path.join(path, 'multistore.json')))
    assert identity['name'] == 'central' and identity['zone'] == 'zone-a' and identity['layout'] == 1
    assert identity['quota'] == {'bytes': 1 << 30, 'images': 3}
    for sub in ('slices', 'images', 'staging', 'locks'):
        assert os.path.isdir(os.path.join(path, sub))
    mtime = os.stat(os.path.join(path, 'multistore.json')).st_mtime_ns
    assert StoreDeclaration(registry, dict(params)).present(check_mode=False) is False
    assert os.stat(os.path.join(path, 'multistore.json')).st_mtime_ns == mtime
    info = describe(registry.open('central'))
    assert info['status'] == 'connected' and info['image_count'] == 0 and info['capacity'] > 0


def test_check_mode_creates_nothing(registry, tmp_path):
    path = str(tmp_path / 'new')
    declaration = StoreDeclaration(registry, {'name': 'new', 'path': path})
    assert declaration.present(check_mode=True) is True
    assert not os.path.exists(path) and registry.names() == []
    assert declaration.after['path'] == path and declaration.before == {}


def test_change_is_reported_in_diff(registry, declare):
    declare('edge', zone='a')
    declaration = StoreDeclaration(registry, {'name': 'edge', 'path': registry.declaration('edge')['path'], 'zone': 'b'})
    assert declaration.present(check_mode=False) is True
    assert (declaration.before['zone'], declaration.after['zone']) == ('a', 'b')


def test_absent_keeps_data_and_redeclare_finds_it(registry, declare, image_request, make_raw):
    path = declare('central')
    image_request(name='img', src=make_raw('a.raw', [1, 2]), stores=['central']).present(False)
    store_id = registry.declaration('central')['id']
    assert StoreDeclaration(registry, {'name': 'central'}).absent(check_mode=False) is True
    assert registry.names() == [] and os.path.exists(os.path.join(path, 'multistore.json'))
    assert StoreDeclaration(registry, {'name': 'central'}).absent(check_mode=False) is False
    StoreDeclaration(registry, {'name': 'again', 'path': path}).present(check_mode=False)
    assert registry.declaration('again')['id'] == store_id
    assert describe(registry.open('again'))['image_count'] == 1


def test_unmounted_path_is_not_reinitialized(registry, declare):
    path = declare('central')
    os.rename(os.path.join(path, 'multistore.json'), os.path.join(path, 'gone.json'))
    with pytest.raises(StoreError, match='is the filesystem mounted'):
        StoreDeclaration(registry, {'name': 'central', 'path': path}).present(check_mode=False)
    assert not os.path.exists(os.path.join(path, 'multistore.json'))
    assert describe(registry.open('central'))['status'] == 'disconnected'


def test_one_path_one_store(registry, declare):
    path = declare('central')
    with pytest.raises(InvalidArgument, match="already declared as store 'central'"):
        StoreDeclaration(registry, {'name': 'other', 'path': path}).present(check_mode=False)


def test_forbidden_path_touches_nothing(registry):
    with pytest.raises(InvalidArgument, match='forbidden'):
        StoreDeclaration(registry, {'name': 'bad', 'path': '/proc/images'}).present(check_mode=False)
    assert registry.names() == []


def test_bad_network_and_quota(registry, tmp_path):
    with pytest.raises(InvalidArgument, match='sync_network'):
        StoreDeclaration(registry, {'name': 's', 'path': str(tmp_path / 's'), 'sync_network': '10.2.0/24'}).present(False)
    with pytest.raises(InvalidArgument, match='quota.bytes'):
        StoreDeclaration(registry, {'name': 's', 'path': str(tmp_path / 's'), 'quota': {'bytes': 'lots'}}).present(False)
    assert not os.path.exists(str(tmp_path / 's'))


def test_disabled_store_reports_disabled(registry, declare):
    declare('dcn0', enabled=False)
    assert describe(registry.open('dcn0'))['status'] == 'disabled'
