# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cinder volumes as the cinder store uses them: python-cinderclient calls, waits with clear errors, metadata
documents split over Cinder's 255-character metadata values, and the connection to a volume's data through os-brick.

Kept apart from the store (``cinder.py``) because it is the only place that knows Cinder's API and its failure modes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import contextlib
import datetime
import json
import socket
import time
import zlib

try:
    from cinderclient import client as cinder_client
    from cinderclient import exceptions as cinder_errors
    from keystoneauth1 import exceptions as auth_errors
    from keystoneauth1 import session as auth_session
    HAS_CINDERCLIENT = True
except ImportError:  # checked when a cinder store is opened, with the package to install
    HAS_CINDERCLIENT = False

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError

API_VERSION = '3.0'
GIB = 1 << 30
# Cinder refuses metadata values over 255 characters and request bodies over 112 KiB (oslo sizelimit).
CHUNK = 255
BATCH_BYTES = 64 * 1024
POLL = 0.5
# Seconds one API request may take (the API itself waits on its database and RabbitMQ).
API_TIMEOUT = 60
CREATE_TIMEOUT = 300
DELETE_TIMEOUT = 300
EXTEND_TIMEOUT = 300
# Statuses Cinder deletes a volume in.
DELETABLE = ('available', 'error', 'error_restoring', 'error_extending', 'error_managing')
SERVICES_HINT = 'are cinder-scheduler and cinder-volume running, is RabbitMQ up, and is the back end of volume type %s up?'


def pack(prefix, document):
    """A JSON document as metadata items ``<prefix>.<n>`` (zlib + base64, 255 characters each) and ``<prefix>``
    (the item count), so that a reader can tell a whole document from a partly written one."""
    text = base64.b64encode(zlib.compress(json.dumps(document, sort_keys=True).encode('utf-8'), 6)).decode('ascii')
    chunks = [text[start:start + CHUNK] for start in range(0, len(text), CHUNK)] or ['']
    items = dict(('%s.%d' % (prefix, index), chunk) for index, chunk in enumerate(chunks))
    items[prefix] = str(len(chunks))
    return items


def unpack(prefix, metadata):
    """The document ``pack`` wrote, or None when there is none or it is incomplete."""
    count = (metadata or {}).get(prefix)
    if not count or not count.isdigit():
        return None
    try:
        text = ''.join(metadata['%s.%d' % (prefix, index)] for index in range(int(count)))
        return json.loads(zlib.decompress(base64.b64decode(text)).decode('utf-8'))
    except (KeyError, ValueError, zlib.error):
        return None


def stale_keys(prefix, metadata, items):
    """Items of an older, longer document under ``prefix`` that the new ``items`` do not overwrite."""
    return sorted(key for key in metadata if key.startswith(prefix + '.') and key not in items)


def epoch(timestamp):
    """Cinder's timestamps (ISO 8601, UTC) in seconds; 0 when unreadable (then old enough)."""
    try:
        text = (timestamp or '').split('.')[0].rstrip('Z')
        return (datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S') - datetime.datetime(1970, 1, 1)).total_seconds()
    except ValueError:
        return 0


def close(handle, disconnect):
    """Close a volume's data handle and disconnect it (disconnect releases what close could not)."""
    try:
        handle.close()
    except Exception:  # os-brick's wrappers raise their back end's errors
        pass
    disconnect()


def gib(size):
    """Cinder sizes volumes in whole GiB (at least 1)."""
    return max(1, (int(size) + GIB - 1) // GIB)


class CinderVolumes:
    """The volumes of one project in one Cinder, seen through python-cinderclient."""

    def __init__(self, store_name, config):
        self.store_name = store_name
        self.config = config
        self._client = None

    # ---- errors
    def where(self):
        return 'Cinder %s, volume type %s' % (self.config.get('endpoint') or self.config.get('auth_url'), self.config['volume_type'])

    def error(self, what, exc=None, hint=None):
        """A StoreError naming the store, what failed and what to check; never a password or token."""
        text = ''
        if exc is not None:
            text = ': %s' % (getattr(exc, 'message', None) or str(exc) or exc.__class__.__name__)
            for secret in (self.config.get('password'),):
                if secret:
                    text = text.replace(secret, '********')
            if hint is None:
                hint = self._hint(exc)
        return StoreError("store '%s' (%s): %s%s%s" % (self.store_name, self.where(), what, text, ': %s' % hint if hint else ''))

    def _hint(self, exc):
        where = self.config.get('endpoint') or self.config.get('auth_url')
        if isinstance(exc, auth_errors.ConnectTimeout):  # keystoneauth says so for connect and read timeouts alike
            return ('the Cinder API (or Keystone) at %s did not answer in time: is it up, and are its database and RabbitMQ up '
                    '(the API waits on them)?' % where)
        if isinstance(exc, (auth_errors.ConnectFailure, socket.error)):
            return 'is the Cinder API (or Keystone) at %s up and reachable from this host?' % where
        if isinstance(exc, (auth_errors.Unauthorized, cinder_errors.Unauthorized)):
            return 'check user, password, project and the domains of the store'
        if isinstance(exc, (auth_errors.EndpointNotFound, auth_errors.CatalogException)):
            return 'the Keystone catalog has no volumev3 endpoint%s' % (' in region %s' % self.config['region'] if self.config.get('region') else '')
        if isinstance(exc, cinder_errors.Forbidden):
            return 'the user lacks the rights (a member of the project may create and delete volumes)'
        if isinstance(exc, cinder_errors.ClientException) and (getattr(exc, 'code', None) or 0) >= 500:
            return "Cinder failed: see cinder-api's log; is its database up, is RabbitMQ up?"
        return None

    # ---- client
    def client(self):
        if self._client is None:
            if not HAS_CINDERCLIENT:
                raise StoreError("store '%s': python-cinderclient and keystoneauth1 are missing on this host (install python3-cinderclient)"
                                 % self.store_name)
            config = self.config
            if config.get('auth_url'):
                from keystoneauth1.identity import v3
                auth = v3.Password(auth_url=config['auth_url'], username=config['user'], password=config['password'],
                                   project_name=config['project'], user_domain_name=config.get('user_domain') or 'Default',
                                   project_domain_name=config.get('project_domain') or 'Default')
            else:
                from cinderclient.contrib.noauth import CinderNoAuthPlugin
                auth = CinderNoAuthPlugin(config['user'], config['project'], endpoint=config['endpoint'].rstrip('/'))
            session = auth_session.Session(auth=auth, verify=config.get('validate_certs', True), timeout=API_TIMEOUT)
            self._client = cinder_client.Client(API_VERSION, session=session, region_name=config.get('region'))
        return self._client

    def call(self, what, function, *args, **kwargs):
        """``function(*args)``, with any Cinder or connection failure turned into a clear StoreError."""
        try:
            return function(*args, **kwargs)
        except StoreError:
            raise
        except cinder_errors.NotFound:
            raise
        except (cinder_errors.ClientException, auth_errors.ClientException, socket.error) as exc:
            raise self.error(what, exc)

    # ---- volumes
    def get(self, volume_id):
        """The volume, or None when it is gone."""
        try:
            return self.call('cannot read volume %s' % volume_id, self.client().volumes.get, volume_id)
        except cinder_errors.NotFound:
            return None

    def named(self, name):
        """Volumes of the store's type called ``name``, oldest first (the first one made wins a race)."""
        volumes = self.call('cannot list volumes', self.client().volumes.list, detailed=True, search_opts={'name': name})
        return sorted((volume for volume in volumes if volume.name == name and self.ours(volume)),
                      key=lambda volume: (volume.created_at or '', volume.id))

    def listing(self, prefix):
        """Every volume of the store's type whose name starts with ``prefix`` (all pages)."""
        volumes = self.call('cannot list volumes', self.client().volumes.list, detailed=True)
        return [volume for volume in volumes if (volume.name or '').startswith(prefix) and self.ours(volume)]

    def ours(self, volume):
        return getattr(volume, 'volume_type', None) in (self.config['volume_type'], self._type_id())

    def _type_id(self):
        if not hasattr(self, '_volume_type_id'):
            self._volume_type_id = None
            try:
                for volume_type in self.client().volume_types.list():
                    if volume_type.name == self.config['volume_type']:
                        self._volume_type_id = volume_type.id
            except (cinder_errors.ClientException, auth_errors.ClientException):
                pass  # listing types may need more rights than the store has: names still match
        return self._volume_type_id

    def check_volume_type(self):
        """None, or why the declared volume type cannot be used."""
        try:
            names = [volume_type.name for volume_type in self.client().volume_types.list()]
        except cinder_errors.ClientException as exc:
            raise self.error('cannot list the volume types', exc)
        if self.config['volume_type'] not in names:
            return 'Cinder has no volume type %s (it has: %s): create it, or give one of those' % (
                self.config['volume_type'], ', '.join(sorted(names)) or 'none')
        return None

    def create(self, name, size, metadata, source_volid=None, description=None):
        kwargs = dict(name=name, volume_type=self.config['volume_type'], metadata=metadata, description=description)
        if self.config.get('availability_zone'):
            kwargs['availability_zone'] = self.config['availability_zone']
        if source_volid:
            kwargs['source_volid'] = source_volid
        return self.call('cannot create volume %s' % name, self.client().volumes.create, gib(size), **kwargs)

    def wait(self, volume_id, want=('available',), timeout=None, what='create'):
        """Poll until the volume is in one of ``want``; a status ``error*`` or the timeout is a clear error."""
        timeout = timeout or CREATE_TIMEOUT
        deadline = time.time() + timeout
        status = None
        while True:
            volume = self.get(volume_id)
            if volume is None:
                raise self.error('volume %s disappeared while waiting for it to %s' % (volume_id, what))
            status = volume.status
            if status in want:
                return volume
            if status.startswith('error'):
                raise self.error('volume %s is in status %s (%s failed in Cinder)' % (volume_id, status, what),
                                 hint='see the cinder-volume log; ' + SERVICES_HINT % self.config['volume_type'])
            if time.time() >= deadline:
                raise self.error('volume %s is still %s after %d s (waiting to %s)' % (volume_id, status, timeout, what),
                                 hint=SERVICES_HINT % self.config['volume_type'])
            time.sleep(POLL)

    def wait_gone(self, volume_id, timeout=None):
        timeout = timeout or DELETE_TIMEOUT
        deadline = time.time() + timeout
        while True:
            volume = self.get(volume_id)
            if volume is None:
                return
            if volume.status == 'error_deleting':
                raise self.error('Cinder could not delete volume %s (status error_deleting)' % volume_id,
                                 hint='see the cinder-volume log; reset the status and delete it again')
            if time.time() >= deadline:
                raise self.error('volume %s is still %s %d s after its deletion was asked' % (volume_id, volume.status, timeout),
                                 hint=SERVICES_HINT % self.config['volume_type'])
            time.sleep(POLL)

    def delete(self, volume_id):
        """Delete the volume and wait until it is gone. One left stuck by a failure (a create whose message was lost
        while RabbitMQ was down, a reservation of a dead run) is first put where Cinder deletes it."""
        volume = self.get(volume_id)
        # A volume Cinder is still working on (creating, extending) is waited for, as long as a create may take.
        while volume is not None and volume.status not in DELETABLE + ('attaching',) and \
                time.time() - epoch(volume.updated_at or volume.created_at) < CREATE_TIMEOUT:
            time.sleep(POLL)
            volume = self.get(volume_id)
        if volume is None:
            return
        if volume.status == 'attaching':
            self.unreserve(volume_id)  # a reservation left by a dead run (callers hold the image's lease)
        elif volume.status not in DELETABLE:
            try:
                self.client().volumes.reset_state(volume_id, 'error')
            except cinder_errors.Forbidden:
                raise self.error('volume %s is stuck in %s and cannot be deleted' % (volume_id, volume.status),
                                 hint='a Cinder admin must reset its state (cinder reset-state --state error %s); '
                                      'store_cleanup then removes it' % volume_id)
            except (cinder_errors.ClientException, auth_errors.ClientException, socket.error) as exc:
                raise self.error('cannot reset the state of volume %s' % volume_id, exc)
        try:
            self.call('cannot delete volume %s' % volume_id, self.client().volumes.delete, volume_id)
        except cinder_errors.NotFound:
            return
        self.wait_gone(volume_id)

    def extend(self, volume_id, size):
        wanted = gib(size)
        self.call('cannot extend volume %s' % volume_id, self.client().volumes.extend, volume_id, wanted)
        # The API marks the volume `extending` before it answers; a scheduler that finds no room puts it back to
        # `available` at its old size (and says why only in Cinder's user messages): that is a refusal too.
        volume = self.wait(volume_id, timeout=EXTEND_TIMEOUT or CREATE_TIMEOUT, what='extend')
        if volume.size < wanted:
            raise self.error('Cinder did not grow volume %s to %d GiB: it stays at %d GiB' % (volume_id, wanted, volume.size),
                             hint="no back end of volume type %s has room for it (see cinder-scheduler's log or "
                                  "`cinder message-list`): free space there, or use another store" % self.config['volume_type'])
        return volume

    def set_metadata(self, volume_id, items):
        """Add or overwrite metadata items, in requests small enough for Cinder's body size limit."""
        batch, size = {}, 0
        for key, value in sorted(items.items()):
            batch[key] = value
            size += len(key) + len(value) + 8
            if size >= BATCH_BYTES:
                self.call('cannot write the metadata of volume %s' % volume_id, self.client().volumes.set_metadata, volume_id, batch)
                batch, size = {}, 0
        if batch:
            self.call('cannot write the metadata of volume %s' % volume_id, self.client().volumes.set_metadata, volume_id, batch)

    def delete_metadata(self, volume_id, keys):
        if keys:
            self.call('cannot delete metadata of volume %s' % volume_id, self.client().volumes.delete_metadata, volume_id, list(keys))

    def reserve(self, volume_id):
        """Cinder's own compare-and-swap (available -> attaching): True when this call made it."""
        try:
            self.client().volumes.reserve(volume_id)
            return True
        except cinder_errors.BadRequest:
            return False  # not available: another run holds the reservation (or the volume is busy)
        except cinder_errors.NotFound:
            raise
        except (cinder_errors.ClientException, auth_errors.ClientException, socket.error) as exc:
            raise self.error('cannot reserve volume %s' % volume_id, exc)

    def unreserve(self, volume_id):
        self.call('cannot unreserve volume %s' % volume_id, self.client().volumes.unreserve, volume_id)

    def set_readonly(self, volume_id, flag):
        self.call('cannot set the read-only flag of volume %s' % volume_id, self.client().volumes.update_readonly_flag, volume_id, flag)

    def pools(self):
        """Cinder's pool statistics (admin only in most clouds): [] when this user may not read them."""
        try:
            return self.client().pools.list(detailed=True)
        except cinder_errors.Forbidden:
            return []
        except (cinder_errors.ClientException, auth_errors.ClientException, socket.error) as exc:
            raise self.error('cannot read the back-end pools', exc)

    def extra_specs(self):
        for volume_type in self.call('cannot list the volume types', self.client().volume_types.list):
            if volume_type.name == self.config['volume_type']:
                try:
                    return volume_type.get_keys()
                except cinder_errors.ClientException:
                    return {}
        return {}

    # ---- data
    def connect(self, volume_id):
        """A file-like object over the volume's data, through os-brick's connector for its back end, and how to
        disconnect it. RBD volumes are opened with librbd (no kernel device: do_local_attach off)."""
        try:
            from os_brick.initiator import connector as brick
        except ImportError:
            raise StoreError("store '%s': os-brick is missing on this host (install python3-os-brick)" % self.store_name)
        properties = {'platform': 'x86_64', 'os_type': 'linux', 'host': socket.gethostname(), 'ip': '127.0.0.1',
                      'multipath': False, 'do_local_attach': False, 'initiator': 'vmimages-multistore'}
        info = self.call('cannot connect to volume %s' % volume_id, self.client().volumes.initialize_connection, volume_id, properties)
        protocol = info.get('driver_volume_type')
        data = dict(info.get('data') or {})
        if protocol == 'rbd':
            data['do_local_attach'] = False
            if self.config.get('keyring'):
                with open(self.config['keyring']) as stream:
                    data['keyring'] = stream.read()
        try:
            connector = brick.InitiatorConnector.factory(protocol.upper(), None, do_local_attach=False, use_multipath=False)
            device = connector.connect_volume(data)
        except Exception as exc:  # os-brick raises its own and the back end's exceptions
            self._terminate(volume_id, properties)
            text = str(exc).replace(data.get('keyring') or '\0', '********')
            raise StoreError("store '%s' (%s): cannot open the data of volume %s through os-brick (%s): %s%s" % (
                self.store_name, self.where(), volume_id, protocol, text,
                ': give keyring (the Ceph keyring of the user in the volume type\'s back end)' if protocol == 'rbd' and not data.get('keyring') else ''))
        handle = device['path']
        if isinstance(handle, str):
            handle = open(handle, 'r+b')

        def disconnect():
            try:
                connector.disconnect_volume(data, device)
            except Exception:  # already closed: nothing left to release here
                pass
            self._terminate(volume_id, properties)
        return handle, disconnect

    @contextlib.contextmanager
    def opened(self, volume_id, what):
        """The volume's data as a file-like object inside the block; a failure of its back end is a StoreError
        (``what``: 'read of', 'repair of')."""
        handle, disconnect = self.connect(volume_id)
        try:
            yield handle
        except StoreError:
            raise
        except Exception as exc:  # os-brick's wrappers raise their back end's errors
            raise StoreError("store '%s': %s volume %s failed: %s" % (self.store_name, what, volume_id, exc))
        finally:
            close(handle, disconnect)

    def _terminate(self, volume_id, properties):
        try:
            self.client().volumes.terminate_connection(volume_id, properties)
        except (cinder_errors.ClientException, auth_errors.ClientException, socket.error):
            pass  # a connection Cinder no longer knows: nothing to undo
