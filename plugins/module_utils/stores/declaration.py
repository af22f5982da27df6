# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declaring stores on a host (the logic of the ``store`` module) and describing them (``store_info``)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import uuid

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.known import BACKENDS, DEFAULT_TYPE, secret_keys
from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.networks import is_network, resolve_network
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_cidr, check_store_name, parse_size
from ansible_collections.vmimages.multistore.plugins.module_utils.slices.slice_list import LAYOUT, SLICE_HASH, SLICE_SIZE
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import OpenStore
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.ssh_channel import choose_address

IDENTITY_FORMAT = 'vmimages.multistore/store'
# The identity fields a declaration sets (the addresses are resolved from the networks); everything else is the store's own.
DECLARED_FIELDS = ('name', 'zone', 'description', 'site_role', 'quota', 'enabled', 'data_network', 'sync_network',
                   'data_address', 'sync_address')
NETWORKS = ('data', 'sync')
# Declaration keys that are secrets (the back ends mark them): kept in the registry file (mode 0600), never shown.
SECRET_KEYS = secret_keys()


def network_address(identity, kind):
    """The store host's address in its data or sync network (``kind``), the one other hosts dial, or None.

    Declared as a network, it is the address the store module resolved on the store host; declared as an
    address, the declared value itself (not repeated in the identity, which stays as it was before networks).
    """
    if identity.get(kind + '_address'):
        return identity[kind + '_address']
    declared = identity.get(kind + '_network')
    return declared if declared and not is_network(ipaddress.ip_interface(declared)) else None


def normalize_quota(quota):
    if not quota:
        return {'bytes': None, 'images': None}
    unknown = set(quota) - set(('bytes', 'images'))
    if unknown:
        raise InvalidArgument('quota takes bytes and images, not %s' % ', '.join(sorted(unknown)))
    size = quota.get('bytes')
    images = quota.get('images')
    if images is not None and (isinstance(images, bool) or not isinstance(images, int) or images < 0):
        raise InvalidArgument('quota.images %r must be a whole number of images, 0 or more' % (images,))
    return {'bytes': None if size is None else parse_size(size, 'quota.bytes'), 'images': images}


def _unreachable(name, reason):
    """The backend's reason already names the store (s3, swift, rbd): say it once."""
    return StoreError(reason if reason.startswith("store '%s'" % name) else "store '%s': %s" % (name, reason))


class StoreDeclaration:
    """Desired state of one store; computes the change, applies it unless in check mode."""

    def __init__(self, registry, params):
        self.registry = registry
        self.params = params
        self.name = check_store_name(params['name'])
        self.before = None
        self.after = None

    def _desired_identity(self, resolve):
        """The declared fields; with ``resolve`` (a file store on this host) a network becomes this host's address in it."""
        params = self.params
        desired = {
            'name': self.name,
            'zone': params.get('zone'),
            'description': params.get('description'),
            'site_role': params.get('site_role'),
            'quota': normalize_quota(params.get('quota')),
            'enabled': params.get('enabled', True),
        }
        for kind in NETWORKS:
            key = kind + '_network'
            declared = check_cidr(params[key], key) if params.get(key) else None
            desired[key] = declared
            desired[kind + '_address'] = None
            if declared and resolve and is_network(ipaddress.ip_interface(declared)):
                try:
                    desired[kind + '_address'] = resolve_network(declared, key)
                except InvalidArgument as exc:
                    raise InvalidArgument("store '%s': %s" % (self.name, exc))
        return desired

    def _check_path_not_taken(self, path, host):
        for declaration in self.registry.declarations():
            if declaration['name'] != self.name and declaration.get('path') == path and declaration.get('host') == host:
                raise InvalidArgument("path %s%s is already declared as store '%s': one path holds one store; use name: %s"
                                      % ('%s:' % host if host else '', path, declaration['name'], declaration['name']))

    def present(self, check_mode):
        store_type = self.params.get('type') or DEFAULT_TYPE
        if store_type not in BACKENDS:
            raise InvalidArgument("store type '%s' is not supported yet (supported: %s)" % (store_type, ', '.join(sorted(BACKENDS))))
        backend = BACKENDS[store_type]
        if backend.shared:
            return self._present_service(backend, check_mode)
        config = backend.configure(self.params)
        path = config.pop('path')
        connection = config  # how to reach a store on another host; empty for a local store
        # Resolved before anything is written; a store on another host has its networks resolved there.
        desired = None if connection else self._desired_identity(resolve=True)
        self._check_path_not_taken(path, connection.get('host'))
        old = self.registry.declaration(self.name)
        probe = OpenStore(dict(connection, name=self.name, type=store_type, path=path))
        if probe.unreachable:
            raise _unreachable(self.name, probe.unreachable)
        problem = probe.backend.check_root()
        if problem:
            raise StoreError("store '%s': %s" % (self.name, problem))
        if connection:
            return self._present_remote(probe, connection, old, check_mode)
        identity = probe.identity
        if identity is None and old and old.get('path') == path and old.get('id'):
            raise StoreError("store '%s' (id %s) was at %s but its identity record is gone: is the filesystem mounted? "
                             "Mount it, or remove the store with state: absent before declaring a new one there"
                             % (self.name, old['id'], path))
        if identity is not None and old and old.get('path') == path and old.get('id') not in (None, identity.get('id')):
            raise StoreError("the store at %s has id %s, not the id %s declared for '%s': another filesystem is mounted there"
                             % (path, identity.get('id'), old['id'], self.name))

        self.before = self._view(old, identity)
        return self._converge_identity(probe, store_type, desired, old, {'name': self.name, 'type': store_type, 'path': path},
                                       check_mode)

    def _converge_identity(self, probe, store_type, desired, old, declaration, check_mode):
        """Merge the declared fields into the store's identity (a new identity where there is none), then write
        the identity and the registry entry where they changed; return whether anything did."""
        identity = probe.identity
        if identity is None:
            now = utc_now()
            new_identity = {'format': IDENTITY_FORMAT, 'layout': LAYOUT, 'id': str(uuid.uuid4()), 'type': store_type,
                            'slice_hash': SLICE_HASH, 'slice_size': SLICE_SIZE, 'created_at': now, 'updated_at': now}
        else:
            if identity.get('format') != IDENTITY_FORMAT or identity.get('layout') != LAYOUT or identity.get('type') != store_type:
                raise StoreError("%s holds a store of format %r layout %r type %r that this declaration cannot use"
                                 % (probe.backend.where(), identity.get('format'), identity.get('layout'), identity.get('type')))
            new_identity = dict(identity)
        new_identity.update(desired)
        for kind in NETWORKS:
            if new_identity.get(kind + '_address') is None:
                new_identity.pop(kind + '_address', None)  # declared as an address, or not at all: nothing resolved to keep
        identity_changed = identity is None or any(identity.get(key) != new_identity.get(key) for key in DECLARED_FIELDS)
        if identity_changed and identity is not None:
            new_identity['updated_at'] = utc_now()
        new_declaration = dict(declaration, id=new_identity['id'])
        declaration_changed = old != new_declaration
        self.after = self._view(new_declaration, new_identity)
        if not check_mode:
            if identity_changed:
                probe.backend.write_identity(new_identity)
            # a store made before the name index: index it once (not a change an operator sees)
            probe.backend.index_names()
            if any(value is not None for value in (new_identity.get('quota') or {}).values()):
                probe.backend.start_usage_ledger()  # quota checks read it instead of walking the slices
            if declaration_changed:
                self.registry.save(new_declaration)
        return identity_changed or declaration_changed

    def _service_config(self, backend):
        """How to reach a pool, a bucket or a Cinder, validated by its back end; what the registry keeps for it."""
        params = self.params
        if params.get('path') or params.get('host'):
            raise InvalidArgument('path and host are file store options; a %s store takes %s' % (backend.name, backend.summary))
        if backend.needs and not any(params.get(key) for key in backend.needs):
            raise InvalidArgument('a %s store needs %s:' % (backend.name, ' or '.join(backend.needs)))
        return backend.configure(params)

    def _present_service(self, backend, check_mode):
        """A shared store (an rbd pool, an s3/swift bucket, a Cinder): every host that declares it finds it; the identity lives in it."""
        store_type = backend.name
        config = dict(self._service_config(backend), name=self.name, type=store_type)
        place = backend.place(config)
        for declaration in self.registry.declarations():
            if declaration['name'] != self.name and declaration.get('type') == store_type and backend.place(declaration) == place:
                raise InvalidArgument("that %s place is already declared as store '%s': one place holds one store; use name: %s"
                                      % (store_type, declaration['name'], declaration['name']))
        # Many hosts share a pool or bucket: its networks are recorded as declared, never resolved on one of them.
        desired = self._desired_identity(resolve=False)
        old = self.registry.declaration(self.name)
        probe = OpenStore(config)
        if probe.unreachable:
            raise _unreachable(self.name, probe.unreachable)
        identity = probe.identity
        same_place = old and backend.place(old) == place
        if identity is None and same_place and old.get('id'):
            raise StoreError("store '%s' (id %s) was in %s but its identity record is gone: remove the store with state: absent "
                             "before declaring a new one there" % (self.name, old['id'], probe.backend.where()))
        self.before = self._view(old, identity if old else None)
        return self._converge_identity(probe, store_type, desired, old, config, check_mode)

    def _present_remote(self, probe, connection, old, check_mode):
        """A store on another host is declared there; here it is only registered, its identity is read, not written."""
        identity = probe.identity
        if identity is None:
            raise StoreError("there is no store at %s:%s: declare it on its own host first (vmimages.multistore.store "
                             "run there), then register it here" % (connection['host'], probe.declaration['path']))
        # A network without a resolved address (an identity written before networks were resolved) is kept as it is:
        # choose_address then says why it does not dial it.
        new_declaration = dict(connection, name=self.name, type=probe.declaration['type'], path=probe.declaration['path'],
                               id=identity['id'], data_address=network_address(identity, 'data') or identity.get('data_network'),
                               sync_address=network_address(identity, 'sync') or identity.get('sync_network'))
        self.before = self._view(old, identity if old else None)
        self.after = self._view(new_declaration, identity)
        changed = old != new_declaration
        if changed and not check_mode:
            self.registry.save(new_declaration)
        return changed

    def absent(self, check_mode):
        old = self.registry.declaration(self.name)
        self.before = self._view(old, None) if old else {}
        self.after = {}
        if old and not check_mode:
            self.registry.remove(self.name)
        return old is not None

    @staticmethod
    def _view(declaration, identity):
        if not declaration and not identity:
            return {}
        view = dict((key, (identity or {}).get(key)) for key in DECLARED_FIELDS)
        for kind in NETWORKS:
            view[kind + '_address'] = network_address(identity or {}, kind)
        view.update(declaration or {})
        for key in SECRET_KEYS:
            if key in view:
                view[key] = '********'
        if identity:
            view['id'] = identity.get('id')
        return view


def describe(store, with_stats=True):
    """What store_info and store report about one open store."""
    identity = store.identity or {}
    info = {
        'name': store.name,
        'type': store.declaration['type'],
        'path': store.declaration.get('path'),
        'host': store.declaration.get('host'),
        'location': store.backend.where(),
        'id': identity.get('id'),
        'zone': identity.get('zone'),
        'description': identity.get('description'),
        'site_role': identity.get('site_role'),
        'enabled': store.enabled if store.identity is not None else None,
        'quota': identity.get('quota') or {'bytes': None, 'images': None},
        'data_network': identity.get('data_network'),
        'sync_network': identity.get('sync_network'),
        'data_address': network_address(identity, 'data'),
        'sync_address': network_address(identity, 'sync'),
        'status': store.status(),
        'error': store.unreachable,
        'last_check': utc_now(),
    }
    if store.declaration.get('host'):
        # Which of the store host's addresses this host dials, and why a declared sync or data address is not used.
        info['address'], info['address_note'] = choose_address(store.declaration)
    for key in store.kind.shown_keys():
        if store.declaration.get(key) is not None:
            info[key] = store.declaration[key]
    if with_stats and store.identity is not None:
        try:
            info.update(store.backend.stats())
        except (OSError, StoreError) as exc:
            info['status'] = 'disconnected'
            info['error'] = str(exc)
    return info
