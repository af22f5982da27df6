# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The back ends this collection knows, and what follows from their declarations.

Adding a back end is one module under ``backends/`` with a ``BACKEND`` and one line here; the ``store`` module's
options, the registry and the checks of the store_host role's argument_specs (tests) follow from this list.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections import OrderedDict

from ansible_collections.vmimages.multistore.plugins.module_utils.backends import cinder, file, rbd, s3, swift

BACKENDS = OrderedDict((module.BACKEND.name, module.BACKEND) for module in (file, rbd, s3, swift, cinder))
DEFAULT_TYPE = 'file'

# The store module's options that are not a back end's: what every store has (its identity) and what the module does.
COMMON_OPTIONS = {
    'name': dict(type='str', required=True),
    'type': dict(type='str', default=DEFAULT_TYPE, choices=list(BACKENDS)),
    'zone': dict(type='str'),
    'description': dict(type='str'),
    'site_role': dict(type='str', choices=['central', 'edge']),
    'data_network': dict(type='str'),
    'sync_network': dict(type='str'),
    'quota': dict(type='dict', options=dict(bytes=dict(type='raw'), images=dict(type='int'))),
    'enabled': dict(type='bool', default=True),
    'retrieve_existing': dict(type='bool', default=False),
    'state': dict(type='str', default='present', choices=['present', 'absent']),
}


def backend_options():
    """{option name: Option} over every back end; an option several back ends take must mean the same to all."""
    options = OrderedDict()
    for backend in BACKENDS.values():
        for name, option in sorted(backend.options.items()):
            if name in COMMON_OPTIONS:
                raise ValueError('back end %s declares %s, a common store option' % (backend.name, name))
            if name in options and not options[name].same_as(option):
                raise ValueError('back ends disagree on option %s: %r and %r' % (name, options[name].argument(), option.argument()))
            options.setdefault(name, option)
    return options


def store_argument_spec():
    """The ``store`` module's argument spec: the common options, then every back end's."""
    spec = dict((name, dict(value)) for name, value in COMMON_OPTIONS.items())
    for name, option in backend_options().items():
        spec[name] = option.argument()
    return spec


def secret_keys():
    """Declaration keys that are secrets: kept in the registry file (mode 0600), never shown."""
    return tuple(sorted(set(key for backend in BACKENDS.values() for key in backend.secret_keys())))


def backend(type_name):
    return BACKENDS[type_name]


__all__ = ['BACKENDS', 'DEFAULT_TYPE', 'COMMON_OPTIONS', 'backend', 'backend_options', 'secret_keys', 'store_argument_spec']
