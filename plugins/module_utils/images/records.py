# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image records (Glance's fields) and how the copies of one image across stores add up to one view."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.common.clock import utc_now
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.base import COMPLETE_STATUSES

# Fields an operator may change on an existing image without touching its data.
MUTABLE_FIELDS = ('visibility', 'protected', 'min_disk', 'min_ram', 'tags', 'properties', 'image_type', 'persistent', 'bus', 'driver')
DEFAULTS = {'visibility': 'shared', 'protected': False, 'min_disk': 0, 'min_ram': 0, 'tags': [], 'properties': {},
            'persistent': False}


def new_record(image_id, name, disk_format, container_format, metadata, size, virtual_size, digests, status, learned=None):
    """A record; ``learned`` are the properties the engine found (introspection, signature), shown under the operator's."""
    now = utc_now()
    record = {
        'id': image_id, 'name': name, 'disk_format': disk_format, 'container_format': container_format,
        'size': size, 'virtual_size': virtual_size, 'checksum': digests.get('md5'),
        'os_hash_algo': 'sha512', 'os_hash_value': digests.get('sha512'), 'status': status,
        'created_at': now, 'updated_at': now,
        # digests beyond Glance's two, kept so a later run can compare a declared sha256 without re-reading data
        'extra_digests': dict((k, v) for k, v in digests.items() if k not in ('md5', 'sha512')),
        'learned_properties': dict(learned or {}),
    }
    for field in MUTABLE_FIELDS:
        value = metadata.get(field)
        record[field] = DEFAULTS.get(field) if value is None else value
    if record['image_type'] is None:
        record['image_type'] = 'cdrom' if disk_format == 'iso' else 'os'
    return record


def digest_of(record, algorithm):
    if algorithm == 'md5':
        return record.get('checksum')
    if algorithm == record.get('os_hash_algo'):
        return record.get('os_hash_value')
    return (record.get('extra_digests') or {}).get(algorithm)


def lock_is_live(store, image_id):
    """True when a run holds the image lock in this store now (used to tell importing from interrupted)."""
    return store.backend.image_lock(image_id).busy()


def shown_properties(record):
    """Glance's ``properties``: what the engine learned, then the operator's (which win), then hw_disk_bus from bus."""
    properties = dict(record.get('learned_properties') or {})
    properties.update(record.get('properties') or {})
    if record.get('bus') and 'hw_disk_bus' not in (record.get('properties') or {}):
        properties['hw_disk_bus'] = record['bus']
    return properties


def store_state(store, image_id, record):
    """active | deactivated | importing | failed for one store's copy."""
    status = record.get('status')
    if status in COMPLETE_STATUSES:
        return status
    if status == 'importing' and lock_is_live(store, image_id):
        return 'importing'
    return 'failed'


class ImageView:
    """One image id and its copies: {store name: record}."""

    def __init__(self, image_id, copies, stores):
        self.id = image_id
        self.copies = copies
        self.stores = stores

    def states(self):
        return dict((name, store_state(self.stores[name], self.id, record)) for name, record in self.copies.items())

    def active_stores(self):
        return sorted(name for name, state in self.states().items() if state == 'active')

    def held_stores(self):
        """Stores with a complete copy, active or deactivated."""
        return sorted(name for name, state in self.states().items() if state in COMPLETE_STATUSES)

    def deactivated_stores(self):
        return sorted(name for name, state in self.states().items() if state == 'deactivated')

    def reference(self):
        """The record that speaks for the image: a complete copy's, else any."""
        states = self.states()
        for name in sorted(self.copies):
            if states[name] in COMPLETE_STATUSES:
                return self.copies[name]
        return self.copies[sorted(self.copies)[0]]

    def describe(self, progress=None):
        states = self.states()
        info = dict(self.reference())
        held = self.held_stores()
        importing = sorted(name for name, state in states.items() if state == 'importing')
        failed = sorted(name for name, state in states.items() if state == 'failed')
        if held:
            info['status'] = 'active' if self.active_stores() else 'deactivated'
        else:
            info['status'] = 'importing' if importing else 'killed'
        info['enabled'] = info['status'] != 'deactivated'
        info['stores'] = held
        info['importing_to_stores'] = importing
        info['failed_import'] = failed
        info['properties'] = shown_properties(info)
        info['locations'] = [{'url': self.stores[name].backend.location(self.id),
                              'metadata': {'store': name, 'store_id': self.stores[name].id,
                                           'zone': (self.stores[name].identity or {}).get('zone'),
                                           'site_role': self.stores[name].site_role}}
                             for name in held]
        if importing and progress is not None:
            info['progress'] = progress
        # marked by store_cleanup's repair when a slice could be restored from no other store
        info['damaged_in_stores'] = sorted(name for name in held if self.copies[name].get('damaged'))
        for internal in ('extra_digests', 'learned_properties', 'damaged'):
            info.pop(internal, None)
        return info
