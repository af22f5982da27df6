# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The remote methods of a file store: one table that the store agent serves and the SSH client calls.

Each line names an operation as it travels (``op`` and ``args`` of a request frame, see stores/wire.py),
what the agent does with it on its local FileStore, and how arguments and results cross the wire: as JSON
through a codec, or as the frame's binary body (slice data). Operations on an open slice writer, image
lock or slice guard name the handle the agent keeps for it. Both ends are generated from this table
(``Agent.op_<name>`` in stores/agent.py, the ``SshFileStore`` methods in stores/ssh.py): a new remote
method is one line here. Hand-written stay the session (``open``, ``ping``), the bulk paths (pipelined
slice puts, streamed slice reads) and the client's handle objects.

Imported by the agent on the store host too: only the modules shipped with it (see ssh_channel.AGENT_MODULES).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib

from ansible_collections.vmimages.multistore.plugins.module_utils.common import errors
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SliceList
from ansible_collections.vmimages.multistore.plugins.module_utils.stores import pull
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import name_lock_id

# The argument that travels as the frame's body (bytes), and the one that names a handle the agent keeps.
BODY = 'body'
HANDLE = 'handle'
# Slices a verify asks the agent to hash per call (256 MiB: a round trip is nothing next to reading them).
HASH_BATCH = 64
# What an agent answers to an operation it does not know: an installed agent (forced command of a sync key) older
# than the client. Lines with a ``fallback`` then do without it.
UNKNOWN_OPERATION = 'store agent: unknown operation'


class Codec:
    """How a value crosses the wire: ``send`` before JSON on one end, ``take`` after it on the other."""

    def __init__(self, send, take):
        self.send = send
        self.take = take


def _same(value):
    return value


def _or_none(convert):
    return lambda value: None if value is None else convert(value)


JSON = Codec(_same, _same)
LIST = Codec(list, _same)
SORTED = Codec(sorted, _same)
SET = Codec(sorted, set)
TUPLES = Codec(lambda items: [list(item) for item in items], lambda items: [tuple(item) for item in items])
SLICE_LIST = Codec(_or_none(lambda slice_list: slice_list.to_dict()), _or_none(SliceList.from_dict))


class Remote:
    """One remote method: one line of the table.

    - ``name``: the operation on the wire (the request's ``op``), and the Store method's name for a client method;
    - ``args``: its arguments' names on the wire, in the order of the Store method's parameters; ``BODY`` travels
      as the frame's body, ``HANDLE`` names a handle the agent keeps (the target of ``call``, else the store);
    - ``call``: what the agent calls on the target with the other arguments: a method name (default ``name``),
      or a function of the target and the arguments;
    - ``codecs`` ({argument: Codec}) and ``result`` (a Codec): how arguments and the result cross as JSON;
    - ``keep``: the result is kept as a handle; the reply is the handle (True) or ``keep(handle, kept)``;
    - ``release``: the call ends the handle;
    - ``checked``: the body is the slice named by ``digest``, verified on arrival; the message's end when not;
    - ``batch``: the client sends the first argument in chunks of that many and chains the results;
    - ``client_method``: SshFileStore gets the method ``name`` made from this line (the other lines are called by
      the client's handle objects or hand-written methods);
    - ``fallback``: what the client does instead, ``fallback(store, *arguments)``, when the agent is older than the
      line (it answers UNKNOWN_OPERATION).
    """

    def __init__(self, name, args=(), call=None, codecs=None, result=JSON, keep=None, release=False, checked=None,
                 batch=None, client_method=False, fallback=None):
        self.name = name
        self.args = tuple(args)
        self.call = call or name
        self.codecs = codecs or {}
        self.result = result
        self.client_method = client_method
        self.fallback = fallback
        self.keep = keep
        self.release = release
        self.checked = checked
        self.batch = batch

    def client_args(self, values):
        """The request's args and body for the Store method's positional arguments ``values``."""
        args = {}
        body = None
        for name, value in zip(self.args, values):
            if name == BODY:
                body = bytes(value)
            else:
                args[name] = self.codecs[name].send(value) if name in self.codecs else value
        return args, body

    def serve(self, agent, args):
        """Run the operation in the agent: ``args`` as received (the body under BODY); the reply's result."""
        if self.checked and hashlib.sha256(args[BODY]).hexdigest() != args['digest']:
            raise errors.StoreError('slice %s arrived damaged (sha256 differs): %s' % (args['digest'], self.checked))
        values = [self.codecs[name].take(args[name]) if name in self.codecs else args[name]
                  for name in self.args if name != HANDLE]
        if HANDLE in self.args:
            target = agent.handles.pop(args[HANDLE]) if self.release else agent.handles[args[HANDLE]]
        else:
            target = agent.opened_store()
        found = self.call(target, *values) if callable(self.call) else getattr(target, self.call)(*values)
        if self.keep:
            handle = agent.keep(found)
            return self.keep(handle, found) if callable(self.keep) else handle
        return self.result.send(found)


def store_method(name, args=(), **options):
    """A line for a Store method that the agent forwards to its FileStore and SshFileStore gets generated."""
    return Remote(name, args, client_method=True, **options)


def _writer_opened(handle, writer):
    return {'handle': handle, 'staged': writer.staged_digests(), 'new_bytes': writer.new_bytes}


def _put(writer, digest, body):
    writer.put(digest, body)
    return writer.new_bytes


def _commit(writer):
    pull.stop_pull(writer)
    return writer.commit()


def _abort(writer, keep):
    pull.stop_pull(writer)
    return writer.abort(keep)


def _nothing(*_ignored):
    return None


def _entered(guard):
    guard.__enter__()
    return guard


METHODS = (
    # identity and health
    store_method('read_identity'),
    store_method('write_identity', ['identity']),
    store_method('check_root'),
    Remote('status'),  # SshFileStore.status: an agent it cannot reach means disconnected
    store_method('writable_problem'),
    store_method('stats'),
    # the usage ledger; an older agent keeps none (quota checks walk, as they did)
    store_method('usage', fallback=_nothing),
    store_method('count_new_slices', ['new_bytes'], fallback=_nothing),
    store_method('start_usage_ledger', fallback=lambda store: False),
    store_method('reset_usage', fallback=_nothing),
    # slices (hand-written bulk paths: put_slice is pipelined, read_slices streamed)
    store_method('missing_slices', ['digests'], codecs={'digests': LIST}),
    store_method('hash_slices', ['digests'], result=TUPLES, batch=HASH_BATCH),
    store_method('replace_slice', ['digest', BODY], checked='nothing was replaced'),
    store_method('remove_unreferenced', ['digests'], codecs={'digests': SORTED}),
    store_method('stored_slices', result=SET),
    store_method('clean_staging', ['max_age', 'check_mode'], result=TUPLES),
    # images
    store_method('image_ids'),
    store_method('read_record', ['image_id']),
    store_method('read_records'),
    store_method('write_record', ['image_id', 'record']),
    store_method('image_ids_named', ['name']),
    store_method('index_names'),
    store_method('read_slice_list', ['image_id'], result=SLICE_LIST),
    store_method('write_slice_list', ['image_id', 'slice_list'], codecs={'slice_list': SLICE_LIST}),
    store_method('remove_image', ['image_id']),
    # handles: the slice writer (ssh.RemoteSliceWriter), the image lock (RemoteLock), the slice guard (RemoteGuard)
    Remote('writer_open', ['image_id'], call='slice_writer', keep=_writer_opened),
    Remote('put_slice', [HANDLE, 'digest', BODY], call=_put, checked='the transfer is retried on the next run'),
    Remote('writer_commit', [HANDLE], call=_commit, release=True),
    Remote('writer_abort', [HANDLE, 'keep'], call=_abort, release=True),
    # direct sync (stores/pull.py): the agent fetches slices from another store host; an older agent cannot, and
    # the controller relays the data itself
    Remote('writer_pull', [HANDLE, 'sources', 'digests', 'stall'], call=pull.start_pull, fallback=lambda *_ignored: False),
    Remote('writer_pull_status', [HANDLE], call=pull.pull_status),
    Remote('lock_acquire', ['image_id'], call=lambda store, image_id: store.image_lock(image_id).acquire(), keep=True),
    # an older agent has no name locks of its own: the interface's default, an image lock named after the name
    Remote('name_lock_acquire', ['name'], call=lambda store, name: store.name_lock(name).acquire(), keep=True,
           fallback=lambda store, name: store.invoke('lock_acquire', name_lock_id(name))),
    Remote('lock_refresh', [HANDLE], call='refresh'),
    Remote('lock_release', [HANDLE], call='release', release=True),
    Remote('lock_busy', ['image_id'], call=lambda store, image_id: store.image_lock(image_id).busy()),
    Remote('guard_acquire', ['exclusive'], call=lambda store, exclusive: _entered(store.slice_guard(exclusive)), keep=True),
    Remote('guard_release', [HANDLE], call=lambda guard: guard.__exit__(None, None, None), release=True),
)
BY_NAME = dict((remote.name, remote) for remote in METHODS)


def agent_methods(cls):
    """Class decorator for the agent: ``op_<name>`` for every line, taking the request's args (the body under
    ``body``) or the Store method's positional arguments."""
    for remote in METHODS:
        setattr(cls, 'op_' + remote.name, _agent_method(remote))
    return cls


def _agent_method(remote):
    def op(self, *values, **args):
        args.update(zip(remote.args, values))
        return remote.serve(self, args)
    op.__name__ = 'op_' + remote.name
    return op


def client_methods(cls):
    """Class decorator for the client (SshFileStore): the Store method of every ``client_method`` line, calling
    ``cls.invoke(name, *arguments)``. A method also written by hand in ``cls`` is a mistake."""
    for remote in METHODS:
        if remote.client_method:
            if remote.name in vars(cls):
                raise TypeError('%s.%s is written by hand and in the table of remote methods' % (cls.__name__, remote.name))
            setattr(cls, remote.name, _client_method(remote))
    return cls


def _client_method(remote):
    def method(self, *values):
        return self.invoke(remote.name, *values)
    method.__name__ = remote.name
    method.__doc__ = 'Served by the store agent: %r in stores/remote_methods.py.' % remote.name
    return method
