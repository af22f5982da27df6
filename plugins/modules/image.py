#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: image
short_description: Import, copy, update or delete a VM image across the stores of the managed host
version_added: 0.1.0
description:
  - One image id with a record in every store that holds it, the way Glance multi-store does.
  - With C(state=present) and an image that exists in no store, imports C(src) (a path on the managed host or
    an http(s) URL, streamed, read once whatever the number of stores) into C(stores). The image's md5
    (C(checksum)) and sha512 (C(os_hash_value)) are computed in the same pass. The declared C(checksum) is
    verified before the image becomes C(active).
  - The real disk format is detected from the bytes. A declared C(disk_format) that does not match is refused,
    and so are images that could make qemu read host files (qcow2 with a backing file or an external data file
    or unknown incompatible features, vmdk whose descriptor names other extents; CVE-2024-32498). An ISO or any
    other recognisable format declared C(raw) is refused, so is a LUKS volume, a raw disk whose MBR or GPT is not
    sane, and a qcow2 header qemu would refuse to open.
  - Image data is stored as deduplicated, sha256-named 4 MiB slices. All-zero slices are not stored, and a
    slice already in a store is not written again.
  - When the image already exists, the stores that lack it receive a copy from a store that has it. Only
    missing slices move, and each is verified against its hash. Metadata options that differ are updated in
    every copy. The source is not read again, so a second run is a no-op that reads no image data.
  - With C(state=absent), deletes the image from the listed C(stores), or from every store when none are
    listed. Slices still used by other images stay.
  - Glance edge rules apply to stores declared with C(site_role). An edge store only receives an image that
    a central store holds or receives in the same task.
  - Without C(src), C(size) makes an empty datablock (HyperCX DATABLOCK), raw or qcow2, optionally with a filesystem.
  - C(enabled=false) deactivates an image (Glance C(deactivated), HyperCX C(DISABLED)) in every store that holds it; its
    data stays. A deactivated image is not exported, copied to more stores or cloned until C(enabled=true).
  - What the format inspector learns (virtual size, qcow2 version and cluster size, vmdk disk and adapter type...) is recorded
    as properties under Glance's names where Glance has them; properties given in I(properties) win.
  - With I(signature), the data is verified against a Glance/cursive image signature in the same pass, before anything
    becomes active.
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
    description: Image name. Required to create an image; names must be unambiguous (else give I(id)).
    type: str
  id:
    description: Image id (UUID). A new image gets a random one when omitted.
    type: str
  src:
    description:
      - Absolute path on the managed host, or C(http://) / C(https://) URL to import from. Only read when the
        image is active in no store. Paths under C(/dev), C(/proc) and C(/sys) (symlinks resolved) are refused.
      - Credentials in the URL (C(https://user:password@host/...)) are sent as HTTP basic auth, like I(url_username) and
        I(url_password), and masked in every message, result and the task's C(invocation). Prefer I(url_username) and
        I(url_password) anyway (a task's arguments may be shown elsewhere, for example by C(display_args_to_stdout)).
      - Credentials are never sent after a redirect, so that another host cannot see them. A redirect to anything but
        http(s) (C(file://), C(ftp://)) is refused.
      - A download that is cut continues where it stopped with an HTTP C(Range) request, checked with C(If-Range) against the
        ETag or Last-Modified of the first answer (at most 5 cuts in a row without progress, waiting 1, 2, 4, 8 s).
        When the server ignores ranges, gives neither validator, or the file changed, the import starts over from the
        first byte (at most twice), with nothing of the cut attempt kept. RV(download) and RV(actions) say which happened
        and why, and so does C(progress.message) of M(vmimages.multistore.image_info) while it runs.
    type: str
  checksum:
    description:
      - Expected digest of the source, as C(ALGORITHM:HEX) with md5, sha1, sha256, sha384 or sha512, or a bare
        md5/sha256/sha512 hex digest. Verified before the image becomes active.
      - An existing image whose recorded digest differs makes the task fail. A new version needs a new name.
    type: str
  disk_format:
    description: Declared disk format; must match the format detected from the bytes. Defaults to the detected format.
    type: str
    choices: [raw, qcow2, vmdk, vdi, vhd, vhdx, iso, ploop, aki, ari, ami]
  container_format:
    description: Container format recorded with the image.
    type: str
    choices: [bare, ovf, ova, aki, ari, ami, docker, compressed]
    default: bare
  stores:
    description: Names of the stores that must hold the image (C(state=present)) or lose it (C(state=absent)).
    type: list
    elements: str
  all_stores:
    description: Use every store declared on the host as I(stores).
    type: bool
    default: false
  allow_failure:
    description:
      - With C(false), a multi-store import or copy is all-or-nothing. When one store fails, no store keeps the image.
      - With C(true), the image is usable once one store has it. Stores that failed are listed in C(failed_import),
        and a later run retries them.
    type: bool
    default: false
  image_type:
    description: HyperCX-style image type; defaults to C(cdrom) for ISO images, C(datablock) with I(size), and C(os) otherwise.
    type: str
    choices: [os, cdrom, datablock]
  size:
    description:
      - Makes an empty datablock of this size instead of importing a I(src) (HyperCX DATABLOCK). Bytes, or a number with
        K, M, G, T or P (binary multiples), for example C(10G). More than 0, at most 64 TiB.
      - A raw datablock stores no zero slices, so an empty 100 GiB datablock costs a few KiB in a file, s3 or swift store,
        and is a thin image in an rbd store. A C(qcow2) datablock (I(disk_format=qcow2)) comes from C(qemu-img create).
      - On a re-run, an existing datablock of the same size, filesystem and format is left as it is; another size is refused
        (datablocks are not resized).
    type: raw
  filesystem:
    description:
      - With I(size), the datablock gets this filesystem, made with C(mkfs) on a temporary sparse file (never on a device),
        then imported (and converted to qcow2 when I(disk_format=qcow2)). Needs e2fsprogs or xfsprogs on the host.
    type: str
    choices: [ext4, xfs]
  enabled:
    description:
      - C(false) deactivates the image in every store that holds it (status C(deactivated), data kept). C(image_export),
        copies to more stores and C(state=cloned) then refuse it; deletion still works unless it is I(protected).
      - C(true) reactivates a deactivated image. Omitted, the status is left as it is.
    type: bool
  persistent:
    description: HyperCX persistent flag (changes made by a VM are kept in the image); recorded and shown.
    type: bool
  bus:
    description: Disk bus the image is attached with (HyperCX DEV_PREFIX); recorded, and shown as Glance's C(hw_disk_bus) property.
    type: str
    choices: [virtio, scsi, sata, ide]
  driver:
    description:
      - HyperCX mapping driver. It must equal the format the stores hold, after any conversion (C(raw) for an image converted
        with I(convert_to) or imported into rbd); otherwise the task fails and nothing is stored.
    type: str
    choices: [raw, qcow2]
  signature:
    description:
      - Glance image signature (the C(img_signature*) properties, verified as Glance does with cursive). The data of I(src)
        is verified in the same single pass as the digests, before the image becomes active; a bad signature, an expired or
        untrusted certificate or a key type that does not match the certificate fails the task and stores nothing.
      - The image then carries C(img_signature), C(img_signature_hash_method), C(img_signature_key_type) and
        C(img_signature_certificate_fingerprint) (sha256 of the certificate) as properties.
      - Needs the Python package C(cryptography) on the managed host (python3-cryptography on Debian/Ubuntu).
    type: dict
    suboptions:
      value:
        description: The signature, base64-encoded.
        type: str
        required: true
      hash_method:
        description: Hash of the signed data.
        type: str
        required: true
        choices: [SHA-224, SHA-256, SHA-384, SHA-512]
      key_type:
        description: Signature scheme and key.
        type: str
        required: true
        choices: [RSA-PSS, ECC_SECT571K1, ECC_SECT409K1, ECC_SECT571R1, ECC_SECT409R1, ECC_SECP384R1, ECC_SECP521R1, DSA]
      certificate:
        description: Absolute path on the managed host of the signer's certificate (PEM or DER).
        type: path
        required: true
      trusted_certs:
        description: Absolute path on the managed host of a PEM bundle of the CA certificates the signer's certificate must chain to.
        type: path
        required: true
  properties:
    description:
      - Free-form image properties (Glance C(properties)), at most 128. Names are 1-255 characters; values are strings of at most
        65535 characters, without control characters other than tabs and newlines.
      - Names Glance reserves are refused, as Glance refuses them, for example C(id), C(status), C(checksum), C(locations),
        C(os_hash_value), C(size) and anything starting with C(os_glance).
    type: dict
  tags:
    description: Image tags, at most 128 of 1-255 characters each, without control characters (Glance's limits).
    type: list
    elements: str
  visibility:
    description: Glance visibility; new images default to C(shared).
    type: str
    choices: [public, private, shared, community]
  protected:
    description: A protected image cannot be deleted; new images default to C(false).
    type: bool
  min_disk:
    description: Minimum disk size in GiB needed to boot the image (0 to 2147483647).
    type: int
  min_ram:
    description: Minimum RAM in MiB needed to boot the image (0 to 2147483647).
    type: int
  convert_to:
    description:
      - C(raw) converts a qcow2, vmdk, vdi, vhd or vhdx source to raw with C(qemu-img convert -f <format>) before it
        is stored (the source is vetted by the format inspector and verified against I(checksum) first).
      - An import into an C(rbd) store always converts, since RBD stores hold raw images (what Nova and Cinder clone).
      - The record then describes the raw bytes (C(disk_format=raw), their md5 and sha512); the source's format and
        declared digest are kept under C(source), and a re-run with the source's I(checksum) is recognised.
      - A source from a URL is spooled to a sparse temporary file first; the raw file is temporary too. Raw and ISO
        sources are never copied.
    type: str
    choices: [raw]
  clone_from:
    description:
      - With C(state=cloned), the name or id of the image to clone. The new image (I(name), a new id unless I(id) is
        given) gets the same data without copying it. In file and object stores it is a new record over the same
        slices; in an rbd store a copy-on-write clone of the protected snapshot (no data is copied, whatever the size).
      - The clone is made in I(stores), which must all hold C(clone_from), or in every store that holds it.
      - Once it exists, the clone is an image like any other. An rbd image that still has clones cannot be deleted.
    type: str
  state:
    description: C(present), C(absent) or C(cloned).
    type: str
    choices: [present, absent, cloned]
    default: present
  validate_certs:
    description: Verify TLS certificates of an https I(src).
    type: bool
    default: true
  url_timeout:
    description: Seconds to wait for the http(s) server.
    type: int
    default: 30
  url_headers:
    description: Extra HTTP headers for the download.
    type: dict
  url_username:
    description: User for HTTP basic authentication.
    type: str
  url_password:
    description: Password for HTTP basic authentication.
    type: str
  size_cap:
    description:
      - The largest source accepted, as Glance's C(image_size_cap). Bytes, or a number with K, M, G, T or P (binary), for
        example C(200G). Defaults to 1 TiB, Glance's default.
      - A local file or a download that announces (C(Content-Length)) more is refused before any byte is read. A download
        without a length is stopped one byte past the cap. Either way nothing is stored.
    type: raw
'''

EXAMPLES = r'''
- name: Import a cloud image into the central and an edge store (downloaded once)
  vmimages.multistore.image:
    name: ubuntu-24.04
    src: https://cloud-images.example.org/noble/noble-server-cloudimg-amd64.img
    checksum: sha256:5b1a0c5e9bbf7a3b2c2e1f0f6b6c7a8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7
    disk_format: qcow2
    stores: [central, dcn0]
    tags: [ubuntu, lts]
    properties:
      os_distro: ubuntu
      hw_disk_bus: virtio

- name: Copy the image to one more store (only the slices dcn1 lacks move)
  vmimages.multistore.image:
    name: ubuntu-24.04
    stores: [dcn1]

- name: Import a qcow2 image into a Ceph RBD store (converted to raw, Glance layout, location rbd://fsid/pool/id/snap)
  vmimages.multistore.image:
    name: debian-12-raw
    src: /srv/images/debian-12-genericcloud-amd64.qcow2
    checksum: sha512:0f9c0d5d1e8a6f5b3c2a1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a
    disk_format: qcow2
    stores: [ceph-images, s3-archive]

- name: A copy-on-write clone for a golden-image pipeline (no data copied)
  vmimages.multistore.image:
    name: debian-12-golden
    clone_from: debian-12-raw
    state: cloned
    properties:
      golden: "true"

- name: An empty 20 GiB datablock with an ext4 filesystem, for a VM's data disk (costs almost nothing while empty)
  vmimages.multistore.image:
    name: data-20g
    size: 20G
    filesystem: ext4
    disk_format: qcow2
    persistent: true
    bus: virtio
    driver: qcow2
    stores: [central]

- name: Import a signed image (verified while it streams; nothing is stored if the signature or certificate is bad)
  vmimages.multistore.image:
    name: appliance-7.2
    src: https://images.example.org/appliance-7.2.qcow2
    disk_format: qcow2
    stores: [central]
    signature:
      value: "{{ lookup('ansible.builtin.file', 'appliance-7.2.qcow2.sig') }}"
      hash_method: SHA-256
      key_type: RSA-PSS
      certificate: /etc/pki/images/signer.pem
      trusted_certs: /etc/pki/images/ca-bundle.pem

- name: Deactivate an image (kept in every store, but not exported, copied or cloned)
  vmimages.multistore.image:
    name: ubuntu-24.04
    enabled: false

- name: Delete it from one edge store only
  vmimages.multistore.image:
    name: ubuntu-24.04
    stores: [dcn0]
    state: absent

- name: Delete it everywhere
  vmimages.multistore.image:
    name: ubuntu-24.04
    state: absent
'''

RETURN = r'''
image:
  description: The image as M(vmimages.multistore.image_info) reports it (empty once deleted everywhere).
  returned: always
  type: dict
  sample:
    id: 6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11
    name: ubuntu-24.04
    status: active
    disk_format: qcow2
    container_format: bare
    size: 601882624
    virtual_size: 3758096384
    checksum: 2a1c8d3a5e5b2b9e1e6f0c7d8a9b0c1d
    os_hash_algo: sha512
    os_hash_value: 9b2d…
    stores: [central, dcn0]
    importing_to_stores: []
    failed_import: []
    locations:
      - url: file:///cloud_bs/images/6f0c2f0e-2c55-4c4f-9a8e-3f0c1b7d2a11
        metadata: {store: central, zone: zone-a, site_role: central}
actions:
  description: What the task did (or would do in check mode), in plain words.
  returned: always
  type: list
  elements: str
  sample: ["import /srv/images/noble.img into central, dcn0"]
failed_import:
  description: Stores that failed during this run with I(allow_failure=true), with the reason.
  returned: always
  type: list
  elements: dict
released_bytes:
  description: Bytes freed by a deletion (slices no other image uses).
  returned: always
  type: int
download:
  description:
    - What the download of an http(s) I(src) went through in this run. Null when no URL was read.
  returned: always
  type: dict
  contains:
    url:
      description: The URL, with any credentials replaced by C(********).
      type: str
    resumed_from:
      description: The bytes at which a cut download continued with a C(Range) request, in order.
      type: list
      elements: int
    restarts:
      description: Each time the download started over from byte 0, with the byte it was cut at (C(at)) and why it could not resume (C(why)).
      type: list
      elements: dict
  sample:
    url: https://********@images.example.org/noble.img
    resumed_from: [268435456]
    restarts: []
'''

from ansible.module_utils import basic
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmimages.multistore.plugins.module_utils.common.module_support import (
    open_registry, registry_argument_spec, run)
from ansible_collections.vmimages.multistore.plugins.module_utils.formats.inspector import CONTAINER_FORMATS, DISK_FORMATS
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.request import BUSES, DRIVERS, ImageRequest
from ansible_collections.vmimages.multistore.plugins.module_utils.signatures.verifier import HASH_METHODS, KEY_TYPES
from ansible_collections.vmimages.multistore.plugins.module_utils.transfer.sources import url_secrets


def main():
    argument_spec = dict(
        name=dict(type='str'),
        id=dict(type='str'),
        src=dict(type='str'),
        checksum=dict(type='str'),
        disk_format=dict(type='str', choices=list(DISK_FORMATS)),
        container_format=dict(type='str', default='bare', choices=list(CONTAINER_FORMATS)),
        stores=dict(type='list', elements='str'),
        all_stores=dict(type='bool', default=False),
        allow_failure=dict(type='bool', default=False),
        image_type=dict(type='str', choices=['os', 'cdrom', 'datablock']),
        size=dict(type='raw'),
        filesystem=dict(type='str', choices=['ext4', 'xfs']),
        enabled=dict(type='bool'),
        persistent=dict(type='bool'),
        bus=dict(type='str', choices=list(BUSES)),
        driver=dict(type='str', choices=list(DRIVERS)),
        signature=dict(type='dict', options=dict(
            value=dict(type='str', required=True),
            hash_method=dict(type='str', required=True, choices=list(HASH_METHODS)),
            key_type=dict(type='str', required=True, choices=list(KEY_TYPES)),
            certificate=dict(type='path', required=True),
            trusted_certs=dict(type='path', required=True),
        )),
        properties=dict(type='dict'),
        tags=dict(type='list', elements='str'),
        visibility=dict(type='str', choices=['public', 'private', 'shared', 'community']),
        protected=dict(type='bool'),
        min_disk=dict(type='int'),
        min_ram=dict(type='int'),
        convert_to=dict(type='str', choices=['raw']),
        clone_from=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent', 'cloned']),
        validate_certs=dict(type='bool', default=True),
        url_timeout=dict(type='int', default=30),
        url_headers=dict(type='dict'),
        url_username=dict(type='str'),
        url_password=dict(type='str', no_log=True),
        size_cap=dict(type='raw'),
    )
    argument_spec.update(registry_argument_spec())
    # A src with credentials in it is a secret from the start: AnsibleModule logs its invocation (journal, syslog) and
    # returns it before the engine could redact anything. Everything else shows the URL with ******** for them.
    argument_spec['src']['no_log'] = bool(url_secrets(_given_src()))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[('name', 'id')], mutually_exclusive=[('stores', 'all_stores'), ('src', 'clone_from'), ('src', 'size')],
                           required_if=[('state', 'cloned', ('name', 'clone_from'))])
    module.no_log_values.update(url_secrets(module.params.get('src')))

    def work():
        request = ImageRequest(Catalog(open_registry(module)), module.params, work_dir=module.tmpdir)
        if module.params['state'] == 'present':
            changed = request.present(module.check_mode)
        elif module.params['state'] == 'cloned':
            changed = request.cloned(module.check_mode)
        else:
            changed = request.absent(module.check_mode)
        image = request.result() if not (module.check_mode and changed) else dict(request.after, id=request.image_id)
        result = {'changed': changed, 'image': image, 'actions': request.actions,
                  'failed_import': request.failed_import, 'released_bytes': request.released, 'download': request.download}
        for failure in request.failed_import:
            module.warn("store '%s' failed: %s" % (failure['store'], failure['error']))
        for note in request.notes:
            module.warn(note)
        if module._diff:
            result['diff'] = {'before': request.before, 'after': request.after}
        return result

    run(module, work)


def _given_src():
    """src as the task gave it, read before AnsibleModule validates (and logs) the arguments."""
    try:
        params = basic._load_params()
    except Exception:  # no arguments to read (documentation tools): nothing is secret
        return None
    src = params.get('src') if isinstance(params, dict) else None
    return src if isinstance(src, str) else None


if __name__ == '__main__':
    main()
