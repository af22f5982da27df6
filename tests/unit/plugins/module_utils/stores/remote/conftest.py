# -*- coding: utf-8 -*-
"""A real sshd on loopback (its own host key, authorized key, strict known_hosts) for remote-store tests."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import shutil
import socket
import subprocess
import time

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry

SSHD = '/usr/sbin/sshd'


def free_port():
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


class Sshd:
    def __init__(self, directory, store_registry=None):
        self.directory = directory
        self.port = free_port()
        self.log = os.path.join(directory, 'sshd.log')
        self.host_key = os.path.join(directory, 'host_key')
        self.client_key = os.path.join(directory, 'client_key')
        self.known_hosts = os.path.join(directory, 'known_hosts')
        for key in (self.host_key, self.client_key):
            subprocess.check_call(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key])
        shutil.copy(self.client_key + '.pub', os.path.join(directory, 'authorized_keys'))
        with open(self.host_key + '.pub') as handle:
            host_public = ' '.join(handle.read().split()[:2])
        with open(self.known_hosts, 'w') as handle:
            handle.write('127.0.0.1 %s\n' % host_public)  # keyed by the store's host value, whatever the port
        config = os.path.join(directory, 'sshd_config')
        with open(config, 'w') as handle:
            handle.write('\n'.join([
                'Port %d' % self.port, 'ListenAddress 127.0.0.1', 'ListenAddress 127.0.0.5', 'HostKey %s' % self.host_key,
                'AuthorizedKeysFile %s' % os.path.join(directory, 'authorized_keys'), 'PermitRootLogin prohibit-password',
                'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no',
                'PidFile %s' % os.path.join(directory, 'sshd.pid'), 'LogLevel VERBOSE'] +
                # The store agent's view of "its host's registry" (stores/pull.py): the stores the test declared
                # there, as the store_host role declares on every store host the stores it fetches from.
                (['SetEnv VMIMAGES_MULTISTORE_REGISTRY=%s' % store_registry] if store_registry else []) + ['']))
        if not os.path.isdir('/run/sshd'):
            os.makedirs('/run/sshd', 0o755)
        self.process = subprocess.Popen([SSHD, '-D', '-f', config, '-E', self.log])
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('sshd did not start: %s' % open(self.log).read())

    def connection(self):
        return {'host': '127.0.0.1', 'port': self.port, 'user': 'root', 'private_key': self.client_key,
                'known_hosts': self.known_hosts}

    def stop(self):
        self.process.terminate()
        self.process.wait()


@pytest.fixture
def sshd(tmp_path, registry):
    """The store hosts' sshd; their agents find the remote stores this test registers (direct sync between them)."""
    if os.geteuid() != 0 or not os.path.exists(SSHD):
        pytest.skip('needs root and openssh-server (installed by make setup)')
    directory = str(tmp_path / 'sshd')
    os.mkdir(directory)
    server = Sshd(directory, registry.directory)
    yield server
    server.stop()


@pytest.fixture
def store_host_registry(tmp_path):
    """The registry of the host that owns the stores (here the same machine, reached over SSH by the other)."""
    return Registry(str(tmp_path / 'owner-registry'))


@pytest.fixture
def remote_store(sshd, store_host_registry, registry, tmp_path):
    """Declare a store on its own host, then register it on "this" host as reachable over SSH."""
    def remote_store(name, **identity):
        path = str(tmp_path / 'remote' / name)
        StoreDeclaration(store_host_registry, dict(identity, name=name, path=path)).present(check_mode=False)
        StoreDeclaration(registry, dict(sshd.connection(), name=name, path=path)).present(check_mode=False)
        return path
    return remote_store
