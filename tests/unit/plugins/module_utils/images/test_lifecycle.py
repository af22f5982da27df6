# -*- coding: utf-8 -*-
"""The image model beyond import/copy/delete: deactivate, empty datablocks, HyperCX fields, introspection, signatures."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import datetime
import subprocess

import pytest

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import (
    ImageError, InvalidArgument, SignatureError, StoreError)
from ansible_collections.vmimages.multistore.plugins.module_utils.images.catalog import Catalog
from ansible_collections.vmimages.multistore.plugins.module_utils.images.export import Export

from image_files import leftovers, stored_slices


# ------------------------------------------------------------------ deactivate / reactivate
def test_deactivate_keeps_data_and_refuses_export_copy_clone(declare, image_request, make_raw, registry, tmp_path):
    central = declare('central')
    declare('edge')
    image_request(name='img', src=make_raw('a.raw', [1, 2]), stores=['central']).present(False)
    slices = stored_slices(central)
    request = image_request(name='img', enabled=False)
    assert request.present(check_mode=True) is True and request.before['enabled'] and not request.after['enabled']
    assert Catalog(registry).find(name='img').describe()['status'] == 'active'  # check mode changed nothing
    assert request.present(False) is True
    info = request.result()
    assert info['status'] == 'deactivated' and info['enabled'] is False and info['stores'] == ['central']
    assert stored_slices(central) == slices
    assert image_request(name='img', enabled=False).present(False) is False  # idempotent
    catalog = Catalog(registry)
    with pytest.raises(ImageError, match='deactivated: re-enable it with enabled: true'):
        Export(catalog, catalog.find(name='img'), 'central', str(tmp_path / 'out.raw'))
    with pytest.raises(ImageError, match='deactivated: re-enable it with enabled: true before copying it to edge'):
        image_request(name='img', stores=['edge']).present(True)
    with pytest.raises(ImageError, match='deactivated: re-enable it with enabled: true before cloning'):
        image_request(name='img-clone', clone_from='img').cloned(False)
    # reactivating and copying in one task: reactivated first, then copied
    both = image_request(name='img', enabled=True, stores=['edge'])
    assert both.present(False) is True and both.actions == ['reactivate', 'copy to edge from central']
    assert both.result()['status'] == 'active' and both.result()['stores'] == ['central', 'edge']


def test_deactivated_image_is_deleted_unless_protected_and_survives_cleanup(declare, image_request, make_raw, registry):
    from ansible_collections.vmimages.multistore.plugins.module_utils.images.cleanup import StoreCleanup
    central = declare('central')
    image_request(name='img', src=make_raw('a.raw', [1]), stores=['central'], protected=True, enabled=False).present(False)
    assert Catalog(registry).find(name='img').describe()['status'] == 'deactivated'
    changed, report = StoreCleanup(Catalog(registry).store('central'), 0).run(False)
    assert report['removed_images'] == [] and report['removed_slices'] == 0  # a deactivated image is complete, not a leftover
    assert Catalog(registry).store('central').backend.stats()['image_count'] == 1
    with pytest.raises(ImageError, match='protected'):
        image_request(name='img', state='absent').absent(False)
    image_request(name='img', protected=False).present(False)
    assert image_request(name='img').absent(False) is True
    assert stored_slices(central) == [] and leftovers(central) == []


# ------------------------------------------------------------------ empty datablocks
def test_empty_raw_datablock_stores_no_slices_and_is_idempotent(declare, image_request, registry):
    central = declare('central')
    request = image_request(name='data', size='2G', stores=['central'])
    assert request.present(check_mode=True) is True and stored_slices(central) == []
    assert request.present(False) is True
    info = request.result()
    assert info['image_type'] == 'datablock' and info['size'] == 2 * 1024 ** 3 and info['virtual_size'] == info['size']
    assert info['datablock'] == {'size': 2 * 1024 ** 3, 'filesystem': None, 'disk_format': 'raw'}
    assert stored_slices(central) == []  # 2 GiB of zeros cost nothing
    assert image_request(name='data', size='2G', stores=['central']).present(False) is False
    with pytest.raises(ImageError, match='not resized'):
        image_request(name='data', size='1G', stores=['central']).present(True)


def test_datablock_with_filesystem_exports_a_mountable_disk(declare, image_request, registry, tmp_path):
    declare('central')
    request = image_request(name='fs', size='64M', filesystem='ext4', stores=['central'], persistent=True)
    request.present(False)
    catalog = Catalog(registry)
    dest = str(tmp_path / 'fs.raw')
    Export(catalog, catalog.find(name='fs'), 'central', dest).run()
    assert subprocess.check_output(['blkid', '-o', 'value', '-s', 'TYPE', dest]).decode().strip() == 'ext4'
    subprocess.check_call(['e2fsck', '-n', '-f', dest], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert request.result()['persistent'] is True


def test_qcow2_datablock(declare, image_request):
    declare('central')
    request = image_request(name='q', size='2G', disk_format='qcow2', driver='qcow2', stores=['central'])
    request.present(False)
    info = request.result()
    assert info['disk_format'] == 'qcow2' and info['virtual_size'] == 2 * 1024 ** 3 and info['driver'] == 'qcow2'
    assert info['properties']['qcow2_version'] == '3'


@pytest.mark.parametrize('params, message', [
    ({'size': '1G', 'src': '/nonexistent'}, 'without src'),
    ({'size': '1G', 'image_type': 'os'}, 'image_type is datablock'),
    ({'size': '1G', 'checksum': 'md5:' + '0' * 32}, 'no checksum'),
    ({'size': '10Q'}, 'not a size'),
    ({'size': 0}, 'zero'),
])
def test_datablock_bad_input(declare, image_request, params, message):
    central = declare('central')
    with pytest.raises(InvalidArgument, match=message):
        image_request(name='d', stores=['central'], **params).present(False)
    assert leftovers(central) == []


# ------------------------------------------------------------------ persistent, bus, driver
def test_bus_is_recorded_as_hw_disk_bus_and_operator_properties_win(declare, image_request, make_raw):
    declare('central')
    request = image_request(name='img', src=make_raw('a.raw', [1]), stores=['central'], bus='scsi', persistent=False,
                            properties={'os_distro': 'debian'})
    request.present(False)
    info = request.result()
    assert info['bus'] == 'scsi' and info['properties'] == {'os_distro': 'debian', 'hw_disk_bus': 'scsi'}
    assert image_request(name='img', bus='scsi', properties={'os_distro': 'debian'}).present(False) is False
    update = image_request(name='img', bus='virtio')
    assert update.present(False) is True and update.result()['properties']['hw_disk_bus'] == 'virtio'
    with pytest.raises(InvalidArgument, match='disagree'):
        image_request(name='img', bus='ide', properties={'hw_disk_bus': 'scsi'})
    with pytest.raises(InvalidArgument, match="bus 'usb' is unknown"):
        image_request(name='img', bus='usb')


def test_driver_must_match_the_stored_format(declare, image_request, make_raw, tmp_path):
    central = declare('central')
    qcow2 = str(tmp_path / 'a.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', make_raw('a.raw', [1, 2]), qcow2])
    # detected only while the data streams: refused before the commit, nothing stored
    with pytest.raises(ImageError, match='driver raw does not match'):
        image_request(name='img', src=qcow2, stores=['central'], driver='raw').present(False)
    assert stored_slices(central) == [] and leftovers(central) == []
    # declared: refused before anything is read
    with pytest.raises(ImageError, match='driver raw does not match'):
        image_request(name='img', src=qcow2, disk_format='qcow2', stores=['central'], driver='raw').present(False)
    # converted on import: the stores hold raw
    converted = image_request(name='img', src=qcow2, disk_format='qcow2', convert_to='raw', stores=['central'], driver='raw')
    assert converted.present(False) is True and converted.result()['driver'] == 'raw'
    with pytest.raises(ImageError, match='driver qcow2 does not match'):
        image_request(name='img', driver='qcow2').present(True)


# ------------------------------------------------------------------ introspection
def test_introspected_properties_are_recorded_and_operator_wins(declare, image_request, make_raw, tmp_path):
    declare('central')
    vmdk = str(tmp_path / 'a.vmdk')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'vmdk', '-o', 'adapter_type=lsilogic',
                           make_raw('a.raw', [1, 2]), vmdk])
    request = image_request(name='v', src=vmdk, stores=['central'], properties={'vmware_adaptertype': 'ide'})
    request.present(False)
    properties = request.result()['properties']
    assert properties['vmware_disktype'] == 'sparse' and properties['vmware_adaptertype'] == 'ide'
    # operator properties are compared alone: a re-run with the same ones is a no-op
    assert image_request(name='v', properties={'vmware_adaptertype': 'ide'}).present(False) is False


# ------------------------------------------------------------------ signatures
def _signed_setup(tmp_path, data_path, expired=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID
    now = datetime.datetime.utcnow()

    def certificate(subject, issuer, key, signing_key, ca, not_after):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=2))
                   .not_valid_after(not_after).add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                          encipher_only=False, decipher_only=False), critical=True)
        return builder.sign(signing_key, hashes.SHA256())
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = certificate(u'test CA', u'test CA', ca_key, ca_key, True, now + datetime.timedelta(days=30))
    leaf = certificate(u'signer', u'test CA', key, ca_key, False, now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=30))
    paths = {'certificate': str(tmp_path / 'signer.pem'), 'trusted_certs': str(tmp_path / 'ca.pem')}
    open(paths['certificate'], 'wb').write(leaf.public_bytes(serialization.Encoding.PEM))
    open(paths['trusted_certs'], 'wb').write(ca.public_bytes(serialization.Encoding.PEM))
    data = open(data_path, 'rb').read()
    signature = key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
    return dict(paths, value=base64.b64encode(signature).decode('ascii'), hash_method='SHA-256', key_type='RSA-PSS')


def test_signed_import_records_glance_properties(declare, image_request, make_raw, tmp_path):
    declare('central')
    declare('edge')
    src = make_raw('a.raw', [1, 2, 3])
    signature = _signed_setup(tmp_path, src)
    request = image_request(name='signed', src=src, stores=['central', 'edge'], signature=signature)
    request.present(False)
    properties = request.result()['properties']
    assert properties['img_signature'] == signature['value'] and properties['img_signature_hash_method'] == 'SHA-256'
    assert properties['img_signature_key_type'] == 'RSA-PSS'
    assert properties['img_signature_certificate_fingerprint'].startswith('sha256:')
    assert image_request(name='signed', src=src, stores=['central', 'edge'], signature=signature).present(False) is False


def test_bad_signature_stores_nothing_anywhere(declare, image_request, make_raw, tmp_path):
    paths = [declare('central'), declare('edge')]
    src = make_raw('a.raw', [1, 2, 3])
    signature = _signed_setup(tmp_path, src)
    forged = make_raw('b.raw', [1, 2, 4])
    with pytest.raises(SignatureError, match='nothing was stored'):
        image_request(name='signed', src=forged, stores=['central', 'edge'], signature=signature).present(False)
    for path in paths:
        assert stored_slices(path) == [] and leftovers(path) == []


def test_signature_of_a_converted_image_is_checked_on_the_source(declare, image_request, make_raw, tmp_path):
    declare('central')
    qcow2 = str(tmp_path / 'a.qcow2')
    subprocess.check_call(['qemu-img', 'convert', '-q', '-f', 'raw', '-O', 'qcow2', make_raw('a.raw', [1, 2]), qcow2])
    signature = _signed_setup(tmp_path, qcow2)
    request = image_request(name='c', src=qcow2, disk_format='qcow2', convert_to='raw', stores=['central'], signature=signature)
    request.present(False)
    assert request.result()['disk_format'] == 'raw' and request.result()['properties']['img_signature'] == signature['value']


def test_expired_certificate_is_refused_before_reading(declare, image_request, make_raw, tmp_path):
    central = declare('central')
    src = make_raw('a.raw', [1])
    with pytest.raises(SignatureError, match='expired|not valid'):
        image_request(name='s', src=src, stores=['central'], signature=_signed_setup(tmp_path, src, expired=True)).present(False)
    assert leftovers(central) == []


def test_a_refused_copy_does_not_reactivate(declare, image_request, make_raw, registry):
    declare('central')
    declare('off', enabled=False)
    image_request(name='img', src=make_raw('a.raw', [1]), stores=['central'], enabled=False).present(False)
    with pytest.raises(StoreError, match="store .off. is disabled"):
        image_request(name='img', enabled=True, stores=['off']).present(False)
    assert Catalog(registry).find(name='img').describe()['status'] == 'deactivated'  # nothing changed
