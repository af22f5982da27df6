#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: store
short_description: Declare an image store on the managed host
version_added: 0.1.0
description:
  - Declares a named image store on the host the task runs on and initializes its root.
  - A file store keeps an identity record (id, type, zone, layout version, enabled) at its root, so declaring
    the same path again, on this host or another one that mounts it, finds the store and its images.
  - Forbidden store paths are refused before anything is touched C(/), C(/dev), C(/proc), C(/sys), C(/usr/bin),
    C(/bin), anything below C(/dev), C(/proc) or C(/sys), and relative paths.
  - C(state=absent) removes the declaration only, never the data.
  - When a declared store's identity record disappears (an unmounted filesystem), the module fails instead of
    initializing an empty store on the mount point.
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
    description: Name of the store, unique on the host (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  type:
    description:
      - Store backend. C(file) is a directory (local, or on another host with I(host)). C(rbd) is a Ceph pool holding
        raw images in Glance's layout. C(s3) and C(swift) are buckets/containers holding deduplicated slices, like a
        file store. C(cinder) keeps each image as one raw Cinder volume of I(volume_type), as Glance's cinder store does.
      - A C(rbd), C(s3), C(swift) or C(cinder) store keeps its identity in the pool, bucket or Cinder, so every host
        that declares the same place finds the same store and its images.
    type: str
    choices: [file, rbd, s3, swift, cinder]
    default: file
  path:
    description:
      - Absolute root directory of a file store, usually a mount path such as C(/cloud_bs). Required for a C(file) store
        with C(state=present).
    type: path
  pool:
    description:
      - Ceph pool of an C(rbd) store. Created (and C(rbd pool init)-ed) when absent, if the Ceph user may create pools.
      - A least-privilege user (C(mon 'profile rbd' osd 'profile rbd pool=<pool>')) is enough for an existing pool.
      - Images are named by their id, with a protected snapshot C(snap); locations are C(rbd://<fsid>/<pool>/<id>/snap).
    type: str
  ceph_conf:
    description: ceph.conf of the cluster, for an C(rbd) store. Defaults to C(/etc/ceph/ceph.conf) when I(mon_hosts) is not given.
    type: path
  keyring:
    description:
      - Keyring file of I(user), for an C(rbd) store (the store_host role writes it with mode 0600).
      - For a C(cinder) store whose volume type is on Ceph RBD, the keyring of the Ceph user Cinder's RBD back end
        connects as (C(rbd_user)), read when a volume's data is opened through os-brick (Cinder does not pass keys).
    type: path
  mon_hosts:
    description: Monitor addresses (C(host) or C(host:port)) of an C(rbd) store's cluster; overrides C(mon_host) of I(ceph_conf).
    type: list
    elements: str
  op_timeout:
    description:
      - Seconds an operation on the OSDs of an C(rbd) store may take before the task fails with an error that says so
        (librados C(rados_osd_op_timeout)); without it a dead OSD would hang the task. Default 60.
      - What an interrupted import wrote stays; the next run adopts it and writes only the rest.
    type: int
  endpoint:
    description:
      - C(s3) store, the S3 endpoint URL (RGW, MinIO, AliyunOSS, ...); omit for AWS.
      - C(swift) store, the auth URL (TempAuth v1, as radosgw serves it at C(/auth/1.0)).
      - C(cinder) store without Keystone, the URL of the Cinder API (C(http://cinder.example.org:8776/v3)), whose
        C(auth_strategy) is C(noauth); requests carry the token C(<user>:<project>). Give I(auth_url) instead for Keystone.
    type: str
  auth_url:
    description: C(cinder) store, the Keystone v3 URL (C(https://keystone.example.org:5000/v3)); needs I(user), I(password) and I(project).
    type: str
  project:
    description: C(cinder) store, the project (Keystone project name, or the project of the no-auth token; default the user).
    type: str
  user_domain:
    description: C(cinder) store with I(auth_url), the Keystone domain of I(user) (default C(Default)).
    type: str
  project_domain:
    description: C(cinder) store with I(auth_url), the Keystone domain of I(project) (default C(Default)).
    type: str
  volume_type:
    description:
      - C(cinder) store, the volume type of its volumes, which selects the Cinder back end (one store per back end).
        Required for a C(cinder) store. Each image is the volume C(image-<id>), with Glance's metadata C(glance_image_id),
        C(image_size), C(image_owner), read-only once written; its location is C(cinder://<store>/<volume-id>).
      - The store's identity and its image leases live in the metadata of the 1 GiB volume C(multistore-store) of that
        type, which is never written (thin where the back end can).
    type: str
  availability_zone:
    description: C(cinder) store, the availability zone its volumes are made in.
    type: str
  bucket:
    description: Bucket of an C(s3) store; created when absent.
    type: str
  container:
    description: Container of a C(swift) store; created when absent.
    type: str
  prefix:
    description: Key prefix inside the bucket or container, to share one bucket between several stores.
    type: str
  access_key:
    description: Access key (C(s3)) or Swift user C(account:user) (C(swift)).
    type: str
  secret_key:
    description: Secret key (C(s3)) or Swift key (C(swift)). Kept in the registry file (mode 0600), never shown.
    type: str
  region:
    description: Region of an C(s3), C(swift) or C(cinder) store.
    type: str
  validate_certs:
    description: Verify the TLS certificate of an https I(endpoint) (or I(auth_url)).
    type: bool
    default: true
  host:
    description:
      - Host name or address of another host that holds the file store, reached over SSH. Without it the store is local.
      - The store must have been declared on that host first (this module run there). Here it is only registered, and its
        identity is read, not changed (I(zone), I(site_role), I(quota), I(enabled) and the networks are the owner's).
      - Copies use the store host's address in its image-sync network when this host has an address in that network,
        its data address likewise otherwise, and I(host) last; C(address) and C(address_note) in the result say which
        one and why a declared one is not used.
    type: str
  port:
    description: SSH port of I(host), 1-65535 (C(0) is refused, not taken for 22).
    type: int
    default: 22
  user:
    description:
      - For a C(file) store on another I(host), the SSH user (default C(root)).
      - For an C(rbd) store, the Ceph client name, with or without C(client.) (default C(admin)).
      - For a C(cinder) store, the Keystone user (with I(auth_url)) or the user of the no-auth token (default C(admin)).
    type: str
  private_key:
    description: Private key file for I(host) (OpenSSH is used for the data, the fastest path measured here).
    type: path
  password:
    description:
      - Password for I(user) on I(host); uses paramiko (slower than OpenSSH). Stored in the registry file (mode 0600).
      - For a C(cinder) store with I(auth_url), the Keystone password of I(user). Never shown.
    type: str
  known_hosts:
    description:
      - known_hosts file holding the host key of I(host), under the name given as I(host), with no port.
      - Host keys are always verified, never added blindly. Defaults to C(~/.ssh/known_hosts).
    type: path
  zone:
    description: Zone (site) the store belongs to, reported in image locations.
    type: str
  description:
    description: Free text describing the store.
    type: str
  site_role:
    description:
      - C(central) or C(edge), for Glance's edge rules. An image must be in a central store before an edge store
        receives it, and imports commit to central stores first.
    type: str
    choices: [central, edge]
  data_network:
    description:
      - Data network of the store host, as the host's address with its prefix (C(10.1.0.11/24)) or as a network
        (C(10.1.0.0/24)), IPv4 or IPv6.
      - A network is resolved on this host to its address in it (read from the kernel), recorded as C(data_address)
        next to the declared network; no address of this host in it is an error and nothing is declared.
      - Copies from hosts with no address in the store's image-sync network use C(data_address).
    type: str
  sync_network:
    description:
      - Image-sync network of the store host, as the host's address with its prefix (C(10.2.0.11/24)) or as a network
        (C(10.2.0.0/24)), IPv4 or IPv6. Copies to and from this store go over it from every host that has an address
        in it (ZStack's rule).
      - A network is resolved on this host to its address in it, recorded as C(sync_address) next to the declared
        network, so a run with the same network changes nothing; no address of this host in it is an error and
        nothing is declared. Check and diff mode show the resolved address.
      - For an C(rbd), C(s3) or C(swift) store, shared by several hosts, the networks are recorded as given.
    type: str
  quota:
    description: Limits checked before and during imports and copies.
    type: dict
    suboptions:
      bytes:
        description: Most bytes the store's slices may take, as bytes or with a binary suffix (C(500G), C(2T)).
        type: raw
      images:
        description: Most images the store may hold.
        type: int
  enabled:
    description: A disabled store keeps its images readable but refuses imports, copies and deletions.
    type: bool
    default: true
  retrieve_existing:
    description:
      - Import the image files already lying under I(path) (ZStack's "retrieve existing images"), once, into this store.
        Only for a local C(file) store with C(state=present) and I(enabled=true).
      - Considered are the regular files anywhere under I(path), except the store's own entries at its root (C(multistore.json),
        C(retrieved.json), C(slices/), C(images/), C(staging/), C(locks/)), hidden entries (a leading C(.)) and C(lost+found).
      - A file whose name ends with C(.raw), C(.img), C(.qcow2), C(.vmdk), C(.vdi), C(.vhd), C(.vhdx) or C(.iso) (any case) becomes
        an image named after the file without that extension (C(/cloud_bs/iso/ubuntu-24.04.iso) is the image C(ubuntu-24.04)).
        The extension declares the disk format (C(.img) is detected from the bytes); the property C(retrieved_from) records the path.
      - Every file is vetted and imported like a I(src) of M(vmimages.multistore.image) (format inspection, md5 and sha512, slices).
        The originals are never moved, changed or deleted. On xfs made with C(reflink=1) and on btrfs the store clones the
        slices from the file instead of writing them, so a retrieval takes almost no new space there.
      - Files that are not retrieved are listed in RV(skipped_files) with the reason, among them other file names, symlinks (never
        followed), files the format inspector refuses (for example a qcow2 with a backing file), names another image already has
        (rename the file), unreadable files and files modified while they were read (retried on the next run).
      - Each retrieved file is remembered in C(retrieved.json) at the store root (its path, size and mtime, and the image id).
        A remembered file is never retrieved again, even after its image was deleted; rename the file (or remove its entry)
        to retrieve it again. A file modified after its retrieval is retrieved again when its name is free.
      - In check mode the files that would be retrieved are listed (their headers are inspected, nothing is written).
    type: bool
    default: false
  state:
    description: C(present) declares (and initializes) the store, C(absent) removes the declaration and keeps the data.
    type: str
    choices: [present, absent]
    default: present
'''

EXAMPLES = r'''
- name: Declare the central image store on its mount path
  vmimages.multistore.store:
    name: central
    path: /cloud_bs
    zone: zone-a
    site_role: central
    data_network: 10.1.0.0/24
    sync_network: 10.2.0.0/24
    quota:
      bytes: 2T
      images: 500

- name: Disable a store before maintenance (images stay readable)
  vmimages.multistore.store:
    name: dcn0
    path: /srv/dcn0
    site_role: edge
    enabled: false

- name: Reach the central store from an edge host over SSH (declared on the central host first)
  vmimages.multistore.store:
    name: central
    path: /cloud_bs
    host: central.example.org
    private_key: /root/.ssh/multistore_sync
    known_hosts: /etc/vmimages-multistore/known_hosts

- name: A Ceph RBD pool as an image store, with a least-privilege client
  vmimages.multistore.store:
    name: ceph-images
    type: rbd
    pool: images
    user: glance
    ceph_conf: /etc/ceph/ceph.conf
    keyring: /etc/ceph/ceph.client.glance.keyring
    zone: zone-a
    site_role: central

- name: An S3 bucket (radosgw, MinIO, AWS) as a deduplicated slice store
  vmimages.multistore.store:
    name: s3-archive
    type: s3
    endpoint: https://s3.example.org
    bucket: vm-images
    access_key: "{{ vault_s3_access_key }}"
    secret_key: "{{ vault_s3_secret_key }}"

- name: A Swift container (TempAuth v1 as radosgw serves it)
  vmimages.multistore.store:
    name: swift-archive
    type: swift
    endpoint: http://rgw.example.org:7480/auth/1.0
    container: vm-images
    access_key: "images:swift"
    secret_key: "{{ vault_swift_key }}"

- name: A Cinder back end (volume type) as an image store, through Keystone
  vmimages.multistore.store:
    name: cinder-fast
    type: cinder
    auth_url: https://keystone.example.org:5000/v3
    user: glance
    password: "{{ vault_glance_password }}"
    project: service
    volume_type: ceph-ssd
    keyring: /etc/ceph/ceph.client.cinder.keyring

- name: Import the image files already under the store's path, once
  vmimages.multistore.store:
    name: central
    path: /cloud_bs
    retrieve_existing: true
  register: central_store

- name: Forget a store (its data stays on disk; declaring the path again finds it)
  vmimages.multistore.store:
    name: old
    state: absent
'''

RETURN = r'''
store:
  description: The store as C(vmimages.multistore.store_info) reports it; empty after C(state=absent).
  returned: always
  type: dict
  sample:
    name: central
    type: file
    path: /cloud_bs
    id: 0b6e1f1e-4a51-4c4b-9b53-6f0b0e5d8c77
    zone: zone-a
    site_role: central
    sync_network: 10.2.0.0/24
    sync_address: 10.2.0.11/24
    enabled: true
    status: connected
    capacity: 107374182400
    used: 4194304
    free: 96636764160
    image_count: 1
    slice_count: 1
retrieved:
  description:
    - The image files imported by I(retrieve_existing) in this run (in check mode, those that would be, with C(id) null).
  returned: when I(retrieve_existing=true)
  type: list
  elements: dict
  contains:
    name:
      description: Name of the new image (the file name without its image extension).
      type: str
    id:
      description: Id of the new image.
      type: str
    path:
      description: Absolute path of the file, left in place.
      type: str
    size:
      description: Size of the file in bytes.
      type: int
    disk_format:
      description: Disk format of the image (from the extension, or detected).
      type: str
  sample:
    - {name: ubuntu-24.04, id: 5c3b7a3e-1f7e-4a8e-9d0c-2f5b8a1e6c44, path: /cloud_bs/iso/ubuntu-24.04.iso, size: 2754981888, disk_format: iso}
skipped_files:
  description:
    - Files under the store path that I(retrieve_existing) did not import, with the reason (nothing was changed for them).
    - Not named C(skipped), which Ansible reads as "the task was skipped".
  returned: when I(retrieve_existing=true)
  type: list
  elements: dict
  contains:
    path:
      description: Absolute path of the file (or directory).
      type: str
    reason:
      description: Why it was not retrieved, and what to do about it.
      type: str
  sample:
    - {path: /cloud_bs/old/overlay.qcow2, reason: "refused by the format inspector: the qcow2 image has a backing file ..."}
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.known import store_argument_spec
from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.retrieve import Retrieval
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.declaration import StoreDeclaration, describe


def main():
    # The common options and every back end's (plugins/module_utils/backends/): one list, not written again here.
    argument_spec = store_argument_spec()
    argument_spec.update(registry_argument_spec())
    # What each type requires with state=present is checked by the engine (declaration.py), with the reason.
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    def work():
        registry = open_registry(module)
        declaration = StoreDeclaration(registry, module.params)
        retrieval = None
        if module.params['state'] == 'present':
            if module.params['retrieve_existing']:
                retrieval = Retrieval.for_store(registry, declaration.name, module.params)
            changed = declaration.present(module.check_mode)
            if retrieval is not None:
                changed = retrieval.run(module.check_mode) or changed
            store = describe(registry.open(declaration.name)) if not module.check_mode or not changed else declaration.after
        else:
            changed = declaration.absent(module.check_mode)
            store = {}
        result = {'changed': changed, 'store': store}
        if module._diff:
            result['diff'] = {'before': declaration.before, 'after': declaration.after}
        if retrieval is not None:
            result.update(retrieved=retrieval.retrieved, skipped_files=retrieval.skipped)
            if module._diff:
                result['diff'] = {'before': dict(declaration.before or {}, retrieved=retrieval.before),
                                  'after': dict(declaration.after or {}, retrieved=retrieval.after)}
        return result

    run(module, work)


if __name__ == '__main__':
    main()
