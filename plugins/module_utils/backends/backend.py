# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a store back end declares about itself (after glance_store's drivers, which each own their options).

A back end is one module under ``backends/`` holding one ``BACKEND``: its type name, the options an operator
types (secrets marked), how they are validated into the declaration the registry keeps, which of them say where
the store lives (its place), the form of its locations, its capabilities, and how to open it. The ``store``
module's argument spec, the registry and the store_host role's argument_specs follow from that list
(``backends/known.py``); callers ask for a capability instead of knowing a type.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The back end holds raw images only: any other format is converted on import, a non-raw copy is refused.
RAW_ONLY = 'raw_only'
# ``state: cloned`` makes a copy-on-write clone inside the store (no data copied).
COW_CLONE = 'cow_clone'
# A copy between two stores of this back end on one cluster moves no data through this host.
SERVER_COPY = 'server_copy'
# Content-addressed slices shared between images: copies move only missing slices; verify and GC work by slice.
DEDUP_SLICES = 'dedup_slices'
# Slices can be cloned from files on the same filesystem instead of written (retrieve_existing).
REFLINK = 'reflink'
CAPABILITIES = (RAW_ONLY, COW_CLONE, SERVER_COPY, DEDUP_SLICES, REFLINK)


class Option:
    """One option an operator gives for a store of this back end (a key of the ``store`` module)."""

    def __init__(self, name, type='str', elements=None, default=None, choices=None, secret=False, remote_only=False, shown=True):
        self.name = name
        self.type = type
        self.elements = elements
        self.default = default
        self.choices = choices
        self.secret = secret
        # An option of a store on another host (SSH connection): not given for a store of the host itself.
        self.remote_only = remote_only
        # Shown by store_info (a secret never is; some identifiers, such as an access key, are not worth showing).
        self.shown = shown and not secret

    def argument(self):
        """This option in an Ansible argument spec."""
        spec = {'type': self.type, 'no_log': self.secret}
        for key in ('elements', 'default', 'choices'):
            if getattr(self, key) is not None:
                spec[key] = getattr(self, key)
        return spec

    def same_as(self, other):
        return self.argument() == other.argument()


class Backend:
    """A store back end as operators declare it."""

    def __init__(self, name, options, capabilities, place_keys, location_form, configure, open_store, shared=True,
                 packages=(), summary=None, needs=None):
        unknown = set(capabilities) - set(CAPABILITIES)
        if unknown:
            raise ValueError('back end %s: unknown capabilities %s' % (name, ', '.join(sorted(unknown))))
        self.name = name
        self.options = dict((option.name, option) for option in options)
        self.capabilities = frozenset(capabilities)
        # The options whose values say where the store lives: one place holds one store.
        self.place_keys = tuple(place_keys)
        # The form of the locations of its images (shown in docs; tests check real locations against it).
        self.location_form = location_form
        # configure(params) -> the declaration the registry keeps (validated; raises InvalidArgument).
        self._configure = configure
        # open_store(name, declaration) -> the Store (stores/base.py) serving that declaration.
        self._open_store = open_store
        # Shared back ends (pools, buckets, Cinder) keep their identity in the service: every host that declares
        # the same place finds the same store. A file store's identity is at its path.
        self.shared = shared
        # Debian packages the store host needs for a store of this type (the store_host role installs them).
        self.packages = tuple(packages)
        # For messages: the options this type takes.
        self.summary = summary or ', '.join(sorted(self.options))
        # The options of which a declaration needs one (alternatives), such as a pool or a bucket.
        self.needs = tuple(needs or ())

    def can(self, capability):
        return capability in self.capabilities

    def shown_keys(self):
        return tuple(name for name, option in sorted(self.options.items()) if option.shown)

    def secret_keys(self):
        return tuple(name for name, option in sorted(self.options.items()) if option.secret)

    def configure(self, params):
        return self._configure(params)

    def open(self, name, declaration):
        store = self._open_store(name, declaration)
        store.capabilities = self.capabilities_of(declaration)
        return store

    def capabilities_of(self, declaration):
        """A file store on another host cannot reflink from this host: capabilities may depend on the declaration."""
        if declaration.get('host'):
            return self.capabilities - frozenset((REFLINK,))
        return self.capabilities

    def place(self, declaration):
        return dict((key, declaration.get(key)) for key in self.place_keys)
