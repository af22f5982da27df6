# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""This host's interface addresses, and a store network (10.2.0.0/24) resolved to this host's address in it.

The addresses are read from the kernel over rtnetlink with the standard library only: no ``ip`` binary,
no Ansible facts, and every address counts (IPv6, and IPv4 addresses added without a label, which the
older ``SIOCGIFCONF`` ioctl shows under the interface's first label).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import collections
import ipaddress
import socket
import struct

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument

NLMSG_HEADER = struct.Struct('=IHHII')  # length, type, flags, sequence, port id
IFADDRMSG = struct.Struct('=BBBBI')  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct('=HH')  # length, type
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWADDR = 20
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
# 0x01 is "secondary" for IPv4 and "temporary" (privacy) for IPv6: either way not the address to give out.
IFA_F_SECONDARY = 0x01
IFA_F_DADFAILED = 0x08
IFA_F_DEPRECATED = 0x20

HostAddress = collections.namedtuple('HostAddress', 'interface ifname preferred')


class AddressesUnavailable(InvalidArgument):
    """This host's addresses cannot be read (no rtnetlink: not Linux, or a sandbox that forbids it)."""


def _align(length):
    return (length + 3) & ~3


def _parse_address(data, offset, length):
    family, prefixlen, flags, _scope, index = IFADDRMSG.unpack_from(data, offset)
    attributes = {}
    position = offset + IFADDRMSG.size
    while position + RTATTR.size <= offset + length:
        attr_length, attr_type = RTATTR.unpack_from(data, position)
        if attr_length < RTATTR.size:
            break
        attributes[attr_type] = data[position + RTATTR.size:position + attr_length]
        position += _align(attr_length)
    if IFA_FLAGS in attributes:
        flags = struct.unpack('=I', attributes[IFA_FLAGS][:4])[0]  # the full 32 bits; ifa_flags holds only 8
    # IFA_LOCAL is this host's end of a point-to-point link, where IFA_ADDRESS is the peer's.
    raw = attributes.get(IFA_LOCAL) or attributes.get(IFA_ADDRESS)
    if family not in (socket.AF_INET, socket.AF_INET6) or not raw or flags & IFA_F_DADFAILED:
        return None
    try:
        ifname = socket.if_indextoname(index)
    except OSError:
        ifname = 'ifindex %d' % index
    interface = ipaddress.ip_interface('%s/%d' % (ipaddress.ip_address(bytes(raw)), prefixlen))
    return HostAddress(interface, ifname, not flags & (IFA_F_SECONDARY | IFA_F_DEPRECATED))


def host_addresses():
    """Every address of this host (its network namespace), as HostAddress tuples, in the kernel's order."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (AttributeError, OSError) as exc:
        raise AddressesUnavailable('cannot read the addresses of this host (%s)' % exc)
    addresses = []
    try:
        sock.bind((0, 0))
        body = IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + body)
        while True:
            data = sock.recv(1 << 16)
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, kind, _flags, _sequence, _port = NLMSG_HEADER.unpack_from(data, offset)
                if kind == NLMSG_DONE:
                    return addresses
                if kind == NLMSG_ERROR:
                    code = struct.unpack_from('=i', data, offset + NLMSG_HEADER.size)[0]
                    raise OSError(-code, 'rtnetlink refused the address dump')
                if kind == RTM_NEWADDR:
                    address = _parse_address(data, offset + NLMSG_HEADER.size, length - NLMSG_HEADER.size)
                    if address is not None:
                        addresses.append(address)
                if length < NLMSG_HEADER.size:
                    break
                offset += _align(length)
            if not data:
                return addresses
    except OSError as exc:
        raise AddressesUnavailable('cannot read the addresses of this host (%s)' % exc)
    finally:
        sock.close()


def is_network(interface):
    """True for a network (10.2.0.0/24; a /32 or /128 too), False for a host's address in one (10.2.0.11/24)."""
    return interface.ip == interface.network.network_address


def addresses_in(network, addresses):
    """This host's addresses in ``network``, the preferred ones (primary, not temporary or deprecated) first."""
    found = [address for address in addresses if address.interface.version == network.version and address.interface.ip in network]
    return [address for address in found if address.preferred] + [address for address in found if not address.preferred]


def describe_addresses(addresses, version):
    return ', '.join('%s on %s' % (address.interface, address.ifname) for address in addresses
                     if address.interface.version == version) or 'none of IPv%d' % version


def resolve_network(value, what, addresses=None):
    """The address other hosts dial for a declared ``data_network``/``sync_network`` (already a valid CIDR).

    A host address (10.2.0.11/24) is that address, as given. A network (10.2.0.0/24) becomes this host's
    address in it, with the prefix configured on its interface; none, or several equally good ones, is an error.
    """
    declared = ipaddress.ip_interface(value)
    if not is_network(declared):
        return str(declared)
    addresses = host_addresses() if addresses is None else addresses
    found = addresses_in(declared.network, addresses)
    if not found:
        raise InvalidArgument("%s %s: this host has no address in it (its addresses: %s); configure one (store_host role: "
                              "multistore_networks) or give the store host's address, such as %s/%d"
                              % (what, declared.network, describe_addresses(addresses, declared.version),
                                 declared.network.network_address + 11 if declared.network.num_addresses > 12 else declared.ip,
                                 declared.network.prefixlen))
    best = [address for address in found if address.preferred == found[0].preferred]
    if len(set(address.interface.ip for address in best)) > 1:
        raise InvalidArgument("%s %s: this host has several addresses in it (%s): give the one other hosts should use, "
                              "such as %s" % (what, declared.network, ', '.join('%s on %s' % (a.interface, a.ifname) for a in best),
                                              best[0].interface))
    return str(found[0].interface)
