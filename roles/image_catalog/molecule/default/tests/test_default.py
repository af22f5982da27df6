# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule verify (testinfra): what the catalog must have left on the three lab hosts.

Every image is in exactly the stores the catalog lists, one id everywhere, carrying the catalog's tag; every
copy exports byte-identical to its source on central; the copies to the edges came over the image-sync network.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest
import testinfra

INVENTORY = os.environ.get('MOLECULE_INVENTORY_FILE')
SOURCES = {'debian-like': '/var/tmp/catalog-src/disk.qcow2', 'tools-iso': '/var/tmp/catalog-src/tools.raw'}
# image -> the stores it must be in; each host sees its own store and central's (registered)
EXPECTED = {'debian-like': ['central', 'edge1', 'edge2'], 'tools-iso': ['central', 'edge2'], 'scratch': ['central', 'edge1']}
OWN_STORE = {'central': 'central', 'edge1': 'edge1', 'edge2': 'edge2'}

pytestmark = pytest.mark.skipif(not INVENTORY, reason='run by molecule verify (MOLECULE_INVENTORY_FILE)')

_hosts = {}


def lab(name):
    if name not in _hosts:
        _hosts[name] = testinfra.get_host('ansible://%s' % name, ansible_inventory=INVENTORY)
    return _hosts[name]


def module(host, name, args, check=False):
    result = host.ansible(name, args, check=check)
    assert not result.get('failed'), result.get('msg', result)
    return result


def images(name):
    return dict((image['name'], image) for image in module(lab(name), 'vmimages.multistore.image_info', '')['images'])


@pytest.mark.parametrize('name', sorted(OWN_STORE))
def test_images_are_in_the_stores_the_catalog_lists(name):
    found = images(name)
    own = OWN_STORE[name]
    for image, stores in EXPECTED.items():
        if own in stores:
            assert own in found[image]['stores'], (image, found.get(image))
            assert found[image]['status'] == 'active' and 'multistore-catalog' in found[image]['tags']
        elif image in found:
            assert own not in found[image]['stores']
    assert 'retired' not in found


def test_one_id_per_image_on_every_host():
    ids = {}
    for name in OWN_STORE:
        for image, info in images(name).items():
            ids.setdefault(image, set()).add(info['id'])
    assert all(len(found) == 1 for found in ids.values()), ids


def test_catalog_metadata_and_datablock():
    found = images('edge1')
    assert found['debian-like']['bus'] == 'virtio' and found['debian-like']['properties']['hw_disk_bus'] == 'virtio'
    assert 'linux' in found['debian-like']['tags']
    assert found['scratch']['image_type'] == 'datablock' and found['scratch']['size'] == 1024 ** 3


@pytest.mark.parametrize('name', sorted(OWN_STORE))
def test_exports_are_byte_identical_to_the_sources(name):
    host, own = lab(name), OWN_STORE[name]
    central = lab('central')
    for image, source in sorted(SOURCES.items()):
        if own not in EXPECTED[image]:
            continue
        dest = '/var/tmp/verify-%s' % image
        module(host, 'vmimages.multistore.image_export', 'name=%s store=%s dest=%s' % (image, own, dest))
        exported = host.check_output('sha256sum %s' % dest).split()[0]
        assert exported == central.check_output('sha256sum %s' % source).split()[0], (name, image)
        host.run('rm -f %s' % dest)


def test_the_edges_received_over_the_sync_network():
    for name in ('edge1', 'edge2'):
        store = [s for s in module(lab(name), 'vmimages.multistore.store_info', '')['stores'] if s['name'] == 'central'][0]
        assert store['address'] == '10.203.0.11' and not store.get('address_note'), store
