# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The stores declared on a host.

The registry is a directory with one small JSON file per store name: how to reach the store (type,
path, ...). What the store *is* (id, zone, enabled, quota) lives in the store's own identity record,
so a store found again at the same path keeps its id and its images.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.known import BACKENDS
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import atomic_write_json, makedirs, read_json, remove_file
from ansible_collections.vmimages.multistore.plugins.module_utils.common.registry_path import declared_names, default_registry
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_store_name


class OpenStore:
    """A declared store with its identity read once."""

    def __init__(self, declaration):
        self.declaration = declaration
        self.name = declaration['name']
        if declaration.get('type') not in BACKENDS:
            raise StoreError("store '%s' is declared with type %r, which this version does not know (known: %s): declare it again"
                             % (self.name, declaration.get('type'), ', '.join(BACKENDS)))
        # The back end's declaration (backends/): its capabilities, place keys, secrets.
        self.kind = BACKENDS[declaration['type']]
        self.backend = self.kind.open(self.name, declaration)
        self.identity = self._read_identity()

    def _read_identity(self):
        try:
            return self.backend.read_identity()
        except StoreError as exc:
            if not (self.declaration.get('host') or self.backend.remote):
                raise
            self.unreachable = str(exc)  # a remote store that cannot be reached is disconnected, not an error
            return None

    unreachable = None

    def lost(self, reason):
        """The connection to this store broke during the run: from now on it reads as disconnected."""
        self.unreachable = reason
        self.identity = None

    @property
    def id(self):
        return self.identity['id'] if self.identity else None

    @property
    def enabled(self):
        return bool(self.identity and self.identity.get('enabled', True))

    @property
    def site_role(self):
        return (self.identity or {}).get('site_role')

    def status(self):
        if self.identity is None:
            return 'disconnected'
        if not self.enabled:
            return 'disabled'
        return self.backend.status()

    def ensure_readable(self):
        if self.unreachable:
            reason = self.unreachable
            prefix = "store '%s': " % self.name
            raise StoreError("store '%s' is disconnected: %s" % (self.name, reason[len(prefix):] if reason.startswith(prefix) else reason))
        if self.identity is None:
            raise StoreError("store '%s' is disconnected: no store identity in %s (%s)"
                             % (self.name, self.backend.where(), 'is the filesystem mounted?' if self.declaration['type'] == 'file'
                                else 'was the pool or bucket deleted?'))

    def ensure_writable(self):
        self.ensure_readable()
        if not self.enabled:
            raise StoreError("store '%s' is disabled: enable it with enabled: true before changing its images" % self.name)
        problem = self.backend.writable_problem()
        if problem:
            raise StoreError("store '%s' is not writable: %s" % (self.name, problem))

    def quota(self):
        quota = (self.identity or {}).get('quota') or {}
        return quota.get('bytes'), quota.get('images')


class Registry:
    def __init__(self, directory=None):
        self.directory = os.path.expanduser(directory) if directory else default_registry()

    def _path(self, name):
        return os.path.join(self.directory, '%s.json' % check_store_name(name))

    def names(self):
        return declared_names(self.directory)

    def declaration(self, name):
        try:
            return read_json(self._path(name))
        except ValueError as exc:
            raise StoreError("store declaration %s is corrupt (%s): declare the store again with vmimages.multistore.store"
                             % (self._path(name), exc))

    def declarations(self):
        return [d for d in (self.declaration(name) for name in self.names()) if d]

    def save(self, declaration):
        try:
            makedirs(self.directory, 0o700)
            atomic_write_json(self._path(declaration['name']), declaration, mode=0o600)
        except (IOError, OSError) as exc:
            raise StoreError("cannot write the store registry %s (%s): set registry: to a writable directory"
                             % (self.directory, exc.strerror or exc))

    def remove(self, name):
        return remove_file(self._path(name))

    def open(self, name):
        declaration = self.declaration(name)
        if declaration is None:
            known = ', '.join(self.names()) or 'none'
            raise StoreError("store '%s' is not declared on this host (registry %s; known: %s): declare it with "
                             "vmimages.multistore.store first" % (name, self.directory, known))
        return OpenStore(declaration)

    def open_all(self):
        return [OpenStore(declaration) for declaration in self.declarations()]
