# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that validate store settings on the controller with the same rules as the modules.

``store_path`` and ``cidr`` call the engine's checks (plugins/module_utils/common/validation.py), so a
role can refuse a bad variable before it touches a host. Their documentation is in store_path.yml and
cidr.yml beside this file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_cidr, check_store_path


def _fail(what, exc):
    message = to_native(exc)
    raise AnsibleFilterError('%s: %s' % (what, message) if what else message)


def store_path(path, what=None):
    """The normalized absolute path, or AnsibleFilterError for relative and system paths."""
    try:
        return check_store_path(path)
    except InvalidArgument as exc:
        _fail(what, exc)


def cidr(value, what=None, host_address=False):
    """The address in CIDR form (10.1.0.11/24), or AnsibleFilterError when it is not one.

    With host_address, also refuse a value that cannot be the address of one host: no prefix, or the
    network or broadcast address of its network (10.1.0.0/24, 10.1.0.255/24).
    """
    what = what or 'address'
    try:
        normalized = check_cidr(value, what)
    except InvalidArgument as exc:
        _fail(None, exc)
    if host_address:
        interface = ipaddress.ip_interface(normalized)
        network = interface.network
        if '/' not in str(value):
            raise AnsibleFilterError("%s %r has no prefix: write this host's address with its prefix, like 10.1.0.11/24"
                                     % (what, value))
        reserved = (network.network_address, network.broadcast_address) if interface.version == 4 else (network.network_address,)
        if network.num_addresses > 2 and interface.ip in reserved:
            raise AnsibleFilterError("%s %r is the %s address of %s, not a host address: write this host's address in "
                                     "that network, like %s/%d"
                                     % (what, value, 'network' if interface.ip == network.network_address else 'broadcast',
                                        network, network.network_address + 11, network.prefixlen))
    return normalized


class FilterModule(object):
    """vmimages.multistore filters."""

    def filters(self):
        return {
            'store_path': store_path,
            'cidr': cidr,
        }
