# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ceph RBD store: whole raw images in a pool, in Glance's layout, through librbd (python3-rbd).

Layout in the pool (the one Glance's rbd driver uses, so Nova and Cinder can clone from it)::

    <image id>                    an RBD image holding the raw bytes
    <image id>@snap               its protected snapshot; the location is rbd://<fsid>/<pool>/<id>/snap
    image metadata multistore.record  the image record (Glance fields), written last
    multistore.json               (RADOS object) the store identity
    multistore.slices.<id>        (RADOS object) the slice list: which 4 MiB ranges hold which sha256
    multistore.lock.<id>          (RADOS object) carries the image lock (a cls_lock with a duration) and its owner

An RBD store is position-addressed: no content addressing and no dedup between images (RBD has COW
clones for that). The slice list is kept anyway so that copies to slice stores, exports and checks
verify every 4 MiB range against its sha256, exactly as for the other stores.

A write goes: create the image (record 'importing'), asynchronous writes at each slice's offset,
flush, resize to the exact size, slice list, snapshot ``snap`` protected, then the record 'active'.
Python's librbd binding releases the GIL in its calls, and aio_write keeps several writes in flight.
The writer (with the adoption of what a killed run wrote) is in rbd_writer.py, the lock in rbd_lock.py.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import errno
import hashlib
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

try:
    import rados
    import rbd
    HAS_RBD = True
except ImportError:  # checked when the store is used, with a clear message
    HAS_RBD = False

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import SLICE_SIZE, SliceList, is_zero
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import NoSliceGuard, Store, is_complete
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.rbd_lock import RbdLock
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.rbd_writer import RbdSliceWriter

IDENTITY_OBJECT = 'multistore.json'
RECORD_KEY = 'multistore.record'
SNAPSHOT = 'snap'
CONNECT_TIMEOUT = 10
# Seconds an OSD operation may take before it fails (rados_osd_op_timeout): a dead OSD fails the task, never hangs it.
DEFAULT_OP_TIMEOUT = 60
# Reads in flight during a verify (librbd is thread-safe and releases the GIL).
VERIFY_READS = 4


def _uuid_like(name):
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


class RbdStore(Store):
    kind = 'rbd'
    remote = True
    slice_size = SLICE_SIZE

    def __init__(self, name, config):
        super(RbdStore, self).__init__(name, config)
        self.pool = config['pool']
        self._cluster = None
        self._ioctx = None
        self._fsid = None

    # ---- connection
    def where(self):
        return 'rbd pool %s' % self.pool

    def error(self, what, exc):
        """A StoreError that names the store and says what to do; never the keyring's content."""
        text = str(exc) or exc.__class__.__name__
        hint = ''
        if isinstance(exc, (rados.PermissionDeniedError,)) or getattr(exc, 'errno', None) in (errno.EPERM, errno.EACCES):
            hint = ': the ceph user %s lacks the caps (it needs mon \'profile rbd\', osd \'profile rbd pool=%s\')' % (
                self._user(), self.pool)
        elif isinstance(exc, rados.TimedOut) or getattr(exc, 'errno', None) == errno.ETIMEDOUT:
            hint = self.timeout_hint()
        return StoreError("store '%s' (%s): %s: %s%s" % (self.name, self.where(), what, text, hint))

    def timeout_hint(self):
        return (': the cluster did not answer within %d s (op_timeout): are the monitors (%s) and the OSDs of pool %s up '
                '(ceph -s)? Run again once they are: what was written is kept' % (
                    self.op_timeout(), ', '.join(self.config.get('mon_hosts') or []) or 'from ceph.conf', self.pool))

    def op_timeout(self):
        return self.config.get('op_timeout') or DEFAULT_OP_TIMEOUT

    def _user(self):
        return 'client.%s' % (self.config.get('user') or 'admin')

    def cluster(self):
        if self._cluster is None:
            if not HAS_RBD:
                raise StoreError("store '%s': the rbd store needs python3-rados and python3-rbd on the host running the task "
                                 "(apt install python3-rbd; with a virtualenv, create it with --system-site-packages)" % self.name)
            conf = {'client_mount_timeout': str(CONNECT_TIMEOUT), 'rados_mon_op_timeout': str(CONNECT_TIMEOUT),
                    'rados_osd_op_timeout': str(self.op_timeout()), 'log_to_stderr': 'false', 'err_to_stderr': 'false'}
            if self.config.get('keyring'):
                conf['keyring'] = self.config['keyring']
            if self.config.get('mon_hosts'):
                conf['mon_host'] = ','.join(self.config['mon_hosts'])
            conffile = self.config.get('ceph_conf') or ''
            if conffile and not os.path.isfile(conffile):
                raise StoreError("store '%s': ceph_conf %s does not exist on this host" % (self.name, conffile))
            try:
                # conffile=None: with mon_hosts only, read no ceph.conf at all (not even /etc/ceph's default search)
                cluster = rados.Rados(conffile=conffile or None, rados_id=self.config.get('user') or 'admin', conf=conf)
                cluster.connect(timeout=CONNECT_TIMEOUT)
            except rados.Error as exc:
                raise StoreError("store '%s' (%s): cannot connect to the ceph cluster as %s: %s: check the user's key%s and that the "
                                 "monitors (%s) are up and reachable" % (
                                     self.name, self.where(), self._user(), exc,
                                     ' in %s' % self.config['keyring'] if self.config.get('keyring') else '',
                                     ', '.join(self.config.get('mon_hosts') or []) or 'mon_host of %s' % (conffile or 'ceph.conf')))
            self._cluster = cluster
        return self._cluster

    def pool_exists(self):
        try:
            return self.cluster().pool_exists(self.pool)
        except rados.Error as exc:
            raise self.error('cannot look up pool %s' % self.pool, exc)

    def ioctx(self):
        if self._ioctx is None:
            cluster = self.cluster()
            try:
                self._ioctx = cluster.open_ioctx(self.pool)
            except rados.ObjectNotFound:
                raise StoreError("store '%s': pool '%s' does not exist in the ceph cluster %s: declare the store with a ceph user "
                                 "that may create it, or create it (ceph osd pool create %s; rbd pool init %s)"
                                 % (self.name, self.pool, self.fsid(), self.pool, self.pool))
            except rados.Error as exc:
                raise self.error('cannot open pool %s' % self.pool, exc)
        return self._ioctx

    def fsid(self):
        if self._fsid is None:
            self._fsid = self.cluster().get_fsid()
        return self._fsid

    def close(self):
        if self._ioctx is not None:
            self._ioctx.close()
            self._ioctx = None
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

    def create_pool(self):
        """Create the pool (when the ceph user may) and enable the rbd application on it."""
        try:
            self.cluster().create_pool(self.pool)
            self.ioctx().application_enable('rbd')
        except rados.Error as exc:
            raise self.error("pool '%s' does not exist and cannot be created (create it with: ceph osd pool create %s; "
                             "rbd pool init %s)" % (self.pool, self.pool, self.pool), exc)

    # ---- identity and health
    def read_identity(self):
        if not self.pool_exists():
            return None
        try:
            data = self.ioctx().read(IDENTITY_OBJECT, 1 << 20)
        except rados.ObjectNotFound:
            return None
        except rados.Error as exc:
            raise self.error('cannot read the store identity', exc)
        try:
            return json.loads(data.decode('utf-8'))
        except ValueError as exc:
            raise StoreError("store '%s': the identity object %s in pool %s is corrupt: %s" % (self.name, IDENTITY_OBJECT, self.pool, exc))

    def write_identity(self, identity):
        if not self.pool_exists():
            self.create_pool()
        try:
            self.ioctx().write_full(IDENTITY_OBJECT, json.dumps(identity, sort_keys=True, indent=1).encode('utf-8'))
        except rados.Error as exc:
            raise self.error('cannot write the store identity', exc)

    def check_root(self):
        return None

    def status(self):
        try:
            self.ioctx().stat(IDENTITY_OBJECT)
        except (rados.Error, StoreError):
            return 'disconnected'
        return 'connected'

    def stats(self):
        try:
            pool = self.ioctx().get_stats()
            cluster = self.cluster().get_cluster_stats()
        except rados.Error as exc:
            raise self.error('cannot read the pool statistics', exc)
        images = self.read_records()
        return {'capacity': cluster['kb'] * 1024, 'free': cluster['kb_avail'] * 1024, 'used': pool['num_bytes'],
                'image_count': sum(1 for record in images.values() if is_complete(record)),
                'slice_count': None}

    def location(self, image_id):
        return 'rbd://%s/%s/%s/%s' % (self.fsid(), self.pool, image_id, SNAPSHOT)

    # ---- images
    def open_image(self, image_id, snapshot=None, read_only=False):
        try:
            return rbd.Image(self.ioctx(), image_id, snapshot=snapshot, read_only=read_only)
        except rbd.ImageNotFound:
            raise StoreError("store '%s': rbd image %s/%s does not exist" % (self.name, self.pool, image_id))
        except rbd.Error as exc:
            raise self.error('cannot open rbd image %s' % image_id, exc)

    def image_ids(self):
        try:
            names = rbd.RBD().list(self.ioctx())
        except rbd.Error as exc:
            raise self.error('cannot list the images', exc)
        return sorted(name for name in names if _uuid_like(name))

    def read_record(self, image_id):
        try:
            with rbd.Image(self.ioctx(), image_id, read_only=True) as image:
                return json.loads(image.metadata_get(RECORD_KEY))
        except (rbd.ImageNotFound, KeyError):
            return None
        except rbd.Error as exc:
            if getattr(exc, 'errno', None) == errno.ENOENT:
                return None
            raise self.error('cannot read the record of image %s' % image_id, exc)

    def write_record(self, image_id, record):
        """Set the record (creating an empty image first when the id is new: the record lives with the image)."""
        try:
            try:
                image = rbd.Image(self.ioctx(), image_id)
            except rbd.ImageNotFound:
                rbd.RBD().create(self.ioctx(), image_id, 0, old_format=False, features=self._features())
                image = rbd.Image(self.ioctx(), image_id)
            with image:
                image.metadata_set(RECORD_KEY, json.dumps(record, sort_keys=True))
        except rbd.Error as exc:
            raise self.error('cannot write the record of image %s' % image_id, exc)

    @staticmethod
    def _features():
        """layering is what COW clones need; the others are the defaults of `rbd create`."""
        return (rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK | rbd.RBD_FEATURE_OBJECT_MAP |
                rbd.RBD_FEATURE_FAST_DIFF | rbd.RBD_FEATURE_DEEP_FLATTEN)

    def _slices_key(self, image_id):
        return 'multistore.slices.%s' % image_id

    def read_slice_list(self, image_id):
        try:
            size = self.ioctx().stat(self._slices_key(image_id))[0]
            data = self.ioctx().read(self._slices_key(image_id), size)
        except rados.ObjectNotFound:
            return None
        except rados.Error as exc:
            raise self.error('cannot read the slice list of image %s' % image_id, exc)
        return SliceList.from_dict(json.loads(data.decode('utf-8')))

    def write_slice_list(self, image_id, slice_list):
        """Seal the image: exact size, slice list, protected snapshot ``snap`` (the record flips to active after)."""
        try:
            with rbd.Image(self.ioctx(), image_id) as image:
                if image.size() != slice_list.size:
                    image.resize(slice_list.size)
                self.ioctx().write_full(self._slices_key(image_id), json.dumps(slice_list.to_dict()).encode('utf-8'))
                snaps = [snap['name'] for snap in image.list_snaps()]
                if SNAPSHOT not in snaps:
                    image.create_snap(SNAPSHOT)
                if not image.is_protected_snap(SNAPSHOT):
                    image.protect_snap(SNAPSHOT)
        except rbd.Error as exc:
            raise self.error('cannot seal rbd image %s' % image_id, exc)

    def clones(self, image_id):
        """Images cloned from this image's snapshot, as 'pool/name' strings."""
        try:
            with rbd.Image(self.ioctx(), image_id, read_only=True) as image:
                if SNAPSHOT not in [snap['name'] for snap in image.list_snaps()]:
                    return []
                image.set_snap(SNAPSHOT)
                return ['%s/%s' % (pool, name) for pool, name in image.list_children()]
        except rbd.ImageNotFound:
            return []
        except rbd.Error as exc:
            raise self.error('cannot list the clones of image %s' % image_id, exc)

    def removal_problem(self, image_id):
        children = self.clones(image_id)
        if children:
            return ("image %s has %d clone%s in store '%s' (%s): delete %s first (RBD keeps a clone's parent)"
                    % (image_id, len(children), 's' if len(children) > 1 else '', self.name, ', '.join(children),
                       'them' if len(children) > 1 else 'it'))
        return None

    def remove_image(self, image_id):
        problem = self.removal_problem(image_id)
        if problem:
            raise ImageError(problem)
        try:
            try:
                image = rbd.Image(self.ioctx(), image_id)
            except rbd.ImageNotFound:
                return False
            with image:
                try:
                    image.metadata_remove(RECORD_KEY)  # invisible at once
                except KeyError:
                    pass
                for snap in list(image.list_snaps()):
                    if image.is_protected_snap(snap['name']):
                        image.unprotect_snap(snap['name'])
                    image.remove_snap(snap['name'])
            rbd.RBD().remove(self.ioctx(), image_id)
            try:
                self.ioctx().remove_object(self._slices_key(image_id))
            except rados.ObjectNotFound:
                pass
        except rbd.ImageBusy as exc:
            raise self.error('rbd image %s is in use (watched by a client, e.g. a running VM)' % image_id, exc)
        except (rbd.Error, rados.Error) as exc:
            raise self.error('cannot remove rbd image %s' % image_id, exc)
        return True

    # ---- slices (positions of the slice list)
    def has_slice(self, digest):
        return False

    def missing_slices(self, digests):
        return list(digests)

    def read_slice(self, digest):
        raise StoreError("store '%s' is an rbd store: slices are read by image (read_image_slices)" % self.name)

    def read_image_slices(self, image_id, slice_list, digests):
        """Yield (digest, data) for ``digests`` from the image's snapshot, in the order given."""
        first = {}
        for index, digest in enumerate(slice_list.slices):
            if digest and digest not in first:
                first[digest] = index
        image = self.open_image(image_id, snapshot=SNAPSHOT, read_only=True)
        try:
            for digest in digests:
                index = first[digest]
                try:
                    data = image.read(index * slice_list.slice_size, slice_list.slice_length(index))
                except rbd.Error as exc:
                    raise self.error('read of rbd image %s failed' % image_id, exc)
                yield digest, data
        finally:
            image.close()

    def hash_ranges(self, image_id, slice_list, indexes):
        """Yield (index, sha256 of the range, or None when it reads as zeros, length) for the slice-list
        positions ``indexes`` of the image's snapshot: what exports and clones read (store_cleanup ``verify``)."""
        image = self.open_image(image_id, snapshot=SNAPSHOT, read_only=True)

        def read(index):
            try:
                data = image.read(index * slice_list.slice_size, slice_list.slice_length(index))
            except rbd.Error as exc:
                raise self.error('read of rbd image %s failed' % image_id, exc)
            found = None if is_zero(data) and len(data) == slice_list.slice_length(index) else hashlib.sha256(data).hexdigest()
            return index, found, len(data)
        try:
            with ThreadPoolExecutor(max_workers=VERIFY_READS) as pool:
                window = collections.deque()
                for index in indexes:
                    window.append(pool.submit(read, index))
                    if len(window) >= VERIFY_READS:
                        yield window.popleft().result()
                while window:
                    yield window.popleft().result()
        finally:
            image.close()

    def replace_range(self, image_id, offset, data):
        """Write ``data`` (verified by the caller) at ``offset`` of the sealed image.

        A snapshot cannot be written through librbd, and the image is never written after its seal, so the
        snapshot and the head share their RADOS objects: the bytes are written into those objects, as bit
        rot changed them, one RADOS write per object (each atomic). Where the snapshot has its own copy of
        an object (a clone's range still in its parent), this changes nothing: the caller reads it back.
        """
        try:
            with rbd.Image(self.ioctx(), image_id, read_only=True) as image:
                info = image.stat()
            object_size = 1 << info['order']
            view = memoryview(bytes(data))
            while len(view):
                number, within = divmod(offset, object_size)
                part = view[:object_size - within]
                self.ioctx().write('%s.%016x' % (info['block_name_prefix'], number), bytes(part), within)
                offset += len(part)
                view = view[len(part):]
        except (rbd.Error, rados.Error) as exc:
            raise self.error('cannot repair rbd image %s' % image_id, exc)

    def slice_writer(self, image_id):
        return RbdSliceWriter(self, image_id)

    def remove_unreferenced(self, candidates):
        return 0

    # ---- server-side operations
    def same_cluster(self, other):
        return isinstance(other, RbdStore) and other.fsid() == self.fsid()

    def deep_copy_from(self, source, image_id):
        """Copy ``source``'s image (its snapshot) into this pool inside the cluster (librbd deep copy)."""
        try:
            try:
                rbd.RBD().remove(self.ioctx(), image_id)  # the empty placeholder the engine made
            except rbd.ImageNotFound:
                pass
            with rbd.Image(source.ioctx(), image_id, snapshot=SNAPSHOT, read_only=True) as image:
                image.deep_copy(self.ioctx(), image_id, features=self._features())
        except rbd.Error as exc:
            raise self.error('deep copy of rbd image %s from pool %s failed' % (image_id, source.pool), exc)

    def clone_image(self, parent_id, child_id, record, slice_list):
        """A COW clone of ``parent_id@snap`` named ``child_id``, sealed like an import (O(1): no data moves)."""
        try:
            rbd.RBD().clone(self.ioctx(), parent_id, SNAPSHOT, self.ioctx(), child_id, features=self._features())
        except rbd.Error as exc:
            raise self.error('cannot clone rbd image %s' % parent_id, exc)
        self.write_record(child_id, dict(record, status='importing'))
        self.write_slice_list(child_id, slice_list)
        self.write_record(child_id, record)

    def break_dead_client(self, image_id, client):
        """Break the exclusive lock that ``client`` (the address of a dead run's Ceph client) holds on the image."""
        if not client:
            return
        try:
            with rbd.Image(self.ioctx(), image_id) as image:
                for owner in image.lock_get_owners():
                    if owner['owner'].rsplit('/', 1)[-1] == client.rsplit('/', 1)[-1]:  # the same client nonce
                        image.lock_break(owner['mode'], owner['owner'])
        except rbd.Error:
            pass  # no image yet, or a user without the blocklist cap: librbd waits for the client's watch to time out

    # ---- concurrency
    def image_lock(self, image_id):
        return RbdLock(self, image_id)

    def slice_guard(self, exclusive):
        return NoSliceGuard()

    def clean_staging(self, max_age, check_mode):
        """Leftovers of interrupted imports and removals: images named by an id with no record (and no lock),
        slice-list objects whose image is gone. An image with a record is the engine's business (it is
        removed as a failed import when not active)."""
        removed = []
        ids = set(self.image_ids())
        for image_id in sorted(ids):
            if self.read_record(image_id) is not None or self.image_lock(image_id).busy():
                continue
            size = 0
            try:
                with rbd.Image(self.ioctx(), image_id, read_only=True) as image:
                    size = image.size()
            except rbd.Error:
                pass
            if not check_mode:
                self.remove_image(image_id)
            removed.append(('rbd image %s/%s' % (self.pool, image_id), size))
        try:
            objects = [obj.key for obj in self.ioctx().list_objects() if obj.key.startswith('multistore.slices.')]
        except rados.Error as exc:
            raise self.error('cannot list the pool', exc)
        for key in sorted(objects):
            image_id = key[len('multistore.slices.'):]
            if image_id in ids or self.image_lock(image_id).busy():
                continue
            if not check_mode:
                try:
                    self.ioctx().remove_object(key)
                except rados.ObjectNotFound:
                    pass
            removed.append(('rados object %s/%s' % (self.pool, key), 0))
        return removed
