#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: image_info
short_description: Report the VM images held by the stores of the managed host
version_added: 0.1.0
description:
  - Lists images with their Glance fields, the stores that hold them (C(stores), C(locations)), the stores still
    importing them (C(importing_to_stores)) and the stores where an import failed or was interrupted (C(failed_import)).
  - Locations are discovered by reading every store, so they are always current.
author: vmimages.multistore contributors (@vmimages)
extends_documentation_fragment:
  - vmimages.multistore.registry
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
  platform:
    platforms: posix
options:
  id:
    description: Only the image with this id.
    type: str
  name:
    description: Only images with this name.
    type: str
  tags:
    description: Only images carrying every one of these tags.
    type: list
    elements: str
  store:
    description: Only images active in this store (an unknown store fails).
    type: str
'''

EXAMPLES = r'''
- name: Where is ubuntu-24.04?
  vmimages.multistore.image_info:
    name: ubuntu-24.04
  register: found

- name: Show its locations
  ansible.builtin.debug:
    msg: "{{ found.images[0].locations | map(attribute='url') | list }}"

- name: Every image of the edge store dcn0
  vmimages.multistore.image_info:
    store: dcn0
'''

RETURN = r'''
images:
  description: Matching images, sorted by name then id.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Image id (UUID).
      type: str
    name:
      description: Image name.
      type: str
    status:
      description:
        - C(active) when at least one store holds it, C(deactivated) when it was deactivated (C(enabled=false)),
          C(importing) while a run imports it, C(killed) when every import failed.
      type: str
    enabled:
      description: False for a deactivated image.
      type: bool
    progress:
      description:
        - While a run on this host imports or copies the image (C(importing_to_stores) not empty), how far it got,
          refreshed at least every second; absent otherwise. I(stores_done)/I(stores_left) count the target stores,
          I(bytes_done)/I(bytes_total) the bytes read from the source (import) or the slices sent (copy; only what the
          targets lack), I(rate) bytes per second so far, I(eta) seconds left (null when the total is unknown).
        - I(message) says what the transfer went through, in words (null when nothing happened), for example
          that a download resumed from a byte (and after what cut) or why an http(s) download started over.
      type: dict
      returned: while an import or copy runs
    persistent:
      description: HyperCX persistent flag.
      type: bool
    bus:
      description: Disk bus (also in I(properties) as C(hw_disk_bus)).
      type: str
    driver:
      description: HyperCX mapping driver (equals C(disk_format)).
      type: str
    datablock:
      description: For an empty datablock made by M(vmimages.multistore.image), its C(size), C(filesystem) and C(disk_format).
      type: dict
      returned: for empty datablocks
    disk_format:
      description: Disk format (detected from the bytes and checked against the declared one).
      type: str
    container_format:
      description: Container format.
      type: str
    size:
      description: Bytes of the image as imported.
      type: int
    virtual_size:
      description: Size of the virtual disk in bytes, from the format's header.
      type: int
    checksum:
      description: md5 of the image data (Glance's legacy checksum).
      type: str
    os_hash_algo:
      description: Always C(sha512).
      type: str
    os_hash_value:
      description: sha512 of the image data.
      type: str
    stores:
      description: Stores where the image is active.
      type: list
      elements: str
    importing_to_stores:
      description: Stores a run is importing the image into now.
      type: list
      elements: str
    failed_import:
      description: Stores where an import failed or was interrupted; the next C(image) run retries them.
      type: list
      elements: str
    damaged_in_stores:
      description:
        - Stores whose copy of the image is damaged - M(vmimages.multistore.store_cleanup) with I(verify) and I(repair)
          found a slice there that no other store could restore. Delete the image from that store and copy it there
          again; the next repair that finds the copy whole clears the mark.
      type: list
      elements: str
    locations:
      description: C(url) (C(file://) for file stores) and C(metadata) (store, store_id, zone, site_role) per active copy.
      type: list
      elements: dict
    image_type:
      description: C(os), C(cdrom) or C(datablock).
      type: str
    visibility:
      description: Glance visibility.
      type: str
    protected:
      description: Whether deletion is refused.
      type: bool
    min_disk:
      description: Minimum disk in GiB.
      type: int
    min_ram:
      description: Minimum RAM in MiB.
      type: int
    tags:
      description: Tags.
      type: list
      elements: str
    properties:
      description:
        - Properties - what the format inspector learned (Glance names such as C(vmware_disktype), C(vmware_adaptertype); C(qcow2_version),
          C(qcow2_compat), C(qcow2_cluster_size), C(qcow2_encrypted)...), the C(img_signature*) properties of a signed image and
          C(hw_disk_bus) from I(bus), with the operator's I(properties) over them.
      type: dict
    created_at:
      description: Creation time (UTC).
      type: str
    updated_at:
      description: Last change of the record (UTC).
      type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_image_id
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog


def main():
    argument_spec = dict(
        id=dict(type='str'),
        name=dict(type='str'),
        tags=dict(type='list', elements='str'),
        store=dict(type='str'),
    )
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def work():
        params = module.params
        catalog = Catalog(open_registry(module))
        stores = None
        if params['store']:
            catalog.store(params['store'])
            stores = [params['store']]
        if params['id']:
            view = catalog.find(image_id=check_image_id(params['id']))
            views = [view] if view else []
        elif params['name']:
            views = catalog.named(params['name'], stores)
        else:
            views = list(catalog.images(stores).values())
        images = []
        for view in views:
            if stores is not None:
                view = catalog.find(image_id=view.id)
            info = view.describe(progress=catalog.progress(view.id))
            if params['name'] and info.get('name') != params['name']:
                continue
            if params['tags'] and not set(params['tags']) <= set(info.get('tags') or []):
                continue
            if params['store'] and params['store'] not in info['stores']:
                continue
            images.append(info)
        images.sort(key=lambda info: (info.get('name') or '', info['id']))
        return {'changed': False, 'images': images}

    run(module, work)


if __name__ == '__main__':
    main()
