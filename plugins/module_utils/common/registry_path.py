# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a host keeps its store registry by default.

Apart from stores/registry.py because the store agent needs it too, and the agent carries none of the
back ends that the registry imports.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

SYSTEM_REGISTRY = '/var/lib/vmimages-multistore/stores'
USER_REGISTRY = '~/.local/share/vmimages-multistore/stores'
# Set by the installed store agent's command when the store_host role was given multistore_registry: the agent
# then finds the stores this host declared (stores/pull.py) where the modules put them.
REGISTRY_VARIABLE = 'VMIMAGES_MULTISTORE_REGISTRY'


def declared_names(directory):
    """The store names declared in a registry directory (one NAME.json each), sorted; none when it is missing."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(entry[:-5] for entry in entries if entry.endswith('.json') and not entry.startswith('.'))


def default_registry():
    if os.environ.get(REGISTRY_VARIABLE):
        return os.path.expanduser(os.environ[REGISTRY_VARIABLE])
    return SYSTEM_REGISTRY if os.geteuid() == 0 else os.path.expanduser(USER_REGISTRY)
