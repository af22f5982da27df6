# -*- coding: utf-8 -*-
"""Direct store-to-store sync and the fan-out chain (images/fanout.py, stores/pull.py) over real SSH.

Every store here is "on another host" (an sshd on loopback); each store host's agent finds the stores it may
fetch from in the registry the sshd points it at, as the store_host role sets up on real hosts.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.images import fanout
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry

from conftest import Sshd
from image_files import export_sha512, leftovers, sha512_of, stored_slices


def exported(registry, name, store, tmp_path):
    return export_sha512(registry, name, store, tmp_path / ('%s-%s.out' % (name, store)))


def test_a_copy_between_two_other_hosts_goes_host_to_host(remote_store, image_request, make_raw, registry, tmp_path):
    central = remote_store('central', site_role='central')
    edge1 = remote_store('edge1', site_role='edge')
    src = make_raw('a.raw', [1, 2, None, 3])
    image_request(name='a', src=src, stores=['central']).present(False)
    copy = image_request(name='a', stores=['central', 'edge1'])
    assert copy.present(False) is True
    assert copy.actions == ['copy to edge1 from central (store to store: edge1 from central)'] and copy.notes == []
    assert stored_slices(edge1) == stored_slices(central)
    assert exported(registry, 'a', 'edge1', tmp_path) == sha512_of(src)
    assert leftovers(edge1) == ['images/%s' % copy.result()['id']]
    assert image_request(name='a', stores=['central', 'edge1']).present(False) is False


def test_a_fan_out_goes_down_a_chain_and_sends_only_what_each_store_lacks(remote_store, image_request, make_raw, registry, tmp_path):
    remote_store('central', site_role='central')
    edges = ['edge1', 'edge2', 'edge3']
    paths = dict((name, remote_store(name, site_role='edge')) for name in edges)
    # edge2 holds one slice of the image already (an older version): it is not sent there again
    image_request(name='old', src=make_raw('old.raw', [7]), stores=['central', 'edge2']).present(False)
    src = make_raw('b.raw', [7, 8, 9, None, 10])
    image_request(name='b', src=src, stores=['central']).present(False)
    fan = image_request(name='b', stores=['central'] + edges)
    assert fan.present(False) is True
    assert fan.actions == ['copy to edge1, edge2, edge3 from central '
                           '(store to store: edge1 from central, edge2 from edge1, edge3 from edge2)'], fan.actions
    for name in edges:
        assert exported(registry, 'b', name, tmp_path) == sha512_of(src)
        assert not os.listdir(os.path.join(paths[name], 'staging'))
    assert image_request(name='b', stores=['central'] + edges).present(False) is False


def test_a_store_host_that_does_not_know_the_source_gets_the_data_relayed(remote_store, image_request, make_raw, registry, tmp_path):
    remote_store('central', site_role='central')
    # edge9's host has a registry of its own, without central: it cannot fetch from central itself
    lonely_registry = Registry(str(tmp_path / 'edge9-host-registry'))
    directory = str(tmp_path / 'sshd-edge9')
    os.mkdir(directory)
    lonely = Sshd(directory, lonely_registry.directory)
    try:
        path = str(tmp_path / 'remote' / 'edge9')
        StoreDeclaration(lonely_registry, {'name': 'edge9', 'path': path, 'site_role': 'edge'}).present(check_mode=False)
        StoreDeclaration(registry, dict(lonely.connection(), name='edge9', path=path)).present(check_mode=False)
        src = make_raw('c.raw', [11, 12])
        image_request(name='c', src=src, stores=['central']).present(False)
        copy = image_request(name='c', stores=['central', 'edge9'])
        assert copy.present(False) is True
        assert copy.actions == ['copy to edge9 from central']
        assert len(copy.notes) == 1 and "store 'edge9' has no direct route to central" in copy.notes[0]
        assert 'declares no store with id' in copy.notes[0] and 'multistore_remote_stores' in copy.notes[0]
        assert exported(registry, 'c', 'edge9', tmp_path) == sha512_of(src)
    finally:
        lonely.stop()


def test_a_chain_link_that_stalls_is_passed_over(remote_store, image_request, make_raw, registry, tmp_path, monkeypatch):
    """edge1 cannot write (its staging directory is made immutable): edge2, which reads edge1's staged slices,
    waits STALL_SECONDS for nothing, then fetches from central; edge1 fails alone (allow_failure)."""
    import subprocess
    monkeypatch.setattr(fanout, 'STALL_SECONDS', 2)
    remote_store('central', site_role='central')
    edge1 = remote_store('edge1', site_role='edge')
    remote_store('edge2', site_role='edge')
    src = make_raw('d.raw', [21, 22, 23])
    imported = image_request(name='d', src=src, stores=['central'])
    imported.present(False)
    image_id = imported.result()['id']
    staging = os.path.join(edge1, 'staging', '%s.partial' % image_id)
    os.makedirs(staging)
    if subprocess.run(['chattr', '+i', staging], check=False, capture_output=True).returncode != 0:
        pytest.skip('chattr +i is refused on this filesystem')
    try:
        copy = image_request(name='d', stores=['central', 'edge1', 'edge2'], allow_failure=True)
        assert copy.present(False) is True
    finally:
        subprocess.run(['chattr', '-i', staging], check=False)
    assert [failure['store'] for failure in copy.failed_import] == ['edge1']
    assert 'direct sync failed' in copy.failed_import[0]['error']
    assert copy.result()['stores'] == ['central', 'edge2']
    assert 'edge2 from central' in copy.actions[0], copy.actions
    assert exported(registry, 'd', 'edge2', tmp_path) == sha512_of(src)
    # the next run completes edge1
    again = image_request(name='d', stores=['central', 'edge1', 'edge2'])
    assert again.present(False) is True and again.result()['stores'] == ['central', 'edge1', 'edge2']


def test_an_import_into_many_store_hosts_is_written_once_and_fans_out(remote_store, image_request, make_raw, registry, tmp_path):
    paths = dict((name, remote_store(name, site_role='central' if name == 'central' else 'edge')) for name in ('central', 'edge1', 'edge2'))
    src = make_raw('e.raw', [31, 32, None, 33, 31])
    imported = image_request(name='e', src=src, stores=['edge2', 'central', 'edge1'])
    assert imported.present(False) is True
    assert imported.actions == ['import %s into edge2, central, edge1 (store to store: edge1 from central, edge2 from edge1)' % src], \
        imported.actions
    assert imported.result()['stores'] == ['central', 'edge1', 'edge2']
    for name, path in paths.items():
        assert exported(registry, 'e', name, tmp_path) == sha512_of(src)
        assert leftovers(path) == ['images/%s' % imported.result()['id']]
    assert stored_slices(paths['edge2']) == stored_slices(paths['central'])
    assert image_request(name='e', src=src, stores=['edge2', 'central', 'edge1']).present(False) is False


def host_with_registry(tmp_path, name):
    """(sshd, registry) of a store host with a registry of its own (what that host declares, and nothing else)."""
    own = Registry(str(tmp_path / ('%s-host-registry' % name)))
    directory = str(tmp_path / ('sshd-%s' % name))
    os.mkdir(directory)
    return Sshd(directory, own.directory), own


def test_an_import_fans_out_from_a_store_on_this_host(sshd, image_request, make_raw, registry, tmp_path):
    """The origin is this host's own store: the store hosts fetch from it over SSH, as they register it (role:
    multistore_remote_stores); one that cannot gets the image relayed by this host from the staged import."""
    central = str(tmp_path / 'central')
    StoreDeclaration(registry, {'name': 'central', 'path': central, 'site_role': 'central'}).present(check_mode=False)
    edge1_host, edge1_registry = host_with_registry(tmp_path, 'edge1')
    lonely, lonely_registry = host_with_registry(tmp_path, 'edge9')
    try:
        paths = {}
        for name, host, own in (('edge1', edge1_host, edge1_registry), ('edge9', lonely, lonely_registry)):
            paths[name] = str(tmp_path / 'remote' / name)
            StoreDeclaration(own, {'name': name, 'path': paths[name], 'site_role': 'edge'}).present(check_mode=False)
            StoreDeclaration(registry, dict(host.connection(), name=name, path=paths[name])).present(check_mode=False)
        # edge1's host reaches this host's store over SSH; edge9's host does not know it
        StoreDeclaration(edge1_registry, dict(sshd.connection(), name='central', path=central)).present(check_mode=False)
        src = make_raw('f.raw', [41, 42, 43])
        imported = image_request(name='f', src=src, stores=['central', 'edge1', 'edge9'])
        assert imported.present(False) is True
        assert imported.actions == ['import %s into central, edge1, edge9 (store to store: edge1 from central)' % src], \
            (imported.actions, str(imported.notes))
        assert len(imported.notes) == 1 and "store 'edge9' has no direct route to central" in imported.notes[0], imported.notes
        for name in ('central', 'edge1', 'edge9'):
            assert exported(registry, 'f', name, tmp_path) == sha512_of(src)
        for path in (central, paths['edge1'], paths['edge9']):
            assert not os.listdir(os.path.join(path, 'staging'))
    finally:
        edge1_host.stop()
        lonely.stop()


def test_an_import_into_one_store_host_beside_the_origin_is_written_in_the_same_pass(remote_store, image_request, make_raw):
    remote_store('central', site_role='central')
    remote_store('edge1', site_role='edge')
    src = make_raw('g.raw', [51, 52])
    imported = image_request(name='g', src=src, stores=['central', 'edge1'])
    assert imported.present(False) is True
    assert imported.actions == ['import %s into central, edge1' % src], imported.actions
