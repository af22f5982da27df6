# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The channel to a store agent on another host: shipping the agent, choosing the address, framing calls.

``AgentConnection`` starts the agent over SSH (OpenSSH; paramiko only for a store declared with a password)
and ships its code to a plain account; ``AgentChannel`` frames calls, pipelined puts and streamed slices over
any pair of streams (an SSH session, or a pull's connection from one store host to another). The store
client over it is stores/ssh.py.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import fcntl
import importlib
import io
import ipaddress
import mmap
import os
import socket
import subprocess
import tempfile
import threading
import zipfile

try:
    import queue
except ImportError:  # pragma: no cover
    import Queue as queue  # noqa

try:
    from ansible.module_utils.common.warnings import warn
except ImportError:  # the engine without Ansible: the note is still in store_info and in connection errors
    def warn(message):
        pass

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.common.networks import (
    AddressesUnavailable, addresses_in, describe_addresses, host_addresses, is_network)
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import wire
# Imported for its source only: Ansible packs into a module's payload just the module_utils imported
# statically, and agent_payload() ships the agent (and what it imports) to the store host.
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import agent as _shipped_agent  # noqa: F401 pylint: disable=unused-import

PACKAGE = 'ansible_collections.vmimages.multistore.plugins.module_utils'
AGENT_MODULES = ('common.clock', 'common.errors', 'common.fs', 'common.locks', 'common.networks', 'common.owners', 'common.registry_path',
                 'slices.slice_list', 'stores.base', 'stores.repository', 'stores.file', 'stores.wire', 'stores.remote_methods',
                 'stores.pull', 'stores.ssh_channel', 'stores.ssh', 'stores.agent')
# Reads the shipped code (one frame), imports the agent from it, then serves on stdin/stdout.
BOOTSTRAP = (
    "import json,os,struct,sys,tempfile\n"
    "r=sys.stdin.buffer\n"
    "n=struct.unpack('>I',r.read(4))[0]\n"
    "h=json.loads(r.read(n).decode('utf-8'))\n"
    "z=r.read(h['size'])\n"
    "fd,p=tempfile.mkstemp(suffix='.zip')\n"
    "os.write(fd,z)\n"
    "os.close(fd)\n"
    "sys.path.insert(0,p)\n"
    "from ansible_collections.vmimages.multistore.plugins.module_utils.stores import agent\n"
    "agent.shipped_payload=z\n"
    "os.unlink(p)\n"
    "agent.main(sys.argv[1:])\n"
)
F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
CIPHERS = 'aes128-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-ctr'
PREFETCH_SLICES = 4
PIPELINE_DEPTH = 32


def agent_payload():
    """A zip of the agent's modules, read from wherever they were imported (files or AnsiballZ zip); in an agent
    that was shipped itself (and fetches from another store host now), the zip it came in."""
    shipped = getattr(_shipped_agent, 'shipped_payload', None)
    if shipped:
        return shipped
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_DEFLATED) as archive:
        packages = set()
        for short in AGENT_MODULES:
            name = '%s.%s' % (PACKAGE, short)
            module = importlib.import_module(name)
            source = module.__loader__.get_source(name)
            path = name.replace('.', '/')
            archive.writestr(path + '.py', source)
            parts = name.split('.')[:-1]
            for depth in range(1, len(parts) + 1):
                packages.add('/'.join(parts[:depth]))
        for package in sorted(packages):
            archive.writestr(package + '/__init__.py', '')
    return buffer.getvalue()


def _widen_pipe(stream):
    """A 1 MiB pipe instead of 64 KiB: ssh then writes slices in far fewer, larger chunks (about 25% less CPU)."""
    try:
        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, 1 << 20)
    except (OSError, ValueError):
        pass  # the limit (/proc/sys/fs/pipe-max-size) or the platform says no: 64 KiB still works


def bootstrap_command():
    code = base64.b64encode(BOOTSTRAP.encode('utf-8')).decode('ascii')
    return "python3 -c 'import base64;exec(base64.b64decode(\"%s\"))'" % code


def choose_address(config, addresses=None):
    """(address to dial, note) for a store on another host, by ZStack's rule: its sync address when this host has
    an address in its sync network, else its data address likewise, else the management ``host``.

    The note says why a declared sync or data address was passed over (None when it was not), so that the
    module's warnings, store_info and the error of a failed connection show it instead of a silent fallback.
    """
    notes = []
    for kind in ('sync', 'data'):
        candidate = config.get(kind + '_address')
        if not candidate:
            continue
        interface = ipaddress.ip_interface(candidate)
        if is_network(interface):
            notes.append('%s address %s is a network, not the store host\'s address in it: run the store module on the store '
                         'host again (it resolves the network there), then register the store here again' % (kind, candidate))
            continue
        if addresses is None:
            try:
                addresses = host_addresses()
            except AddressesUnavailable as exc:
                notes.append('%s: the store host\'s sync and data addresses are not used' % exc)
                break
        if addresses_in(interface.network, addresses):
            return str(interface.ip), '; '.join(notes + ['using the %s address %s' % (kind, interface.ip)]) if notes else None
        notes.append('%s address %s not used: this host has no address in %s (its addresses: %s; store_host role: '
                     'multistore_networks.%s)' % (kind, candidate, interface.network, describe_addresses(addresses, interface.version),
                                                  kind))
    return config['host'], '; '.join(notes + ['using %s' % config['host']]) if notes else None


class AgentChannel:
    """Frames to and from one store agent: calls, pipelined requests and streamed slices (any pair of streams)."""

    def __init__(self, store_name, stdin, stdout):
        self.store_name = store_name
        self.stdin = stdin
        self.stdout = stdout
        self.remote_host = None
        self.pending_errors = []
        self.outstanding = 0
        self.poisoned = False

    def greet(self, hello):
        """Check the agent's first frame: another protocol is refused."""
        if hello.get('agent') != 'vmimages.multistore' or hello.get('protocol') != wire.PROTOCOL:
            raise errors.StoreError("store '%s' on %s: the agent speaks protocol %r, this client %d: update the collection on both"
                                    % (self.store_name, self._where(), hello.get('protocol'), wire.PROTOCOL))
        self.remote_host = hello.get('host')

    def _where(self):
        return 'the other end of the channel'

    def _reason(self, exc):
        return str(exc)

    def _broken(self, exc):
        return errors.TransferInterrupted("the connection to store '%s' on %s broke off: %s; run again to resume"
                                          % (self.store_name, self._where(), self._reason(exc)))

    def _raise(self, reply):
        cls = getattr(errors, reply.get('error') or '', None)
        if not (isinstance(cls, type) and issubclass(cls, errors.MultistoreError)):
            cls = errors.StoreError
        raise cls('%s (store %s on %s)' % (reply.get('message'), self.store_name, self.remote_host))

    def call(self, op, body=None, **args):
        try:
            wire.send(self.stdin, {'op': op, 'args': args}, body)
            self.stdin.flush()
            while True:
                reply, _body = wire.receive(self.stdout)
                if reply.get('pipelined'):
                    self.pending_errors.append(reply)
                    continue
                break
        except (wire.WireClosed, IOError, OSError) as exc:
            raise self._broken(exc)
        self.outstanding = 0
        if self.pending_errors:
            self._raise(self.pending_errors.pop(0))
        if not reply.get('ok'):
            self._raise(reply)
        return reply.get('result')

    def send_nowait(self, op, body=None, **args):
        """A request answered only if it fails (slice puts): the sender never waits for a round trip."""
        try:
            wire.send(self.stdin, {'op': op, 'args': args, 'reply': False}, body)
        except (IOError, OSError) as exc:
            raise self._broken(exc)
        self.outstanding += 1
        if self.outstanding >= PIPELINE_DEPTH:
            self.call('ping')

    def stream_slices(self, digests, **options):
        """Yield (digest, data) for ``digests``; a reader thread keeps PREFETCH_SLICES in flight.

        Slices arrive straight into a small pool of page-aligned buffers (no allocation per slice, and a
        file store writes them with O_DIRECT without a copy). A yielded view is valid until the next one.
        """
        if not digests:
            return
        frames = queue.Queue(PREFETCH_SLICES)
        free = queue.Queue()
        for dummy in range(PREFETCH_SLICES + 2):  # queued + the one being read + the one the caller holds
            free.put(mmap.mmap(-1, SLICE_SIZE))

        def read():
            try:
                while True:
                    buffer = free.get()
                    header, body = wire.receive(self.stdout, into=buffer)
                    frames.put((header, body, buffer))
                    if header.get('end') or not header.get('ok'):
                        return
            except (wire.WireClosed, IOError, OSError) as exc:
                frames.put(({'broken': exc}, None, None))

        try:
            wire.send(self.stdin, {'op': 'read_slices', 'args': dict(options, digests=list(digests))})
            self.stdin.flush()
        except (IOError, OSError) as exc:
            raise self._broken(exc)
        # Until the stream ends, frames are in flight: a caller that stops early leaves the channel unusable.
        self.poisoned = True
        reader = threading.Thread(target=read)
        reader.daemon = True
        reader.start()
        while True:
            header, body, buffer = frames.get()
            if 'broken' in header:
                raise self._broken(header['broken'])
            if header.get('end'):
                break
            if not header.get('ok'):
                self._raise(header)
            yield header['digest'], body
            free.put(buffer)
        reader.join()
        self.poisoned = False

    def close(self):
        try:
            self.stdin.close()
        except (IOError, OSError):
            pass


class AgentConnection(AgentChannel):
    """One agent process on the store host, started over SSH."""

    def __init__(self, store_name, config):
        super(AgentConnection, self).__init__(store_name, None, None)
        self.config = config
        self.address, self.address_note = choose_address(config)
        if self.address_note:
            # A warning in the result of whatever module copies or reads: the operator sees the fallback as it happens.
            warn("store '%s': %s" % (store_name, self.address_note))
        self.process = None
        self.client = None
        self._stderr = tempfile.TemporaryFile()
        self._start()
        try:
            wire.send(self.stdin, {'op': 'bootstrap'}, agent_payload())
            self.stdin.flush()
            hello, _body = wire.receive(self.stdout)
        except (wire.WireClosed, IOError, OSError, ValueError) as exc:
            raise errors.StoreError("store '%s' on %s is unreachable: %s%s" % (store_name, self._where(), self._reason(exc), self._note()))
        self.greet(hello)

    def _note(self):
        return ' (%s)' % self.address_note if self.address_note else ''

    def _where(self):
        return '%s@%s:%s' % (self.config.get('user') or 'root', self.address, self.config.get('port') or 22)

    def _reason(self, exc):
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._stderr.seek(0)
        text = self._stderr.read().decode('utf-8', 'replace').strip()
        return text.splitlines()[-1] if text else str(exc)

    def _start(self):
        config = self.config
        known_hosts = config.get('known_hosts') or os.path.expanduser('~/.ssh/known_hosts')
        if config.get('password'):
            self._start_paramiko(known_hosts)
            return
        argv = ['ssh', '-T', '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', 'UserKnownHostsFile=%s' % known_hosts,
                '-o', 'HostKeyAlias=%s' % config['host'], '-o', 'Compression=no', '-o', 'ServerAliveInterval=15',
                '-o', 'ConnectTimeout=%d' % int(config.get('timeout') or 10), '-c', CIPHERS,
                '-p', str(config.get('port') or 22), '-l', config.get('user') or 'root']
        if config.get('private_key'):
            argv += ['-o', 'IdentitiesOnly=yes', '-i', config['private_key']]
        argv += [self.address, bootstrap_command()]
        try:
            self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, bufsize=1 << 20)
        except OSError as exc:
            raise errors.StoreError('cannot run ssh (%s): install openssh-client' % exc)
        self.stdin = self.process.stdin
        self.stdout = self.process.stdout
        _widen_pipe(self.stdout)

    def _start_paramiko(self, known_hosts):
        try:
            import paramiko
        except ImportError:
            raise errors.StoreError("store '%s' is declared with a password, which needs the Python library paramiko on this host: "
                                    "install python3-paramiko, or use private_key" % self.store_name)
        config = self.config
        host_keys = paramiko.HostKeys()
        try:
            host_keys.load(known_hosts)
        except IOError:
            raise errors.StoreError("known_hosts file %s is missing: host keys are never accepted blindly" % known_hosts)
        port = int(config.get('port') or 22)
        try:
            sock = socket.create_connection((self.address, port), timeout=int(config.get('timeout') or 10))
            transport = paramiko.Transport(sock)
            transport.start_client(timeout=int(config.get('timeout') or 10))
            # The same rule as OpenSSH with HostKeyAlias: the entry is the store's host name, whatever address or port.
            offered = transport.get_remote_server_key()
            known = host_keys.lookup(config['host']) or {}
            if known.get(offered.get_name()) != offered:
                transport.close()
                raise errors.StoreError("store '%s' on %s: Host key verification failed (no matching %s key for %s in %s)"
                                        % (self.store_name, self._where(), offered.get_name(), config['host'], known_hosts))
            transport.auth_password(config.get('user') or 'root', config['password'])
            channel = transport.open_session()
            channel.exec_command(bootstrap_command())
        except (paramiko.SSHException, socket.error) as exc:
            raise errors.StoreError("store '%s' on %s is unreachable: %s%s" % (self.store_name, self._where(), exc, self._note()))
        self.client = transport
        self.stdin = channel.makefile('wb', 1 << 20)
        self.stdout = channel.makefile('rb', 1 << 20)

    def close(self):
        try:
            self.stdin.close()
        except (IOError, OSError):
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.client is not None:
            self.client.close()
        self._stderr.close()
