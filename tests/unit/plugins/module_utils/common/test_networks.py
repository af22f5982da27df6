# -*- coding: utf-8 -*-
"""data_network / sync_network given as a network: resolved to this host's address in it (rtnetlink), recorded with the network."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress
import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.fs import read_json
from ansible_collections.vmimages.multistore.plugins.module_utils.common.networks import HostAddress, host_addresses, resolve_network
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe


def fake(*specs):
    """HostAddress tuples from 'address/prefix interface [secondary]' strings."""
    return [HostAddress(ipaddress.ip_interface(spec.split()[0]), spec.split()[1], 'secondary' not in spec) for spec in specs]


def test_this_hosts_addresses_include_loopback():
    addresses = host_addresses()
    assert HostAddress(ipaddress.ip_interface('127.0.0.1/8'), 'lo', True) in addresses


def test_a_network_resolves_to_this_hosts_address_in_it():
    assert resolve_network('127.0.0.0/8', 'sync_network') == '127.0.0.1/8'


def test_ipv6_loopback_resolves():
    if not any(address.interface.ip == ipaddress.ip_address('::1') for address in host_addresses()):
        pytest.skip('IPv6 is off on this machine')
    assert resolve_network('::1/128', 'data_network') == '::1/128'


def test_a_host_address_is_kept_as_given_without_reading_the_host():
    assert resolve_network('10.2.0.11/24', 'sync_network', addresses=[]) == '10.2.0.11/24'
    assert resolve_network('fd00:2::11/64', 'sync_network', addresses=[]) == 'fd00:2::11/64'


def test_no_address_in_the_network_says_what_to_do():
    addresses = fake('127.0.0.1/8 lo', '10.201.0.12/24 eth0', 'fd00::2/64 eth0')
    with pytest.raises(InvalidArgument) as caught:
        resolve_network('10.2.0.0/24', 'sync_network', addresses)
    assert str(caught.value) == ("sync_network 10.2.0.0/24: this host has no address in it (its addresses: 127.0.0.1/8 on lo, "
                                 "10.201.0.12/24 on eth0); configure one (store_host role: multistore_networks) or give the store "
                                 "host's address, such as 10.2.0.11/24")
    with pytest.raises(InvalidArgument, match=r'fd00:2::/64: this host has no address in it \(its addresses: fd00::2/64 on eth0\)'):
        resolve_network('fd00:2::/64', 'sync_network', addresses)


def test_the_primary_address_wins_and_two_equal_ones_are_refused():
    addresses = fake('10.2.0.12/24 eth2 secondary', '10.2.0.11/24 eth2')
    assert resolve_network('10.2.0.0/24', 'sync_network', addresses) == '10.2.0.11/24'
    # the prefix recorded is the one configured on the interface, not the declared network's
    assert resolve_network('10.2.0.0/16', 'sync_network', fake('10.2.0.11/24 eth2')) == '10.2.0.11/24'
    with pytest.raises(InvalidArgument, match=r'several addresses in it \(10.2.0.11/24 on eth2, 10.2.0.21/24 on eth3\): give the one'):
        resolve_network('10.2.0.0/24', 'sync_network', fake('10.2.0.11/24 eth2', '10.2.0.21/24 eth3'))


def test_a_declared_network_is_recorded_with_the_resolved_address(registry, tmp_path):
    path = str(tmp_path / 'central')
    params = {'name': 'central', 'path': path, 'sync_network': '127.0.0.0/8', 'data_network': '10.1.0.11/24'}
    check = StoreDeclaration(registry, params)
    assert check.present(check_mode=True) is True
    assert check.after['sync_network'] == '127.0.0.0/8' and check.after['sync_address'] == '127.0.0.1/8'  # check and diff mode
    assert not os.path.exists(path)
    assert StoreDeclaration(registry, params).present(check_mode=False) is True
    identity = read_json(os.path.join(path, 'multistore.json'))
    assert identity['sync_network'] == '127.0.0.0/8' and identity['sync_address'] == '127.0.0.1/8'
    # an address is its own address: the identity keeps it as declared, with nothing added
    assert identity['data_network'] == '10.1.0.11/24' and 'data_address' not in identity
    again = StoreDeclaration(registry, params)
    assert again.present(check_mode=False) is False and again.before == again.after
    info = describe(registry.open('central'))
    assert (info['sync_network'], info['sync_address'], info['data_network'], info['data_address']) == \
        ('127.0.0.0/8', '127.0.0.1/8', '10.1.0.11/24', '10.1.0.11/24')
    # declared as an address afterwards: the resolved one goes
    assert StoreDeclaration(registry, dict(params, sync_network='127.0.0.1/8')).present(check_mode=False) is True
    assert 'sync_address' not in read_json(os.path.join(path, 'multistore.json'))


def test_a_network_without_an_address_here_declares_nothing(registry, tmp_path):
    path = str(tmp_path / 'edge')
    with pytest.raises(InvalidArgument, match=r"^store 'edge': sync_network 10.254.77.0/24: this host has no address in it"):
        StoreDeclaration(registry, {'name': 'edge', 'path': path, 'sync_network': '10.254.77.0/24'}).present(check_mode=True)
    with pytest.raises(InvalidArgument, match='multistore_networks'):
        StoreDeclaration(registry, {'name': 'edge', 'path': path, 'sync_network': '10.254.77.0/24'}).present(check_mode=False)
    assert registry.names() == [] and not os.path.exists(path)


# Runs inside a fresh network namespace with a veth pair: a host with real data/sync-like interfaces.
IN_NAMESPACE = r'''
import json, sys
from ansible_collections.vmimages.multistore.plugins.module_utils.common.networks import resolve_network
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.registry import Registry
registry = Registry(sys.argv[1] + '/registry')
params = {'name': 'edge1', 'path': sys.argv[1] + '/edge1', 'sync_network': '10.77.0.0/24', 'data_network': 'fd00:77::/64'}
first = StoreDeclaration(registry, params).present(False)
second = StoreDeclaration(registry, params)
print(json.dumps({'v4': resolve_network('10.77.0.0/24', 'sync_network'), 'v6': resolve_network('fd00:77::/64', 'data_network'),
                  'first': first, 'second': second.present(False), 'after': second.after}))
'''


def test_resolution_on_an_interface_in_a_network_namespace(tmp_path):
    if os.geteuid() != 0 or not shutil.which('unshare') or not shutil.which('ip'):
        pytest.skip('needs root, unshare and ip (a network namespace of its own)')
    setup = ('ip link add ms-sync type veth peer name ms-peer && ip link set ms-sync up && ip link set ms-peer up && '
             'ip addr add 10.77.0.11/24 dev ms-sync && ip addr add 10.77.0.12/24 dev ms-sync && '
             'ip addr add fd00:77::11/64 dev ms-sync nodad && exec "$0" "$@"')
    # The namespace lives as long as this process: nothing is left on the machine afterwards.
    run = subprocess.run(['unshare', '--net', 'sh', '-c', setup, sys.executable, '-c', IN_NAMESPACE, str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path)))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result['v4'] == '10.77.0.11/24'  # the primary address, not the secondary .12
    assert result['v6'] == 'fd00:77::11/64'
    assert result['first'] is True and result['second'] is False
    assert result['after']['sync_address'] == '10.77.0.11/24' and result['after']['data_address'] == 'fd00:77::11/64'
    assert result['after']['sync_network'] == '10.77.0.0/24'
