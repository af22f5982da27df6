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
import hashlib
import os
import socket
import sys

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import wire
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.file import FileStore
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SliceList


class Agent:
    def __init__(self, allowed_roots=None):
        self.allowed_roots = [os.path.normpath(root) for root in allowed_roots] if allowed_roots else None
        self.store = None
        self.handles = {}
        self.next_handle = 0

    def _keep(self, thing):
        self.next_handle += 1
        self.handles[self.next_handle] = thing
        return self.next_handle

    def _store(self):
        if self.store is None:
            raise errors.StoreError('agent: no store opened')
        return self.store

    # operations (op name -> method op_<name>)
    @staticmethod
    def op_ping():
        return True

    def op_open(self, name, path):
        path = os.path.normpath(path)
        if self.allowed_roots is not None and path not in self.allowed_roots:
            raise errors.StoreError("this host's store agent serves only %s, not %s" % (', '.join(self.allowed_roots), path))
        self.store = FileStore(name, {'path': path})
        return {'host': socket.gethostname()}

    def op_read_identity(self):
        return self._store().read_identity()

    def op_write_identity(self, identity):
        self._store().write_identity(identity)

    def op_check_root(self):
        return self._store().check_root()

    def op_status(self):
        return self._store().status()

    def op_writable_problem(self):
        return self._store().writable_problem()

    def op_stats(self):
        return self._store().stats()

    def op_stored_slices(self):
        return sorted(self._store().stored_slices())

    def op_clean_staging(self, max_age, check_mode):
        return self._store().clean_staging(max_age, check_mode)

    def op_image_ids(self):
        return self._store().image_ids()

    def op_read_record(self, image_id):
        return self._store().read_record(image_id)

    def op_read_records(self):
        store = self._store()
        return dict((image_id, store.read_record(image_id)) for image_id in store.image_ids())

    def op_write_record(self, image_id, record):
        self._store().write_record(image_id, record)

    def op_read_slice_list(self, image_id):
        slice_list = self._store().read_slice_list(image_id)
        return None if slice_list is None else slice_list.to_dict()

    def op_write_slice_list(self, image_id, slice_list):
        self._store().write_slice_list(image_id, SliceList.from_dict(slice_list))

    def op_remove_image(self, image_id):
        return self._store().remove_image(image_id)

    def op_remove_unreferenced(self, digests):
        return self._store().remove_unreferenced(digests)

    def op_missing_slices(self, digests):
        return self._store().missing_slices(digests)

    def op_hash_slices(self, digests):
        """Verify on the store host: only (digest, sha256, size) travel back, not the slices."""
        return [list(found) for found in self._store().hash_slices(digests)]

    def op_replace_slice(self, digest, body):
        if hashlib.sha256(body).hexdigest() != digest:
            raise errors.StoreError('slice %s arrived damaged (sha256 differs): nothing was replaced' % digest)
        self._store().replace_slice(digest, body)

    def op_writer_open(self, image_id):
        writer = self._store().slice_writer(image_id)
        return {'handle': self._keep(writer), 'staged': writer.staged_digests(), 'new_bytes': writer.new_bytes}

    def op_put_slice(self, handle, digest, body):
        if hashlib.sha256(body).hexdigest() != digest:
            raise errors.StoreError('slice %s arrived damaged (sha256 differs): the transfer is retried on the next run' % digest)
        writer = self.handles[handle]
        writer.put(digest, body)
        return writer.new_bytes

    def op_writer_commit(self, handle):
        self.handles.pop(handle).commit()

    def op_writer_abort(self, handle, keep):
        self.handles.pop(handle).abort(keep=keep)

    def op_lock_acquire(self, image_id):
        return self._keep(self._store().image_lock(image_id).acquire())

    def op_lock_refresh(self, handle):
        self.handles[handle].refresh()

    def op_lock_release(self, handle):
        self.handles.pop(handle).release()

    def op_lock_busy(self, image_id):
        return self._store().image_lock(image_id).busy()

    def op_guard_acquire(self, exclusive):
        guard = self._store().slice_guard(exclusive)
        guard.__enter__()
        return self._keep(guard)

    def op_guard_release(self, handle):
        self.handles.pop(handle).__exit__(None, None, None)

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
                self._stream_slices(writer, header['args']['digests'])
                continue
            args = header.get('args') or {}
            if body is not None:
                args['body'] = body
            try:
                method = getattr(self, 'op_' + str(op), None)
                if method is None:
                    raise errors.StoreError('store agent: unknown operation %r (client and agent versions differ?)' % op)
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

    def _stream_slices(self, writer, digests):
        store = self._store()
        for digest in digests:
            try:
                data = store.read_slice(digest)
            except errors.MultistoreError as exc:
                wire.send(writer, {'ok': False, 'error': type(exc).__name__, 'message': str(exc)})
                break
            wire.send(writer, {'ok': True, 'digest': digest}, data)
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
