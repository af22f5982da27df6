# -*- coding: utf-8 -*-
"""The cinder store reached through a real Keystone v3 (the lab's keystone-wsgi-public on its MariaDB, fernet tokens)
and a cinder-api that checks the tokens (auth_strategy = keystone): as an operator declares it with auth_url."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.cinder_volumes import CinderVolumes
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe

from image_files import sha512_of

pytestmark = [pytest.mark.ceph, pytest.mark.cinder]

MIB = 1024 * 1024


def declare(registry, params, name='ks'):
    return StoreDeclaration(registry, dict(params, name=name)).present(check_mode=False)


def test_a_store_through_keystone_imports_exports_and_deletes(registry, keystone_params, image_request, tmp_path, cinder_cloud):
    assert declare(registry, keystone_params()) is True
    assert declare(registry, keystone_params()) is False
    store = registry.open('ks')
    assert store.status() == 'connected'
    info = describe(store)
    assert info['volume_type'] == 'ceph-b' and 'password' not in info and info['auth_url'] == cinder_cloud['keystone']['auth_url']
    src = str(tmp_path / 'disk.raw')
    with open(src, 'wb') as handle:
        handle.write(os.urandom(3 * MIB + 5))
    assert image_request(name='ks-img', src=src, disk_format='raw', stores=['ks']).present(check_mode=False) is True
    catalog = Catalog(registry)
    view = catalog.find(name='ks-img')
    # the volume lives in the Keystone project `multistore`, made by the user `multistore` through its token
    volume = store.backend.volume(view.id)
    assert volume.name == 'image-%s' % view.id and volume.metadata['glance_image_id'] == view.id
    Export(catalog, view, 'ks', str(tmp_path / 'out.raw')).run()
    assert sha512_of(str(tmp_path / 'out.raw')) == sha512_of(src)
    assert image_request(name='ks-img', state='absent').absent(check_mode=False) is True
    assert store.backend.volumes.get(volume.id) is None


@pytest.mark.parametrize('change, message', [
    ({'password': 'not-the-password'}, r'\(HTTP 401\).*: check user, password, project and the domains of the store'),
    ({'user': 'nobody'}, r'\(HTTP 401\).*: check user, password, project and the domains of the store'),
    ({'project': 'nowhere'}, r'\(HTTP 401\).*: check user, password, project and the domains of the store'),
    ({'user_domain': 'Elsewhere'}, r'\(HTTP 401\).*: check user, password, project and the domains of the store'),
    ({'region': 'RegionTwo'}, r'the Keystone catalog has no volumev3 endpoint in region RegionTwo'),
])
def test_wrong_keystone_credentials_are_refused_clearly_and_change_nothing(registry, keystone_params, cinder_cloud, change, message):
    params = keystone_params(**change)
    with pytest.raises(StoreError, match=message) as failure:
        declare(registry, params)
    assert "store 'ks' (Cinder %s" % cinder_cloud['keystone']['auth_url'] in str(failure.value)
    assert cinder_cloud['keystone']['password'] not in str(failure.value)
    assert registry.names() == []
    # nothing was made in Cinder either (the right credentials see no volume)
    assert CinderVolumes('probe', keystone_params()).client().volumes.list() == []


def test_keystone_down_is_a_clear_error(registry, keystone_params):
    with pytest.raises(StoreError, match=r'is the Cinder API \(or Keystone\) at http://127.0.0.1:9/v3 up and reachable'):
        declare(registry, keystone_params(auth_url='http://127.0.0.1:9/v3'))
    assert registry.names() == []
