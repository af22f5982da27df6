# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""File stores on other hosts, reached over SSH: the store client over the agent's channel (stores/ssh_channel.py).

The client starts the store agent (stores/agent.py) on the store host and talks to it in frames
(stores/wire.py). To a plain SSH account it ships the agent's code itself, so the store host needs
nothing but python3; a store-to-store key whose authorized_keys entry forces the installed agent with
``--root`` gets the same protocol with narrower rights.

Bulk data goes through OpenSSH (measured here: ``ssh -c aes128-gcm`` 0.73 GB/s, paramiko SFTP 0.16-0.37
GB/s); paramiko is used only when the store is declared with a password. Host keys are always checked
against a known_hosts file (no blind auto-add), under the store's host name as alias, so the same
entry serves the management, data and sync addresses.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import os

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import remote_methods
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import SliceWriter, Store
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import ssh_channel  # the channel imports the agent, which imports this module

PUT_SLICE = remote_methods.BY_NAME['put_slice']


class RemoteSliceWriter(SliceWriter):
    """A slice writer the agent keeps open; slices go pipelined, answered only when one fails."""

    def __init__(self, store, image_id):
        self.store = store
        opened = store.invoke('writer_open', image_id)
        self.handle = opened['handle']
        self.staged = set(opened['staged'])
        self.new_bytes = opened['new_bytes']
        self._pulled = 0  # bytes a pull (stores/pull.py) staged, counted into new_bytes so far

    def staged_digests(self):
        return list(self.staged)

    def put(self, digest, data, index=None):
        if digest in self.staged:
            return False
        args, body = PUT_SLICE.client_args((self.handle, digest, data))
        self.store.agent().send_nowait(PUT_SLICE.name, body, **args)
        self.staged.add(digest)
        self.new_bytes += len(data)
        return True

    def flush(self):
        self.store.agent().call('ping')  # the pipelined puts are sent and staged (or their failure raised) once it answers

    def pull(self, sources, digests, stall):
        """Let the store host fetch ``digests`` itself from ``sources`` (stores/pull.py); False when its agent cannot."""
        return self.store.invoke('writer_pull', self.handle, list(sources), list(digests), stall)

    def pull_status(self):
        status = self.store.invoke('writer_pull_status', self.handle)
        self.new_bytes += status['bytes'] - self._pulled  # the usage ledger and quota count what the pull staged
        self._pulled = status['bytes']
        return status

    def commit(self):
        self.store.invoke('writer_commit', self.handle)

    def abort(self, keep=False):
        try:
            self.store.invoke('writer_abort', self.handle, keep)
        except errors.MultistoreError:
            pass  # the connection is gone: the agent died with it and left its staging for the next run


class RemoteLock:
    """An image lock (or, with ``op='name_lock_acquire'``, a name lock) the agent takes and holds for this client."""

    def __init__(self, store, image_id, op='lock_acquire'):
        self.store = store
        self.image_id = image_id
        self.op = op
        self.handle = None

    def acquire(self):
        self.handle = self.store.invoke(self.op, self.image_id)
        return self

    def refresh(self):
        if self.handle is not None:
            self.store.invoke('lock_refresh', self.handle)

    def release(self):
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                self.store.invoke('lock_release', handle)
            except errors.MultistoreError:
                pass  # a dead agent's lock is broken by the next run (its process is gone)

    def busy(self):
        if self.op != 'lock_acquire':
            raise NotImplementedError('only image locks are asked whether they are busy over the wire')
        return self.store.invoke('lock_busy', self.image_id)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()


class RemoteGuard:
    def __init__(self, store, exclusive):
        self.store = store
        self.exclusive = exclusive
        self.handle = None

    def __enter__(self):
        self.handle = self.store.invoke('guard_acquire', self.exclusive)
        return self

    def __exit__(self, *exc_info):
        try:
            self.store.invoke('guard_release', self.handle)
        except errors.MultistoreError:
            pass  # flock dies with the agent process


@remote_methods.client_methods
class SshFileStore(Store):
    """A file store on another host: the table's methods (stores/remote_methods.py), and by hand the bulk paths
    (streamed reads; the slice writer's pipelined puts), the handle objects and what needs no round trip."""

    kind = 'file'
    remote = True

    def where(self):
        return '%s:%s' % (self.config['host'], self.config['path'])

    def __init__(self, name, config):
        super(SshFileStore, self).__init__(name, config)
        self.root = config['path']
        self._agent = None

    def connect(self):
        """A channel to a fresh agent serving this store's host."""
        return ssh_channel.AgentConnection(self.name, self.config)

    def agent(self):
        if self._agent is not None and self._agent.poisoned:
            self.close()  # a slice stream was abandoned half-way: start over on a fresh channel
        if self._agent is None:
            connection = self.connect()
            try:
                connection.call('open', name=self.name, path=self.root)
            except errors.MultistoreError:
                connection.close()
                raise
            self._agent = connection
            # Close the channel cleanly when the module ends: the agent releases its locks and guards then.
            atexit.register(self.close)
        return self._agent

    def close(self):
        if self._agent is not None:
            self._agent.close()
            self._agent = None

    def invoke(self, name, *values):
        """Call the remote method ``name`` (a line of stores/remote_methods.py) with the Store method's arguments."""
        remote = remote_methods.BY_NAME[name]
        if remote.batch:
            return self._batched(remote, values)
        return self._request(remote, values)

    def _request(self, remote, values):
        args, body = remote.client_args(values)
        try:
            return remote.result.take(self.agent().call(remote.name, body, **args))
        except errors.StoreError as exc:
            if remote.fallback is None or remote_methods.UNKNOWN_OPERATION not in str(exc):
                raise
            return remote.fallback(self, *values)

    def _batched(self, remote, values):
        items = list(values[0])
        for start in range(0, len(items), remote.batch):
            yield from self._request(remote, (items[start:start + remote.batch],) + tuple(values[1:]))

    def status(self):
        try:
            return self.invoke('status')
        except errors.StoreError:
            return 'disconnected'

    def location(self, image_id):
        return 'file://%s%s' % (self.config['host'], os.path.join(self.root, 'images', image_id))

    def has_slice(self, digest):
        return not self.missing_slices([digest])

    def read_slice(self, digest):
        data = None
        for _digest, view in self.agent().stream_slices([digest]):
            data = bytes(view)
        if data is None:
            raise errors.StoreError("store '%s': slice %s is missing" % (self.name, digest))
        return data

    def read_slices(self, digests):
        return self.agent().stream_slices(list(digests))

    def read_staged_slices(self, image_id, digests, stall):
        """FileStore.read_staged_slices on the store host: slices another transfer still stages there, streamed."""
        return self.agent().stream_slices(list(digests), staged_for=image_id, stall=stall)

    def slice_writer(self, image_id):
        return RemoteSliceWriter(self, image_id)

    def image_lock(self, image_id):
        return RemoteLock(self, image_id)

    def name_lock(self, name):
        # the store host's own name lock (the file a local run on that host takes too), not the interface's default
        return RemoteLock(self, name, op='name_lock_acquire')

    def slice_guard(self, exclusive):
        return RemoteGuard(self, exclusive)
