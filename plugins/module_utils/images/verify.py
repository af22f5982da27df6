# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verify a store's data in place and repair it from other stores (``store_cleanup`` ``verify``/``repair``).

Slice stores (file, file over SSH, s3, swift): every slice a complete image references (or a random
sample of them) is read once, streaming, and its sha256 compared with its name; the backend hashes where
the data is (the SSH agent on the store host, the object store's threads). An rbd store keeps whole images:
each slice-list position of each image's snapshot is read and compared with the sha256 the slice list
recorded for it.

Repair takes each corrupt slice from another store of this host that holds it, checks its sha256 before
writing, writes it atomically (``replace_slice``; rbd: ``replace_range``) and reads it back. What no store
can provide is unrepairable: the images using it are marked damaged in that store (a ``damaged`` entry in
the store's copy of the record, which ``image_info`` shows as ``damaged_in_stores``); a later repair that
finds the image whole again clears the mark.

Slices are verified and replaced under the shared slice guard (no deletion runs meanwhile, imports may);
records are marked after the guard is released, under the image lock, in the engine's lock order.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import math
import random
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import DEDUP_SLICES
from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, LockError, MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import is_complete


def check_verify_options(verify, sample, repair):
    if sample is not None and not 1 <= sample <= 100:
        raise InvalidArgument('verify_sample %d is not a percentage: give 1 to 100 (100 verifies every slice)' % sample)
    if sample is not None and not verify:
        raise InvalidArgument('verify_sample: chooses how much verify: true reads: set verify: true too')
    if repair and not verify:
        raise InvalidArgument('repair: true replaces the slices a verify finds corrupt: set verify: true too')


def repair_sources(registry):
    """Every store declared on this host that can be read now; the others are passed over."""
    sources = []
    for name in registry.names():
        try:
            store = registry.open(name)
        except MultistoreError:
            continue
        if store.identity is not None:
            sources.append(store)
    return sources


class _Position:
    """One place a slice is stored: a digest (slice stores), or an image's range (rbd)."""

    def __init__(self, digest, size, image_id=None, index=None, offset=None):
        self.digest = digest
        self.size = size
        self.image_id = image_id
        self.index = index
        self.offset = offset


class StoreVerify:
    def __init__(self, store, sources, sample=100, repair=False, rng=None):
        self.store = store
        self.sources = [source for source in sources if source.name != store.name]
        self.sample = sample or 100
        self.repair = repair
        self.rng = rng or random.SystemRandom()
        self.records = {}
        self.slice_lists = {}
        self.users = {}  # digest -> image ids using it
        self.verified_images = set()  # images every slice of which was verified
        self.report = {'verified_slices': 0, 'verified_bytes': 0, 'seconds': 0.0, 'throughput': 0, 'corrupt': []}
        if repair:
            self.report.update(repaired=[], unrepairable=[], marked_damaged=[], cleared_damaged=[])

    def run(self, check_mode):
        """(changed, report); reads only in check mode (repairs are predicted: source slices are read and checked)."""
        backend = self.store.backend
        with backend.slice_guard(exclusive=False):
            records, positions = self._positions(backend)
            start = time.time()
            bad = self._verify(backend, positions)
            seconds = time.time() - start
            self.report['seconds'] = round(seconds, 3)
            self.report['throughput'] = int(self.report['verified_bytes'] / seconds) if seconds > 0 else 0
            self.report['corrupt'] = [self._describe(position) for position in bad]
            unrepairable = self._repair(backend, bad, check_mode) if self.repair else []
        changed = bool(self.repair and self.report['repaired'])
        if self.repair:
            changed = self._mark(backend, records, unrepairable, check_mode) or changed
        return changed, self.report

    # ---- what to read
    def _positions(self, backend):
        records = self.records
        positions = []
        sizes = {}
        for image_id, record in sorted(backend.read_records().items()):
            if not is_complete(record):
                continue
            slice_list = backend.read_slice_list(image_id)
            if slice_list is None:
                continue
            records[image_id] = record
            self.slice_lists[image_id] = slice_list
            for index, digest in enumerate(slice_list.slices):
                if digest and image_id not in self.users.setdefault(digest, []):
                    self.users[digest].append(image_id)
                if not backend.can(DEDUP_SLICES):
                    positions.append(_Position(digest, slice_list.slice_length(index), image_id, index, index * slice_list.slice_size))
                elif digest:
                    sizes[digest] = slice_list.slice_length(index)
        if backend.can(DEDUP_SLICES):
            positions = [_Position(digest, sizes[digest]) for digest in sorted(sizes)]
        if self.sample < 100 and positions:
            chosen = sorted(self.rng.sample(range(len(positions)), int(math.ceil(len(positions) * self.sample / 100.0))))
            positions = [positions[i] for i in chosen]
        else:
            self.verified_images = set(records)
        return records, positions

    # ---- reading
    def _verify(self, backend, positions):
        """The positions whose bytes do not match their digest; each read once."""
        bad = []
        if not backend.can(DEDUP_SLICES):
            by_image = {}
            for position in positions:
                by_image.setdefault(position.image_id, []).append(position)
            for image_id, wanted in sorted(by_image.items()):
                at = dict((position.index, position) for position in wanted)
                for index, found, size in backend.hash_ranges(image_id, self.slice_lists[image_id], sorted(at)):
                    self._count(size)
                    if found != at[index].digest:
                        bad.append(at[index])
            return bad
        at = dict((position.digest, position) for position in positions)
        for digest, found, size in backend.hash_slices([position.digest for position in positions]):
            self._count(size)
            if found != digest:
                bad.append(at[digest])
        return bad

    def _count(self, size):
        self.report['verified_slices'] += 1
        self.report['verified_bytes'] += size

    def _images(self, image_ids):
        return [{'id': image_id, 'name': self.records[image_id].get('name')} for image_id in sorted(image_ids)]

    def _describe(self, position):
        entry = {'slice': position.digest, 'size': position.size}
        if position.image_id is None:
            entry['images'] = self._images(self.users.get(position.digest, []))
        else:
            entry['images'] = self._images([position.image_id])
            entry['offset'] = position.offset
        return entry

    # ---- repair
    def _repair(self, backend, bad, check_mode):
        """Replace what another store holds; return the positions that stay bad."""
        left = []
        for position in bad:
            if position.digest is not None:
                left.append(position)
            elif check_mode or self._replace(backend, position, bytes(position.size)):
                # an rbd range the slice list records as zeros: no other store is needed to restore it
                self.report['repaired'].append({'slice': None, 'offset': position.offset, 'from': None})
            else:
                left.append(position)
        for source in self.sources:
            if not left:
                break
            try:
                left = self._repair_from(backend, source, left, check_mode)
            except MultistoreError:
                continue  # this source is unreachable or damaged too: the next one may do
        for position in left:
            entry = {'slice': position.digest, 'images': self._describe(position)['images']}
            if position.offset is not None:
                entry['offset'] = position.offset
            self.report['unrepairable'].append(entry)
        return left

    def _repair_from(self, backend, source, left, check_mode):
        wanted = sorted(set(position.digest for position in left if position.digest))
        for digest, data in self._read_from(source, wanted):
            if hashlib.sha256(data).hexdigest() != digest:
                continue  # damaged there too
            fixed = [position for position in left if position.digest == digest]
            if not check_mode:
                # Parents first: an rbd clone's range that reads through to its parent is whole once the parent is.
                for position in sorted(fixed, key=lambda p: (self._cloned(p), p.image_id or '')):
                    if not (self._cloned(position) and self._holds(backend, position)):
                        self._write(backend, position, data)
                fixed = [position for position in fixed if self._holds(backend, position)]
            for position in fixed:
                entry = {'slice': digest, 'from': source.name}
                if position.offset is not None:
                    entry['offset'] = position.offset
                self.report['repaired'].append(entry)
            left = [position for position in left if position not in fixed]
        return left

    def _replace(self, backend, position, data):
        self._write(backend, position, data)
        return self._holds(backend, position)

    def _cloned(self, position):
        return bool(position.image_id and self.records[position.image_id].get('cloned_from'))

    @staticmethod
    def _write(backend, position, data):
        if not backend.can(DEDUP_SLICES):
            backend.replace_range(position.image_id, position.offset, data)
        else:
            backend.replace_slice(position.digest, data)

    def _holds(self, backend, position):
        """Read back: True when the store now holds the right bytes there."""
        if not backend.can(DEDUP_SLICES):
            slice_list = self.slice_lists[position.image_id]
            return [found for _index, found, _size in backend.hash_ranges(position.image_id, slice_list, [position.index])] == [position.digest]
        return [found for _digest, found, _size in backend.hash_slices([position.digest])] == [position.digest]

    def _read_from(self, source, digests):
        """Yield (digest, data) for those of ``digests`` ``source`` holds; each view is used before the next."""
        if source.backend.can(DEDUP_SLICES):
            held = set(digests) - set(source.backend.missing_slices(digests))
            return source.backend.read_slices(sorted(held))
        return self._read_from_images(source, digests)

    def _read_from_images(self, source, digests):
        remaining = set(digests)
        for image_id in sorted(set(image_id for digest in digests for image_id in self.users.get(digest, []))):
            if not is_complete(source.backend.read_record(image_id)):
                continue
            slice_list = source.backend.read_slice_list(image_id)
            there = sorted(remaining & (slice_list.digests() if slice_list else set()))
            if there:
                for digest, data in source.backend.read_image_slices(image_id, slice_list, there):
                    remaining.discard(digest)
                    yield digest, data

    # ---- the damaged mark in the records
    def _mark(self, backend, records, unrepairable, check_mode):
        damaged = {}
        for position in unrepairable:
            for image_id in ([position.image_id] if position.image_id else self.users.get(position.digest, [])):
                damaged.setdefault(image_id, set()).add(position.offset if position.image_id else position.digest)
        changed = False
        for image_id in sorted(set(damaged) | set(image_id for image_id in self.verified_images if records[image_id].get('damaged'))):
            mark = sorted(damaged[image_id]) if image_id in damaged else None
            if (records[image_id].get('damaged') or {}).get('slices') == mark:
                continue
            self.report['marked_damaged' if mark else 'cleared_damaged'].append(image_id)
            changed = True
            if check_mode:
                continue
            try:
                with backend.image_lock(image_id):
                    record = backend.read_record(image_id)
                    if not is_complete(record):
                        continue
                    if mark:
                        record['damaged'] = {'slices': mark, 'found_at': utc_now()}
                    else:
                        record.pop('damaged', None)
                    backend.write_record(image_id, record)
            except LockError:
                self.report.setdefault('skipped', []).append('image %s: a run holds its lock, its damaged mark was not updated' % image_id)
        return changed
