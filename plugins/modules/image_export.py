#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: image_export
short_description: Write a VM image from a store to a file on the managed host
version_added: 0.1.0
description:
  - Materializes an image held by a store into a file for a hypervisor.
  - The file is sparse, with holes where the image has zero slices. Every slice is checked against its sha256
    and the whole image against its sha512 while it is written. The file appears under its name only when complete.
  - With I(format=original), the file is byte-identical to what was imported. C(raw) and C(qcow2) convert with
    C(qemu-img convert) and an explicit source format.
  - A file exported earlier and not modified since is left alone, with no data read. An extended attribute
    stamps the image id, digest, size and mtime. On filesystems without user xattrs, every run exports again.
  - From a local file store to a I(dest) on the same xfs (made with C(reflink=1)) or btrfs filesystem, the image's slices
    are cloned into the file (reflink, copy-on-write) instead of copied. No data is read or written, a 10 GiB image
    materializes in well under a second and takes no new space until either side is modified. Zero slices stay holes.
    Elsewhere the bytes are copied as described above. RV(export.method) says which.
  - A clone is verified without reading the data. The slice files were checked against their sha256 when they were written
    and the clone shares their blocks, so each slice file must have its expected size and each clone call must succeed.
    Set I(verify=true) to also read the cloned file back and compare it with the image's sha512.
author: vmimages.multistore contributors (@vmimages)
extends_documentation_fragment:
  - vmimages.multistore.registry
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  name:
    description: Name of the image (must be unambiguous, else give I(id)).
    type: str
  id:
    description: Id of the image.
    type: str
  store:
    description: Store to read the image from; it must hold an active copy.
    type: str
    required: true
  dest:
    description:
      - Absolute path of the file to write; its directory must exist. Paths in C(/dev), C(/proc) and C(/sys) (the directory's
        symlinks resolved) are refused, and so is an existing I(dest) that is a directory, device, socket or fifo.
      - A symlink at I(dest) is never followed. The export replaces the link itself with the file, in one atomic rename, and
        its target is neither written nor changed by I(mode); RV(export.replaced_symlink) and a warning say where it pointed.
    type: path
    required: true
  format:
    description: C(original) keeps the bytes as imported; C(raw) or C(qcow2) convert with qemu-img.
    type: str
    choices: [original, raw, qcow2]
    default: original
  mode:
    description: Permissions of the file, in octal (C('0644')).
    type: raw
  verify:
    description:
      - When the file was cloned (reflink), read it back and check it against the image's sha512 (the time of a read of the
        whole image). A copied file is always verified while it is written.
    type: bool
    default: false
'''

EXAMPLES = r'''
- name: Give the hypervisor a local copy of the image
  vmimages.multistore.image_export:
    name: ubuntu-24.04
    store: central
    dest: /var/lib/libvirt/images/ubuntu-24.04.qcow2

- name: Export as raw for a host that boots raw disks
  vmimages.multistore.image_export:
    name: ubuntu-24.04
    store: central
    dest: /var/lib/libvirt/images/ubuntu-24.04.raw
    format: raw
    mode: '0640'
'''

RETURN = r'''
export:
  description: What was written (or is up to date).
  returned: always
  type: dict
  contains:
    dest:
      description: Path of the file.
      type: str
    id:
      description: Image id.
      type: str
    name:
      description: Image name.
      type: str
    store:
      description: Store the image was read from.
      type: str
    format:
      description: Format of the file.
      type: str
    os_hash_value:
      description: sha512 of the image as stored (equal to the file's for I(format=original)).
      type: str
    up_to_date:
      description: Whether the file holds the image (stamp matches); always true after a real run.
      type: bool
    mode:
      description: Permissions of the file, in octal.
      type: str
    size:
      description: Apparent size of the file in bytes.
      type: int
    allocated:
      description: Bytes allocated on disk (less than size for sparse files; cloned blocks count although they are shared).
      type: int
    method:
      description:
        - How the file was materialized in this run. C(reflink) when the slices were cloned (a slice the filesystem
          cannot clone alone, such as an unaligned last one, is copied), C(copy) when the bytes were written (another
          filesystem, no reflink support, a store on another host, or a conversion with qemu-img).
        - Null when nothing was written (the file was up to date, or check mode).
      type: str
      sample: reflink
    replaced_symlink:
      description:
        - Where the symlink pointed that this run replaced (or would replace, in check mode) with the exported file; the target
          was left untouched. Null when I(dest) was no symlink.
      type: str
      sample: /etc/shadow
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import ImageError, InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_image_id
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export


def parse_mode(value):
    if value is None:
        return None
    try:
        mode = int(value, 8) if isinstance(value, str) else int(value)
    except ValueError:
        raise InvalidArgument("mode %r is not an octal permission such as '0644'" % (value,))
    if not 0 <= mode <= 0o7777:
        raise InvalidArgument("mode %r is out of range" % (value,))
    return mode


def main():
    argument_spec = dict(
        name=dict(type='str'),
        id=dict(type='str'),
        store=dict(type='str', required=True),
        dest=dict(type='path', required=True),
        format=dict(type='str', default='original', choices=['original', 'raw', 'qcow2']),
        mode=dict(type='raw'),
        verify=dict(type='bool', default=False),
    )
    argument_spec.update(registry_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, required_one_of=[('name', 'id')])

    def work():
        params = module.params
        mode = parse_mode(params['mode'])
        catalog = Catalog(open_registry(module))
        image_id = check_image_id(params['id']) if params['id'] else None
        view = catalog.find(image_id, params['name'])
        if view is None:
            raise ImageError("image '%s' is in no store" % (params['name'] or params['id']))
        export = Export(catalog, view, params['store'], params['dest'], params['format'], mode, verify=params['verify'])
        export_needed = export.needs_export()
        chmod_needed = not export_needed and export.needs_chmod()
        changed = export_needed or chmod_needed
        before = export.describe()
        if export_needed and not module.check_mode:
            export.run()
        elif chmod_needed and not module.check_mode:
            export.chmod()
        result = {'changed': changed, 'export': export.predicted() if module.check_mode else export.describe()}
        if result['export'].get('replaced_symlink'):
            module.warn('dest %s was a symlink to %s: %s by the exported file; the link was not followed and %s was not touched'
                        % (params['dest'], export.symlink_target, 'it would be replaced' if module.check_mode else 'it was replaced',
                           export.symlink_target))
        if module._diff:
            result['diff'] = {'before': before, 'after': result['export']}
        return result

    run(module, work)


if __name__ == '__main__':
    main()
