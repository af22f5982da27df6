# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The store agent: serves file stores of its host to a client over stdin/stdout (an SSH channel).

It runs the same FileStore code as a local store, so the layout, the crash-safety rules and the locks
are the same on both ends. Slices are verified against their sha256 on arrival. Started either by a
client that ships this code (full SSH access), or as the forced command of a store-to-store key
(``--root PATH`` limits it to those store roots: the narrowest right that still copies images).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import socket
import sys

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import pull, remote_methods, wire
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileStore
# Loaded now, not when a pull first needs it: a shipped agent's code is gone from disk once it started.
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import ssh as _fetching  # noqa: F401 pylint: disable=unused-import


shipped_payload = None  # set by ssh_channel.BOOTSTRAP: the zip this agent came in, shipped on by its own pulls (stores/pull.py)


@remote_methods.agent_methods
class Agent:
    """Serves the remote methods of stores/remote_methods.py (an ``op_<name>`` method made from each line) on the
    store it opened; by hand: the session (``open``, ``ping``) and the streamed bulk path (``read_slices``)."""

    def __init__(self, allowed_roots=None):
        self.allowed_roots = [os.path.normpath(root) for root in allowed_roots] if allowed_roots else None
        self.store = None
        self.handles = {}
        self.next_handle = 0

    def keep(self, thing):
        """A handle for an open slice writer, image lock or slice guard, for the client's next calls."""
        self.next_handle += 1
        self.handles[self.next_handle] = thing
        return self.next_handle

    def opened_store(self):
        if self.store is None:
            raise errors.StoreError('agent: no store opened')
        return self.store

    @staticmethod
    def op_ping():
        return True

    def op_open(self, name, path):
        path = os.path.normpath(path)
        if self.allowed_roots is not None and path not in self.allowed_roots:
            raise errors.StoreError("this host's store agent serves only %s, not %s" % (', '.join(self.allowed_roots), path))
        self.store = FileStore(name, {'path': path})
        return {'host': socket.gethostname()}

    def serve(self, reader, writer):
        wire.send(writer, {'agent': 'vmimages.multistore', 'protocol': wire.PROTOCOL, 'host': socket.gethostname()})
        writer.flush()
        while True:
            try:
                header, body = wire.receive(reader)
            except wire.WireClosed:
                return
            op = header.get('op')
            if op == 'bootstrap':  # an installed agent skips the code a client ships to plain SSH accounts
                continue
            if op == 'read_slices':
                args = header.get('args') or {}
                self._stream_slices(writer, args.get('digests') or [], args.get('staged_for'), args.get('stall'))
                continue
            args = header.get('args') or {}
            if body is not None:
                args['body'] = body
            try:
                method = getattr(self, 'op_' + str(op), None)
                if method is None:
                    raise errors.StoreError('%s %r (client and agent versions differ?)' % (remote_methods.UNKNOWN_OPERATION, op))
                reply = {'ok': True, 'result': method(**args)}
            except errors.MultistoreError as exc:
                reply = {'ok': False, 'error': type(exc).__name__, 'message': str(exc)}
            except (IOError, OSError) as exc:
                reply = {'ok': False, 'error': 'StoreError', 'message': '%s: %s' % (exc.filename or 'I/O error', exc.strerror or exc)}
            if header.get('reply', True):
                wire.send(writer, reply)
                writer.flush()
            elif not reply['ok']:
                # Pipelined requests (slice puts) only answer when they fail; the client reads it at its next call.
                reply['pipelined'] = True
                wire.send(writer, reply)
                writer.flush()

    def _stream_slices(self, writer, digests, staged_for=None, stall=None):
        """Send ``digests``; with ``staged_for`` (an image id), also the slices another transfer is staging for that
        image here, each sent once it has arrived (stores/pull.py: the next store of a fan-out chain reads them)."""
        try:
            store = self.opened_store()
            read = pull.StagedSlices(store, staged_for, stall or pull.DEFAULT_STALL).read if staged_for else store.read_slice
            for digest in digests:
                wire.send(writer, {'ok': True, 'digest': digest}, read(digest))
                if staged_for:
                    writer.flush()  # the next slice may take a while to arrive: this one goes now
        except errors.MultistoreError as exc:
            wire.send(writer, {'ok': False, 'error': type(exc).__name__, 'message': str(exc)})
        wire.send(writer, {'ok': True, 'end': True})
        writer.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        # Slices leave in fewer, larger writes through a 1 MiB pipe (64 KiB by default).
        fcntl.fcntl(sys.stdout.fileno(), getattr(fcntl, 'F_SETPIPE_SZ', 1031), 1 << 20)
    except (OSError, ValueError):
        pass
    roots = [argv[i + 1] for i, arg in enumerate(argv) if arg == '--root' and i + 1 < len(argv)]
    Agent(roots or None).serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == '__main__':
    main()
