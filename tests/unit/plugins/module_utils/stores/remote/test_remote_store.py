# -*- coding: utf-8 -*-
"""File stores on another host over real SSH (a private sshd on loopback): copies both ways, resume, host keys."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import threading
import time

import pytest

from ansible.module_utils.common.warnings import get_warning_messages

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError, TransferInterrupted
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import read_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.locks import ExpiringLock
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.ssh_channel import choose_address

from image_files import leftovers, slice_bytes, stored_slices
from killed_run import kill_group, start_paused


def test_remote_store_reports_connected_with_capacity(remote_store, registry):
    remote_store('central', zone='zone-a', site_role='central')
    info = describe(registry.open('central'))
    assert info['status'] == 'connected' and info['host'] == '127.0.0.1'
    assert info['zone'] == 'zone-a' and info['capacity'] > 0 and info['image_count'] == 0


def test_remote_declaration_needs_the_store_declared_on_its_host(sshd, registry, tmp_path):
    with pytest.raises(StoreError, match='declare it on its own host first'):
        StoreDeclaration(registry, dict(sshd.connection(), name='x', path=str(tmp_path / 'nothing'))).present(False)
    assert registry.names() == []


def test_push_and_pull_move_only_missing_slices_verified(remote_store, declare, image_request, make_raw, registry):
    central = remote_store('central')
    edge = declare('edge')
    first = image_request(name='a', src=make_raw('a.raw', [1, 2, None, 3]), stores=['edge'])
    first.present(False)
    push = image_request(name='a', stores=['edge', 'central'])
    assert push.present(False) is True and push.actions == ['copy to central from edge']
    info = push.result()
    assert info['stores'] == ['central', 'edge']
    assert info['locations'][0]['url'] == 'file://127.0.0.1%s/images/%s' % (central, info['id'])
    assert stored_slices(central) == stored_slices(edge)
    assert image_request(name='a', stores=['edge', 'central']).present(False) is False
    # a new version at the central store, pulled to a fresh local store: v2 shares slices 1 and 3
    image_request(name='b', src=make_raw('b.raw', [1, 4, 3]), stores=['edge']).present(False)
    image_request(name='b', stores=['central']).present(False)
    pulled = declare('pulled')
    pull = image_request(name='b', stores=['pulled'])
    assert pull.present(False) is True
    assert pull.actions == ['copy to pulled from edge'] or pull.actions == ['copy to pulled from central']
    expected = sorted(hashlib.sha256(slice_bytes(n)).hexdigest() for n in (1, 4, 3))
    assert stored_slices(pulled) == expected and leftovers(central) == sorted('images/%s' % i for i in os.listdir(os.path.join(central, 'images')))


def test_pull_from_remote_only_source(remote_store, declare, image_request, make_raw, store_host_registry, registry):
    central = remote_store('central', site_role='central')
    # the image exists only in the remote store: import it there through its own host's registry
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import ImageRequest
    ImageRequest(Catalog(store_host_registry), {'name': 'only-remote', 'src': make_raw('r.raw', [5, 6]), 'stores': ['central'],
                                                'container_format': 'bare'}).present(False)
    declare('dcn0', site_role='edge')
    request = image_request(name='only-remote', stores=['dcn0'])
    assert request.present(False) is True and request.actions == ['copy to dcn0 from central']
    assert request.result()['stores'] == ['central', 'dcn0']
    assert len(stored_slices(central)) == 2


def test_delete_on_remote_store(remote_store, declare, image_request, make_raw):
    central = remote_store('central')
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central']).present(False)
    assert len(stored_slices(central)) == 2
    request = image_request(name='a', stores=['central'], state='absent')
    assert request.absent(False) is True and request.released == 2 * 4 * 1024 * 1024
    assert stored_slices(central) == [] and request.result() == {}


def test_sync_network_is_preferred(sshd, remote_store, registry, declare, image_request, make_raw):
    # The store host's sync address is 127.0.0.5/8, a network this host shares: traffic goes there.
    remote_store('central', sync_network='127.0.0.5/8', data_network='10.254.254.1/24')
    declaration = registry.declaration('central')
    assert declaration['sync_address'] == '127.0.0.5/8'
    assert choose_address(declaration) == ('127.0.0.5', None)
    assert describe(registry.open('central'))['address'] == '127.0.0.5'
    image_request(name='a', src=make_raw('a.raw', [1]), stores=['central']).present(False)
    assert ' on 127.0.0.5 port %d' % sshd.port in open(sshd.log).read()


def test_an_address_this_host_cannot_use_is_reported_not_skipped_silently(sshd, remote_store, registry, image_request, make_raw):
    remote_store('central', sync_network='10.254.253.11/24', data_network='10.254.254.11/24')
    address, note = choose_address(registry.declaration('central'))
    assert address == '127.0.0.1'
    assert note.startswith('sync address 10.254.253.11/24 not used: this host has no address in 10.254.253.0/24 (its addresses: 127.0.0.1/8 on lo')
    assert 'store_host role: multistore_networks.sync); data address 10.254.254.11/24 not used' in note
    assert note.endswith('multistore_networks.data); using 127.0.0.1')
    info = describe(registry.open('central'))
    assert info['status'] == 'connected' and info['address'] == '127.0.0.1' and info['address_note'] == note
    # a module that copies through this connection returns the note as a warning
    image_request(name='a', src=make_raw('a.raw', [1]), stores=['central']).present(False)
    assert "store 'central': %s" % note in get_warning_messages()
    # the data network is shared: the data address, and the note says why not the sync one
    declaration = dict(registry.declaration('central'), data_address='127.0.0.5/8')
    address, note = choose_address(declaration)
    assert address == '127.0.0.5' and note.startswith('sync address 10.254.253.11/24 not used')
    assert note.endswith('multistore_networks.sync); using the data address 127.0.0.5')
    # a bare network registered by an older collection is not dialled, and the note says how to fix it
    address, note = choose_address(dict(declaration, sync_address='127.0.0.0/8', data_address=None))
    assert address == '127.0.0.1' and 'sync address 127.0.0.0/8 is a network' in note and 'register the store here again' in note
    # a connection that fails carries the note in its error
    registry.save(dict(registry.declaration('central'), port=1))
    assert 'sync address 10.254.253.11/24 not used' in describe(registry.open('central'))['error']


def test_a_declared_network_is_registered_as_the_store_hosts_address(sshd, remote_store, registry, store_host_registry,
                                                                     image_request, make_raw):
    # Declared on its host as the network 127.0.0.0/8: the store host resolves it to its own 127.0.0.1/8.
    central = remote_store('central', sync_network='127.0.0.0/8')
    owner = describe(store_host_registry.open('central'))
    assert (owner['sync_network'], owner['sync_address']) == ('127.0.0.0/8', '127.0.0.1/8')
    declaration = registry.declaration('central')
    assert declaration['sync_address'] == '127.0.0.1/8' and declaration['data_address'] is None
    assert choose_address(declaration) == ('127.0.0.1', None)
    info = describe(registry.open('central'))
    assert (info['sync_network'], info['sync_address'], info['address'], info['address_note']) == ('127.0.0.0/8', '127.0.0.1/8', '127.0.0.1', None)
    again = StoreDeclaration(registry, dict(sshd.connection(), name='central', path=central))
    assert again.present(check_mode=False) is False
    image_request(name='a', src=make_raw('a.raw', [1, 2]), stores=['central']).present(False)
    assert len(stored_slices(central)) == 2


def test_unknown_host_key_is_refused(sshd, remote_store, registry, tmp_path):
    remote_store('central')
    declaration = registry.declaration('central')
    other = str(tmp_path / 'other_known_hosts')
    with open(other, 'w') as handle:
        handle.write('127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMUb8fJc6p2Ay5bJ5FqQhW7oMhHjJ1Y0mW0nqXjJb6Xo\n')
    declaration['known_hosts'] = other
    registry.save(declaration)
    info = describe(registry.open('central'))
    assert info['status'] == 'disconnected' and 'host key' in info['error'].lower()


def test_unreachable_store_is_disconnected_and_imports_fail_clearly(sshd, remote_store, registry, declare, image_request, make_raw):
    remote_store('central')
    sshd.stop()
    assert describe(registry.open('central'))['status'] == 'disconnected'
    declare('edge')
    with pytest.raises(StoreError, match="'central' is disconnected"):
        image_request(name='a', src=make_raw('a.raw', [1]), stores=['edge', 'central']).present(False)


def test_interrupted_copy_resumes_with_only_missing_slices(remote_store, declare, image_request, make_raw, registry):
    central = remote_store('central')
    declare('edge')
    seeds = list(range(100, 140))
    image_request(name='big', src=make_raw('big.raw', seeds), stores=['edge']).present(False)
    request = image_request(name='big', stores=['central'])
    staging = os.path.join(central, 'staging')

    def cut_the_line():
        deadline = time.time() + 60
        while time.time() < deadline:
            partial = [d for d in os.listdir(staging) if d.endswith('.partial')]
            if partial and len(os.listdir(os.path.join(staging, partial[0]))) >= 10:
                connection = request.catalog.store('central').backend._agent  # pylint: disable=protected-access
                connection.process.kill()  # the network link dies mid-transfer
                return
            time.sleep(0.002)

    killer = threading.Thread(target=cut_the_line)
    killer.start()
    with pytest.raises(TransferInterrupted, match='run again to resume'):
        request.present(False)
    killer.join()
    partial_dir = os.path.join(staging, [d for d in os.listdir(staging) if d.endswith('.partial')][0])
    # The agent on the store host drains what was already in the pipe before it sees the end: let it settle.
    listing = None
    while listing != sorted(os.listdir(partial_dir)):
        listing = sorted(os.listdir(partial_dir))
        time.sleep(0.5)
    staged = len([n for n in listing if len(n) == 64])
    assert 1 <= staged < len(seeds)
    assert Catalog(registry).find(name='big').active_stores() == ['edge']  # nothing half-visible
    retry = image_request(name='big', stores=['central'])
    assert retry.present(False) is True
    assert retry.actions == ['copy to central from edge (resumed: %d slices were already there)' % staged]
    assert retry.result()['stores'] == ['central', 'edge'] and len(stored_slices(central)) == len(seeds)
    assert os.listdir(staging) == []


def test_an_abandoned_slice_stream_does_not_confuse_later_calls(remote_store, image_request, make_raw, registry):
    remote_store('central')
    image_request(name='a', src=make_raw('a.raw', [1, 2, 3, 4, 5, 6, 7, 8]), stores=['central']).present(False)
    backend = Catalog(registry).store('central').backend
    digests = sorted(backend.read_slice_list(Catalog(registry).find(name='a').id).digests())
    stream = backend.read_slices(digests)
    digest, view = next(stream)
    assert hashlib.sha256(view).hexdigest() == digest
    stream.close()  # the caller gives up after one slice; seven are still on their way
    assert backend.read_record(Catalog(registry).find(name='a').id)['name'] == 'a'
    assert backend.missing_slices(digests) == []
    assert [d for d, _view in backend.read_slices(digests[:3])] == digests[:3]


def test_a_killed_run_leaves_a_lock_of_the_agent_that_the_store_host_breaks_at_once(remote_store, registry, image_request, make_raw):
    """The lock of a file store over SSH is taken by the agent on the store host: it names the agent's process, and
    whether that process is gone is asked there. A kill -9 of the controller's run ends the agent (its channel
    closes) and the re-run neither waits nor sends again what had arrived."""
    path = remote_store('central')
    src = make_raw('a.raw', list(range(1, 9)))
    run, pid = start_paused(registry, 'img', src, ['central'], 'remote:4')
    image_id = os.listdir(os.path.join(path, 'images'))[0]
    owner = read_json(os.path.join(path, 'locks', '%s.lock' % image_id))
    assert owner['pid'] != pid and 'started' in owner  # the agent's identity on the store host
    kill_group(run)
    run.wait()
    deadline = time.time() + 10
    while not ExpiringLock(os.path.join(path, 'locks', '%s.lock' % image_id), 'x').abandoned() and time.time() < deadline:
        time.sleep(0.1)  # sshd closes the agent's channel
    # the agent on the store host judges the lock as this process does: its owner is gone, nothing to wait for
    assert ExpiringLock(os.path.join(path, 'locks', '%s.lock' % image_id), 'x').abandoned()
    again = image_request(name='img', src=src, stores=['central'])
    assert again.present(check_mode=False) and again.image_id == image_id
    assert leftovers(path) == ['images/%s' % image_id]
