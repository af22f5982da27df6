# -*- coding: utf-8 -*-
"""The table of remote methods (stores/remote_methods.py): what it covers, and an agent served over a socketpair
against a real FileStore answering each of its lines as the FileStore itself would, errors included."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import inspect
import os
import socket
import threading
import time

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import ssh, ssh_channel, wire
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.agent import Agent
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import Store
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import IDENTITY_FILE, FileStore
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.remote_methods import BY_NAME, METHODS

# Hand-written on the client, and why.
BULK = ('read_slice', 'read_slices', 'slice_writer')  # streamed reads; the writer's pipelined puts
LOCAL = ('where', 'location', 'has_slice', 'status', 'image_lock', 'name_lock', 'slice_guard')  # no call, or a table line used by hand


def interface():
    return sorted(name for name, value in vars(Store).items() if callable(value) and not name.startswith('_'))


def test_every_store_method_a_file_store_implements_is_in_the_table_or_hand_written():
    generated = set(remote.name for remote in METHODS if remote.client_method)
    for name in interface():
        if getattr(FileStore, name) is getattr(Store, name):
            continue  # the interface's default (positional stores only, or derived from the others)
        assert name in vars(ssh.SshFileStore), 'SshFileStore does not serve %s' % name
        assert (name in generated) != (name in BULK + LOCAL), name
    for name in generated:
        assert name in interface() and 'remote_methods' in getattr(ssh.SshFileStore, name).__doc__


def test_every_line_is_served_by_the_agent_and_called_by_the_client():
    source = inspect.getsource(ssh) + inspect.getsource(ssh_channel)
    for remote in METHODS:
        assert callable(getattr(Agent, 'op_' + remote.name)), remote.name
        assert remote.client_method or "'%s'" % remote.name in source, '%s: nothing on the client calls it' % remote.name
    assert len(BY_NAME) == len(METHODS)
    assert not set(BULK) & set(BY_NAME)


class Recording(ssh_channel.AgentChannel):
    """The client's channel over a socketpair, noting every operation it sends."""

    def __init__(self, stdin, stdout):
        super(Recording, self).__init__('central', stdin, stdout)
        self.sent = set()
        self.greet(wire.receive(stdout)[0])

    def call(self, op, body=None, **args):
        self.sent.add(op)
        return super(Recording, self).call(op, body, **args)

    def send_nowait(self, op, body=None, **args):
        self.sent.add(op)
        return super(Recording, self).send_nowait(op, body, **args)


class Served:
    """An agent in a thread serving ``root`` over a socketpair, and an SshFileStore talking to it."""

    def __init__(self, root, agent_class=Agent):
        near, far = socket.socketpair()
        self.sockets = (near, far)
        self.thread = threading.Thread(target=agent_class([root]).serve, args=(far.makefile('rb'), far.makefile('wb')))
        self.thread.daemon = True
        self.thread.start()
        self.channel = Recording(near.makefile('wb'), near.makefile('rb'))
        channel = self.channel

        class ChannelStore(ssh.SshFileStore):
            def connect(self):
                return channel

        self.store = ChannelStore('central', {'host': 'storehost', 'path': root})

    def close(self):
        self.store.close()
        self.sockets[0].shutdown(socket.SHUT_WR)  # the end of the channel, as ssh closing its stdin
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()
        assert not self.thread.is_alive()


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / 'central')


@pytest.fixture
def served(root):
    served = Served(root)
    yield served
    served.close()


def slice_data(seed):
    return hashlib.sha512(str(seed).encode()).digest() * (SLICE_SIZE // 64)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_the_agent_answers_every_line_of_the_table_as_the_file_store(served, root, tmp_path, monkeypatch):
    # the agent's host registry (stores/pull.py), empty: a pull finds no route (tests/.../remote/test_direct_sync.py pulls)
    monkeypatch.setenv('VMIMAGES_MULTISTORE_REGISTRY', str(tmp_path / 'host-registry'))
    remote = served.store
    local = FileStore('central', {'path': root})
    assert remote.check_root() is None and remote.status() == 'disconnected'
    remote.write_identity({'name': 'central', 'id': 'c1'})
    assert remote.read_identity() == local.read_identity() == {'name': 'central', 'id': 'c1'}
    assert remote.status() == 'connected' and remote.writable_problem() is None

    image_id = 'image-1'
    data = [slice_data(1), slice_data(2)]
    digests = [sha256(block) for block in data]
    with remote.image_lock(image_id) as lock:
        assert local.image_lock(image_id).busy() and remote.image_lock(image_id).busy()
        lock.refresh()
        with remote.slice_guard(False):
            writer = remote.slice_writer(image_id)
            assert writer.pull([{'name': 'edge', 'id': 'e1', 'staged_for': None}], digests, 5) is True
            while writer.pull_status()['running']:
                time.sleep(0.05)
            status = writer.pull_status()
            assert status['no_route'] and 'declares no store with id e1 (edge)' in status['error'] and status['bytes'] == 0
            assert writer.put(digests[0], data[0]) and writer.put(digests[1], memoryview(data[1]))
            assert not writer.put(digests[0], data[0])
            writer.commit()
        slice_list = SliceList(2 * SLICE_SIZE, [[digest, SLICE_SIZE] for digest in digests])
        remote.write_slice_list(image_id, slice_list)
        remote.write_record(image_id, {'id': image_id, 'status': 'active'})
    assert not local.image_lock(image_id).busy()
    with remote.name_lock('disk'):  # the same lock as a run on the store's host takes
        assert local.name_lock('disk').busy() and not local.name_lock('other').busy()
    assert not local.name_lock('disk').busy()

    assert remote.read_slice_list(image_id).to_dict() == local.read_slice_list(image_id).to_dict() == slice_list.to_dict()
    assert remote.read_slice_list('image-2') is None
    assert remote.read_record(image_id) == local.read_record(image_id) == {'id': image_id, 'status': 'active'}
    assert remote.read_records() == {image_id: {'id': image_id, 'status': 'active'}}
    # the name index: none until the store is indexed, then the agent's answer is the local store's
    assert remote.image_ids_named('disk') is None
    remote.write_record(image_id, {'id': image_id, 'name': 'disk', 'status': 'active'})
    assert remote.index_names() is True and remote.index_names() is False
    assert remote.image_ids_named('disk') == local.image_ids_named('disk') == [image_id]
    assert remote.image_ids_named('other') == []
    assert remote.image_ids() == local.image_ids() == [image_id]
    steady = ('capacity', 'used', 'image_count', 'slice_count')  # not free: other work on this disk changes it
    assert [remote.stats()[key] for key in steady] == [local.stats()[key] for key in steady]
    # the usage ledger: none until started, then the agent's answer is the local store's
    assert remote.usage() is None and remote.start_usage_ledger() is True and remote.start_usage_ledger() is False
    remote.count_new_slices(SLICE_SIZE)
    assert remote.usage() == local.usage() == {'used': local.stats()['used'] + SLICE_SIZE, 'image_count': 1}
    with remote.slice_guard(True):
        remote.reset_usage()
    assert remote.usage() == {'used': local.stats()['used'], 'image_count': 1}
    assert remote.stored_slices() == local.stored_slices() == set(digests)
    assert remote.missing_slices(digests + ['f' * 64]) == ['f' * 64] and remote.has_slice(digests[0])
    assert list(remote.hash_slices(digests + ['f' * 64])) == list(local.hash_slices(digests + ['f' * 64]))
    assert [(digest, bytes(view)) for digest, view in remote.read_slices(digests)] == list(zip(digests, data))
    assert remote.read_slice(digests[1]) == data[1]
    remote.replace_slice(digests[0], data[0])

    aborted = remote.slice_writer('image-2')
    aborted.put(sha256(slice_data(3)), slice_data(3))
    aborted.abort(keep=True)
    assert remote.clean_staging(0, True) == local.clean_staging(0, True) == [('staging/image-2.partial', SLICE_SIZE)]
    assert remote.slice_writer('image-2').staged_digests() == [sha256(slice_data(3))]  # adopted: keep=True kept it

    with remote.slice_guard(True):
        assert remote.remove_image(image_id) is True and local.image_ids() == []
        assert remote.remove_unreferenced(set(digests)) == 2 * SLICE_SIZE
    assert remote.stored_slices() == set()
    unused = set(BY_NAME) - served.channel.sent
    assert not unused, 'not exercised: %s' % ', '.join(sorted(unused))


def test_errors_cross_the_wire_with_the_file_stores_message(served, root):
    local = FileStore('central', {'path': root})
    # An OSError of the store host (no store root yet) crosses as a StoreError naming the path
    with pytest.raises(OSError):
        local.stats()
    with pytest.raises(StoreError, match=r'^%s: No such file or directory \(store central on ' % root):
        served.store.stats()
    os.makedirs(root)
    with open(os.path.join(root, IDENTITY_FILE), 'w') as handle:
        handle.write('{"name": "cent')  # cut off
    with pytest.raises(StoreError) as local_error:
        local.read_identity()
    with pytest.raises(StoreError) as remote_error:
        served.store.read_identity()
    assert str(remote_error.value) == '%s (store central on %s)' % (local_error.value, socket.gethostname())
    assert 'cannot read' in str(local_error.value)


def test_damaged_slices_are_refused_on_arrival(served, root):
    store = served.store
    store.write_identity({'name': 'central'})
    good = slice_data(1)
    with pytest.raises(StoreError, match=r'slice %s arrived damaged \(sha256 differs\): nothing was replaced' % sha256(good)):
        store.replace_slice(sha256(good), slice_data(2))
    writer = store.slice_writer('image-1')
    writer.put(sha256(good), slice_data(2))  # pipelined: the refusal comes with the next answer
    with pytest.raises(StoreError, match='arrived damaged .*: the transfer is retried on the next run'):
        writer.commit()
    assert not os.path.exists(FileStore('central', {'path': root}).slice_path(sha256(good)))


def test_the_session_refuses_what_it_does_not_serve(served, tmp_path):
    channel = served.store.agent()
    with pytest.raises(StoreError, match=r"store agent: unknown operation 'format_disk' \(client and agent versions differ\?\)"):
        channel.call('format_disk')
    with pytest.raises(StoreError, match="this host's store agent serves only .*central, not /etc"):
        channel.call('open', name='etc', path='/etc')
    assert channel.call('ping') is True


class OlderAgent(Agent):
    """An installed agent of the version before the usage ledger and name locks (a sync key's forced command)."""
    op_usage = op_count_new_slices = op_start_usage_ledger = op_reset_usage = op_name_lock_acquire = None
    op_writer_pull = op_writer_pull_status = None


def test_a_client_works_with_an_older_agent_without_the_newer_lines(root):
    served = Served(root, OlderAgent)
    try:
        remote, local = served.store, FileStore('central', {'path': root})
        remote.write_identity({'name': 'central', 'id': 'c1'})
        # no ledger there: quota checks walk, commits count nothing, cleanups count nothing
        assert remote.usage() is None and remote.start_usage_ledger() is False
        assert remote.count_new_slices(SLICE_SIZE) is None and remote.reset_usage() is None
        # the name lock is the interface's default (an image lock named after the name), held by the agent
        with remote.name_lock('disk'):
            assert Store.name_lock(local, 'disk').busy()
        assert not Store.name_lock(local, 'disk').busy()
        # no direct sync there: the controller relays (images/fanout.py)
        writer = remote.slice_writer('image-9')
        assert writer.pull([{'name': 'edge', 'id': 'e1', 'staged_for': None}], [sha256(slice_data(1))], 5) is False
        writer.abort()
        assert {'usage', 'name_lock_acquire', 'lock_acquire', 'writer_pull'} <= served.channel.sent
    finally:
        served.close()
