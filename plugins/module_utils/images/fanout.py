# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fan-out: an image's slices go from store host to store host, down a chain, with the controller off the path.

Without it, the host that runs the task reads every slice and sends it to every target store: 8 edges
behind one central uplink take 8 transfers' time, and a copy between two other hosts crosses the
controller's links twice. Here each remote file store that is a target fetches what it lacks itself
(stores/pull.py) over its own sync network, ZStack's rule: the destination's network decides the path.

The targets form a chain (HDFS's write pipeline): the first pulls from the origin (the copy's source,
or the store an import was written to), each next one from the store before it, reading that store's
staged slices as they arrive, and from the origin when the one before it fails or stalls. Each slice
crosses the origin's uplink about once and every link of the chain carries it once, so 8 edges take
about the time of one transfer plus a few slices. A tree or a swarm would send as little over the
uplink, but need every host to serve many peers at once; a chain needs only the trust the role sets up
between neighbours, and a broken link costs one fallback to the origin. Every slice is verified (sha256)
at every hop. A target that fails fails alone (the transfer's allow_failure decides the rest); a target
whose host cannot reach any source (not registered there, an agent older than this) gets the data
relayed by the controller, as before, and the result says so.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, MultistoreError, TransferInterrupted
from ansible_collections.vmimages.multistore.plugins.module_utils.images import policy

STALL_SECONDS = 30  # a chain link that delivers nothing that long is passed over (the origin serves the rest)
POLL_SECONDS = 0.25
LOCK_REFRESH_SECONDS = 15
# An import fans out to this many store hosts or more. With one, this host writes it beside the origin, in the same
# pass: as fast as fetching it afterwards when this host's uplink is shared, faster when it is not.
IMPORT_FAN_MIN = 2


def can_pull(sink, origin):
    """Whether ``sink``'s store host can fetch from ``origin`` itself: a file store on another host as the target, a
    file store (any host) as the origin, two different stores."""
    return (callable(getattr(sink.writer, 'pull', None)) and origin.declaration.get('type') == 'file' and origin.id is not None
            and sink.store.id != origin.id)


def _reference(store, staged_for):
    return {'name': store.name, 'id': store.id, 'staged_for': staged_for}


class FanOut:
    """The pulls of one transfer: ``start()``, then ``wait(refresh, progress)``; ``relay`` lists the sinks the
    controller must still feed itself, ``notes`` what the operator should know (routes not taken)."""

    def __init__(self, image_id, origin, sinks, lacking, lengths, origin_staged=False):
        self.image_id = image_id
        self.origin = origin
        self.sinks = sorted(sinks, key=lambda sink: policy.central_rank(sink.store))
        self.lacking = lacking  # store name -> digests that store lacks
        self.lengths = lengths  # digest -> bytes
        self.origin_staged = origin_staged  # the origin is a target of the same transfer, still staging (an import)
        self.running = []
        self.relay = []
        self.notes = []
        self.served = {}
        self.pulled = {}

    def bytes_total(self):
        return sum(self.lengths[digest] for sink in self.sinks for digest in self.lacking[sink.store.name])

    def start(self):
        previous = None
        origin = _reference(self.origin, self.image_id if self.origin_staged else None)
        for sink in self.sinks:
            digests = sorted(self.lacking[sink.store.name])
            if not digests:
                continue
            needed = sum(self.lengths[digest] for digest in digests)
            if sink.byte_budget is not None and sink.writer.new_bytes + needed > sink.byte_budget:
                sink.error = ("store '%s' quota exceeded: the image needs %d more bytes there, %d are left under quota.bytes; "
                              "raise the quota or delete images" % (sink.store.name, needed, sink.byte_budget - sink.writer.new_bytes))
                continue
            sources = ([_reference(previous.store, self.image_id)] if previous is not None else []) + [origin]
            try:
                started = sink.writer.pull(sources, digests, STALL_SECONDS)
            except MultistoreError as exc:
                sink.error = str(exc)
                continue
            if started:
                self.running.append(sink)
                previous = sink
            else:
                self.relay.append(sink)
                self.notes.append("store '%s': its agent cannot fetch from other store hosts (older version): relayed through "
                                  "this host; update the collection there" % sink.store.name)
        return self

    def wait(self, refresh, progress, done_before=0):
        """Poll the pulls until all ended; keep the locks alive meanwhile. Returns the sinks still to be relayed."""
        refreshed = time.time()
        while self.running:
            time.sleep(POLL_SECONDS)
            for sink in list(self.running):
                try:
                    status = sink.writer.pull_status()
                except MultistoreError as exc:
                    self.running.remove(sink)
                    sink.error = "store '%s': lost its agent during the direct sync: %s" % (sink.store.name, exc)
                    sink.interrupted = isinstance(exc, TransferInterrupted)  # what it staged stays for the re-run
                    continue
                self.pulled[sink.store.name] = status['bytes']
                if status['running']:
                    continue
                self.running.remove(sink)
                self.served[sink.store.name] = status['served']
                if status['error'] and status['no_route'] and not status['bytes']:
                    self.relay.append(sink)
                    self.notes.append("store '%s' has no direct route to %s (%s): relayed through this host"
                                      % (sink.store.name, self.origin.name, status['error']))
                elif status['error']:
                    sink.error = "store '%s': direct sync failed: %s" % (sink.store.name, status['error'])
            if time.time() - refreshed > LOCK_REFRESH_SECONDS:
                refresh(0)
                refreshed = time.time()
            progress.advance_to(done_before + sum(self.pulled.values()))
        return self.relay

    def describe(self):
        """'edge1 from central, edge2 from edge1 (...)': which host served each store's slices."""
        parts = []
        for sink in self.sinks:
            served = self.served.get(sink.store.name)
            if served:
                parts.append('%s from %s' % (sink.store.name, ' and '.join(sorted(served))))
        return ', '.join(parts)


def lacking_slices(sinks, slice_list):
    """Ask each destination once what it lacks of ``slice_list`` (slices it has, or staged by an interrupted run, stay
    put): ({store name: set of digests}, {digest: length})."""
    digests = sorted(slice_list.digests())
    lacking = dict((sink.store.name, set(sink.store.backend.missing_slices(digests)) - set(sink.writer.staged_digests()))
                   for sink in sinks)
    lengths = dict((digest, slice_list.slice_length(index)) for index, digest in enumerate(slice_list.slices) if digest)
    return lacking, lengths


def wanted_bytes(sinks, lacking, lengths):
    """The bytes of the slices at least one of ``sinks`` lacks, each counted once (it is read once)."""
    return sum(lengths[digest] for digest in set().union(*[lacking[sink.store.name] for sink in sinks]))


def split_import(sinks):
    """(origin sink, sinks that fetch from it) for an import into ``sinks``; (None, []) when it does not fan out.

    This host reads the source once and writes the origin: a central file store (one on this host first), else a
    file store on this host, else the first other one. When IMPORT_FAN_MIN or more of the other targets are file
    stores on store hosts that can fetch from the origin, they do, down a chain, once the import is staged there
    (``fan_out_staged``), instead of this host sending every slice to each of them. A central origin keeps the
    central-first rule's meaning: if it fails, the edges could not be committed anyway.
    """
    files = [sink for sink in sinks if sink.store.declaration.get('type') == 'file' and sink.store.id is not None]
    if not files:
        return None, []
    origin = min(files, key=lambda sink: (sink.store.site_role != 'central', callable(getattr(sink.writer, 'pull', None)), sink.store.name))
    pulling = [sink for sink in sinks if sink is not origin and can_pull(sink, origin.store)]
    if len(pulling) < IMPORT_FAN_MIN:
        return None, []
    return origin, pulling


def fan_out_staged(origin, image_id, slice_list, sinks, refresh, progress, done_before):
    """After an import staged ``slice_list`` in ``origin`` (its sink, not committed yet), let ``sinks`` fetch it from
    there down a chain; those whose host cannot get it relayed by this host from the origin's staging. The
    transfer commits them all (central first) or none. Returns the FanOut (its routes, its notes)."""
    try:
        origin.writer.flush()
    except TransferInterrupted as exc:
        if not origin.fail_alone:
            raise
        origin.error, origin.interrupted = str(exc), True
    except MultistoreError as exc:
        origin.error = str(exc)
    if origin.error:
        for sink in sinks:
            sink.error = ("store '%s' was to fetch the image from store '%s', whose import failed (%s); run again"
                          % (sink.store.name, origin.store.name, origin.error))
        return None
    for sink in sinks:
        sink.writer.plan(slice_list)
    lacking, lengths = lacking_slices(sinks, slice_list)
    fan = FanOut(image_id, origin.store, sinks, lacking, lengths, origin_staged=True).start()
    progress.set_total(done_before + fan.bytes_total())
    relayed = fan.wait(refresh, progress, done_before)
    if relayed:
        progress.set_total(done_before + sum(fan.pulled.values()) + wanted_bytes(relayed, lacking, lengths))
        _relay_staged(origin.store, image_id, relayed, lacking, refresh, progress, done_before + sum(fan.pulled.values()))
    return fan


def deliver(slices, sinks, lacking, corrupt):
    """Write each (digest, data) of ``slices``, verified, to the sinks lacking it; yield its length after each. Stops
    once every sink failed (the caller weighs that). ``corrupt(digest)``: the error for bytes that do not match."""
    for digest, data in slices:
        if hashlib.sha256(data).hexdigest() != digest:
            raise corrupt(digest)
        for sink in sinks:
            if digest in lacking[sink.store.name]:
                sink.put(digest, data)
        if all(sink.error for sink in sinks):
            return
        yield len(data)


def _relay_staged(origin, image_id, sinks, lacking, refresh, progress, done_before):
    """Read what ``sinks`` lack once from the origin's staging, and write each slice to those lacking it. When every
    one of them failed, the transfer's commit step weighs the failures (allow_failure)."""
    wanted = sorted(set().union(*[lacking[sink.store.name] for sink in sinks]))
    refreshed = time.time()
    done = done_before
    for length in deliver(origin.backend.read_staged_slices(image_id, wanted, STALL_SECONDS), sinks, lacking,
                          lambda digest: ImageError("slice %s of image %s does not match its digest in store '%s' (staged by this "
                                                    "import): run again" % (digest, image_id, origin.name))):
        done += length
        if time.time() - refreshed > LOCK_REFRESH_SECONDS:
            refresh(0)
            refreshed = time.time()
        progress.advance_to(done)
