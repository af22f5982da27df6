# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Cinder store: each image is one raw volume of the store's volume type, as Glance's cinder store keeps it.

Layout (all in Cinder, nothing on the host):
- the volume ``image-<id>`` holds the image's bytes from offset 0, and in its metadata Glance's keys
  (``glance_image_id``, ``image_size``, ``image_owner``) and ours: the record and the slice list as packed documents
  (``multistore_record``, ``multistore_slices``: Cinder values hold 255 characters), and ``multistore_dirty`` while
  bytes are being written. Sealed, it is flagged read-only. Its location is ``cinder://<store>/<volume-id>``.
- the volume ``multistore-store`` (1 GiB, never written: thin on every back end that can) holds the store's identity
  in its metadata, and the image leases: ``multistore_lease.<id>`` = owner and expiry.

Locks: leases in the identity volume's metadata, changed under Cinder's ``os-reserve`` (``cinder_lease.py``).

Writes follow the engine's order: bytes (flushed) -> slice list -> record ``active``; an interrupted write leaves an
``importing`` record at most, which the next run completes or store_cleanup removes with its volume.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import time

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, SliceList, is_zero
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import (
    NoSliceGuard, SliceWriter, Store, is_complete, put_positions, slice_positions)
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.cinder_lease import CinderLease
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.cinder_volumes import (
    GIB, CinderVolumes, close, epoch, pack, stale_keys, unpack)

IMAGE_PREFIX = 'image-'
IDENTITY_VOLUME = 'multistore-store'
IDENTITY = 'multistore_identity'
RECORD = 'multistore_record'
SLICES = 'multistore_slices'
DIRTY = 'multistore_dirty'
# A reservation of the identity volume lasts a few API calls; one older than this was left by a dead run.
RESERVATION_STALE = 60


class CinderSliceWriter(SliceWriter):
    """Writes slices at their offsets in the image's volume, through os-brick; the volume grows in whole GiB."""

    def __init__(self, store, image_id):
        self.store = store
        self.image_id = image_id
        self.new_bytes = 0
        self.positions = None
        volume = store.volume(image_id)
        if volume is None:
            raise StoreError("store '%s': the volume of image %s is gone (deleted while the run held its lease?)" % (store.name, image_id))
        if volume.metadata.get(DIRTY):
            # Bytes of an interrupted attempt: Cinder cannot shrink or zero a volume, so start from a new one.
            volume = store.recreate(image_id, volume)
        self.volume = volume
        self.size = volume.size * GIB
        self.handle = None
        self.disconnect = None

    def staged_digests(self):
        return []

    def expect(self, size):
        if size and size > self.size:
            self._grow(size)

    def plan(self, slice_list):
        self.positions = slice_positions(slice_list)
        self._grow(slice_list.size)

    def _grow(self, needed):
        """Glance's way for an unknown size: whole GiB, never more than needed (a volume cannot shrink)."""
        if needed <= self.size:
            return
        self.volume = self.store.volumes.extend(self.volume.id, needed)
        self.size = self.volume.size * GIB

    def _open(self):
        if self.handle is None:
            self.store.volumes.set_metadata(self.volume.id, {DIRTY: '1'})
            self.handle, self.disconnect = self.store.volumes.connect(self.volume.id)
        return self.handle

    def put(self, digest, data, index=None):
        indexes = put_positions(self.positions, digest, index, 'a cinder')
        if not indexes:
            return False
        data = bytes(data)
        self._grow(indexes[-1] * SLICE_SIZE + len(data))
        handle = self._open()
        try:
            for position in indexes:
                handle.seek(position * SLICE_SIZE)
                handle.write(data)
                self.new_bytes += len(data)
        except Exception as exc:  # os-brick's wrappers raise their back end's errors
            raise StoreError("store '%s': write to volume %s failed: %s" % (self.store.name, self.volume.id, exc))
        return True

    def commit(self):
        try:
            if self.handle is not None:
                self.handle.flush()
        except Exception as exc:
            raise StoreError("store '%s': flush of volume %s failed: %s" % (self.store.name, self.volume.id, exc))
        finally:
            self._close()

    def abort(self, keep=False):
        """Stop writing; the engine removes the volume (its record is not active). Nothing to adopt later."""
        self._close()

    def _close(self):
        if self.handle is not None:
            handle, disconnect = self.handle, self.disconnect
            self.handle = self.disconnect = None
            close(handle, disconnect)


class CinderStore(Store):
    kind = 'cinder'
    remote = True

    def __init__(self, name, config):
        super(CinderStore, self).__init__(name, config)
        self.volumes = CinderVolumes(name, config)
        self._identity_volume = None
        self._ids = {}

    def where(self):
        return self.volumes.where()

    # ---- identity (metadata of the identity volume)
    def identity_volume(self, create=False):
        if self._identity_volume is None:
            found = self.volumes.named(IDENTITY_VOLUME)
            if not found and create:
                made = self.volumes.create(IDENTITY_VOLUME, GIB, {'multistore_store': self.name},
                                           description='vmimages.multistore store identity and leases (holds no data)')
                try:
                    self.volumes.wait(made.id)
                except StoreError:
                    try:
                        self.volumes.delete(made.id)  # a store is not declared on a volume Cinder could not make
                    except StoreError:
                        pass  # the first error says what to fix; the volume is in error, which Cinder deletes later
                    raise
                found = self.volumes.named(IDENTITY_VOLUME)
            self._identity_volume = found[0] if found else None
        return self._identity_volume

    def identity_metadata(self):
        volume = self.identity_volume()
        if volume is None:
            return {}
        fresh = self.volumes.get(volume.id)
        return dict(fresh.metadata) if fresh is not None else {}

    def read_identity(self):
        volume = self.identity_volume()
        if volume is None:
            problem = self.volumes.check_volume_type()
            if problem:
                raise StoreError("store '%s': %s" % (self.name, problem))
            return None
        return unpack(IDENTITY, self.identity_metadata())

    def write_identity(self, identity):
        volume = self.identity_volume(create=True)
        items = pack(IDENTITY, identity)
        self.volumes.set_metadata(volume.id, items)
        self.volumes.delete_metadata(volume.id, stale_keys(IDENTITY, self.identity_metadata(), items))

    def with_reservation(self, decide):
        """Reserve the identity volume (os-reserve: Cinder's compare-and-swap), let ``decide(metadata)`` say whether
        and what to write (``(verdict, {key: value, or None to delete})``), write it, unreserve; return the verdict.
        A reservation left by a dead run is broken after RESERVATION_STALE seconds."""
        volume = self.identity_volume()
        if volume is None:
            raise StoreError("store '%s' has no identity volume %s: declare the store first" % (self.name, IDENTITY_VOLUME))
        waited_since = time.time()
        while not self.volumes.reserve(volume.id):
            current = self.volumes.get(volume.id)
            if current is not None and current.status == 'attaching' and time.time() - waited_since > RESERVATION_STALE:
                self.volumes.unreserve(volume.id)  # the run that reserved it died between two calls
                waited_since = time.time()
            elif current is not None and current.status not in ('attaching', 'available'):
                raise StoreError("store '%s': its identity volume %s is %s: it must stay available" % (self.name, volume.id, current.status))
            time.sleep(0.1)
        try:
            verdict, items = decide(self.identity_metadata())
            if verdict and items:
                self.volumes.set_metadata(volume.id, dict((key, value) for key, value in items.items() if value is not None))
                self.volumes.delete_metadata(volume.id, sorted(key for key, value in items.items() if value is None))
            return verdict
        finally:
            self.volumes.unreserve(volume.id)

    def check_root(self):
        return None

    def status(self):
        return 'connected'

    def stats(self):
        volumes = self._image_volumes()  # one listing: the records ride in the volumes' metadata
        capacity = free = None
        backend_name = self.volumes.extra_specs().get('volume_backend_name')
        for pool in self.volumes.pools():
            capabilities = pool.to_dict().get('capabilities') or {}  # cinderclient flattens them into attributes too
            if backend_name is None or capabilities.get('volume_backend_name') == backend_name:
                total, left = capabilities.get('total_capacity_gb'), capabilities.get('free_capacity_gb')
                if isinstance(total, (int, float)):
                    capacity = (capacity or 0) + int(total * GIB)
                if isinstance(left, (int, float)):
                    free = (free or 0) + int(left * GIB)
        return {'capacity': capacity, 'free': free, 'used': sum(volume.size for volume in volumes) * GIB,
                'image_count': sum(1 for volume in volumes if is_complete(unpack(RECORD, volume.metadata))), 'slice_count': None}

    # ---- images
    def _image_volumes(self):
        volumes = self.volumes.listing(IMAGE_PREFIX)
        for volume in volumes:
            self._ids[volume.name[len(IMAGE_PREFIX):]] = volume.id
        return volumes

    def volume(self, image_id):
        """The volume of the image (the oldest when a race made two), or None."""
        found = self.volumes.named(IMAGE_PREFIX + image_id)
        if not found:
            self._ids.pop(image_id, None)
            return None
        self._ids[image_id] = found[0].id
        return found[0]

    def _volume_id(self, image_id):
        if image_id not in self._ids:
            self.volume(image_id)
        return self._ids.get(image_id)

    def location(self, image_id):
        return 'cinder://%s/%s' % (self.name, self._volume_id(image_id))

    def image_ids(self):
        return sorted(volume.name[len(IMAGE_PREFIX):] for volume in self._image_volumes())

    def read_record(self, image_id):
        volume = self.volume(image_id)
        return unpack(RECORD, volume.metadata) if volume is not None else None

    def read_records(self):
        return dict((volume.name[len(IMAGE_PREFIX):], unpack(RECORD, volume.metadata)) for volume in self._image_volumes())

    def _glance_keys(self, image_id, record):
        keys = {'glance_image_id': image_id}
        if record.get('size') is not None:
            keys['image_size'] = str(record['size'])
        keys['image_owner'] = str(record.get('owner') or self.config.get('project') or '')
        return keys

    def write_record(self, image_id, record):
        volume = self.volume(image_id)
        items = dict(pack(RECORD, record), **self._glance_keys(image_id, record))
        if volume is None:
            volume = self.volumes.create(IMAGE_PREFIX + image_id, int(record.get('size') or 1), items,
                                         description='vmimages.multistore image %s' % record.get('name'))
            volume = self.volumes.wait(volume.id)
            self._ids[image_id] = volume.id
            return
        self.volumes.set_metadata(volume.id, items)
        self.volumes.delete_metadata(volume.id, stale_keys(RECORD, volume.metadata, items))

    def recreate(self, image_id, volume):
        """A fresh volume in place of one an interrupted run wrote into (same name and metadata, no dirty flag)."""
        metadata = dict((key, value) for key, value in volume.metadata.items() if key != DIRTY)
        self.volumes.delete(volume.id)
        made = self.volumes.create(IMAGE_PREFIX + image_id, volume.size * GIB, metadata, description=volume.description)
        made = self.volumes.wait(made.id)
        self._ids[image_id] = made.id
        return made

    def read_slice_list(self, image_id):
        volume = self.volume(image_id)
        document = unpack(SLICES, volume.metadata) if volume is not None else None
        return SliceList.from_dict(document) if document is not None else None

    def write_slice_list(self, image_id, slice_list):
        """Seal the volume: its slice list, Glance's image_size, no dirty flag, read-only (the record flips after)."""
        volume = self.volume(image_id)
        if volume is None:
            raise StoreError("store '%s': the volume of image %s is gone" % (self.name, image_id))
        if volume.size * GIB < slice_list.size:
            volume = self.volumes.extend(volume.id, slice_list.size)
        items = pack(SLICES, slice_list.to_dict())
        items['image_size'] = str(slice_list.size)
        self.volumes.set_metadata(volume.id, items)
        self.volumes.delete_metadata(volume.id, stale_keys(SLICES, volume.metadata, items) + ([DIRTY] if DIRTY in volume.metadata else []))
        self.volumes.set_readonly(volume.id, True)

    def dependants(self, image_id):
        """Volumes made from this image's volume (clones), and its snapshots: Cinder would keep them tied to it."""
        volume_id = self._volume_id(image_id)
        if volume_id is None:
            return []
        found = ['volume %s (%s)' % (volume.id, volume.name or 'unnamed')
                 for volume in self.volumes.call('cannot list volumes', self.volumes.client().volumes.list, detailed=True)
                 if getattr(volume, 'source_volid', None) == volume_id]
        snapshots = self.volumes.call('cannot list snapshots', self.volumes.client().volume_snapshots.list,
                                      search_opts={'volume_id': volume_id})
        found.extend('snapshot %s' % snapshot.id for snapshot in snapshots if snapshot.volume_id == volume_id)
        return found

    def removal_problem(self, image_id):
        dependants = self.dependants(image_id)
        if dependants:
            return ("image %s in store '%s' has dependants: %s; delete them first (a Cinder volume cannot go while volumes "
                    "cloned from it or its snapshots exist)" % (image_id, self.name, ', '.join(dependants)))
        return None

    def remove_image(self, image_id):
        """Invisible at once (the record goes first), then the volume; waits until Cinder says it is gone."""
        volume = self.volume(image_id)
        if volume is None:
            return
        self.volumes.delete_metadata(volume.id, [RECORD])
        self.volumes.delete(volume.id)
        self._ids.pop(image_id, None)

    # ---- data
    def has_slice(self, digest):
        return False

    def missing_slices(self, digests):
        return list(digests)

    def read_slice(self, digest):
        raise StoreError("store '%s' is a cinder store: slices are read by image (read_image_slices)" % self.name)

    def _ranges(self, image_id, slice_list, indexes):
        """Yield (index, bytes) of the volume's slice-list positions ``indexes``."""
        volume_id = self._volume_id(image_id)
        if volume_id is None:
            raise StoreError("store '%s': image %s has no volume" % (self.name, image_id))
        with self.volumes.opened(volume_id, 'read of') as handle:
            for index in indexes:
                handle.seek(index * slice_list.slice_size)
                yield index, handle.read(slice_list.slice_length(index))

    def read_image_slices(self, image_id, slice_list, digests):
        first = {}
        for index, digest in enumerate(slice_list.slices):
            if digest and digest not in first:
                first[digest] = index
        wanted = [first[digest] for digest in digests]
        by_index = dict(zip(wanted, digests))
        for index, data in self._ranges(image_id, slice_list, wanted):
            yield by_index[index], data

    def hash_ranges(self, image_id, slice_list, indexes):
        for index, data in self._ranges(image_id, slice_list, indexes):
            found = None if is_zero(data) and len(data) == slice_list.slice_length(index) else hashlib.sha256(data).hexdigest()
            yield index, found, len(data)

    def replace_range(self, image_id, offset, data):
        with self.volumes.opened(self._volume_id(image_id), 'repair of') as handle:
            handle.seek(offset)
            handle.write(bytes(data))
            handle.flush()

    def slice_writer(self, image_id):
        return CinderSliceWriter(self, image_id)

    def remove_unreferenced(self, candidates):
        return 0

    # ---- server-side operations
    def clone_image(self, parent_id, child_id, record, slice_list):
        """A Cinder volume clone of the parent's volume (on RBD: copy-on-write, no data moves), sealed like an import."""
        parent = self.volume(parent_id)
        if parent is None:
            raise StoreError("store '%s': image %s has no volume to clone" % (self.name, parent_id))
        placeholder = self.volume(child_id)
        if placeholder is not None:
            self.volumes.delete(placeholder.id)  # an empty one the engine or an earlier attempt made
        metadata = dict(pack(RECORD, dict(record, status='importing')), **self._glance_keys(child_id, record))
        made = self.volumes.create(IMAGE_PREFIX + child_id, parent.size * GIB, metadata, source_volid=parent.id,
                                   description='vmimages.multistore image %s' % record.get('name'))
        self.volumes.wait(made.id, what='clone')
        self._ids[child_id] = made.id
        self.write_slice_list(child_id, slice_list)
        self.write_record(child_id, record)

    # ---- concurrency
    def image_lock(self, image_id):
        return CinderLease(self, image_id)

    def slice_guard(self, exclusive):
        return NoSliceGuard()

    def clean_staging(self, max_age, check_mode):
        """Volumes named like an image with no record (an import that died before its first record) and no live
        lease, older than ``max_age``; the engine removes those with a record that is not active."""
        removed = []
        now = time.time()
        for volume in self._image_volumes():
            image_id = volume.name[len(IMAGE_PREFIX):]
            if unpack(RECORD, volume.metadata) is not None or self.image_lock(image_id).busy():
                continue
            if now - epoch(volume.created_at) < max_age:
                continue
            if not check_mode:
                self.volumes.delete(volume.id)
            removed.append(('cinder volume %s (%s)' % (volume.id, volume.name), volume.size * GIB))
        return removed
