# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image signature verification with real keys and certificates.

Each test makes a root CA, an intermediate CA and a signing certificate with cryptography (keys are made
once per key kind and role, RSA and DSA at 2048 bits), signs several MiB of random data in one go and
verifies it the way the import pipeline will: 4 MiB chunks through SignatureSpec.verifier(). The openssl
command line signs too (Glance's documented workflow), and Debian's python3 with its python3-cryptography
38 (what managed hosts run, and the only one here with the binary SECT curves) verifies in a subprocess.

No mocks, except one: test_missing_cryptography hides the library by putting None in sys.modules,
the only way to see that message where cryptography is installed.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SignatureError, SourceError
from ansible_collections.vmimages.multistore.plugins.module_utils.signatures import verifier as verifier_module
from ansible_collections.vmimages.multistore.plugins.module_utils.signatures.verifier import HASH_METHODS, KEY_TYPES, SignatureSpec

CHUNK = 4 * 1024 * 1024
NOW = datetime.datetime.now(datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
DEBIAN_PYTHON = '/usr/bin/python3'
BINARY_CURVES = ('SECT571K1', 'SECT409K1', 'SECT571R1', 'SECT409R1')
NO_BINARY_CURVES = pytest.mark.skipif(not hasattr(ec, 'SECT409K1'), reason='this cryptography has no binary (SECT) curves; '
                                      'test_binary_curves_with_debian_cryptography covers them')
NO_CERTIFICATE = 'holds no certificate: give PEM certificates (-----BEGIN CERTIFICATE-----) or one DER certificate'
_KEYS = {}


@pytest.fixture(scope='module')
def data():
    """Two full chunks and a short one."""
    return os.urandom(2 * CHUNK + 12345)


def key(kind, role):
    """One key per kind and role for the whole module: making RSA and DSA keys is the slow part."""
    if (kind, role) not in _KEYS:
        if kind == 'RSA':
            _KEYS[kind, role] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == 'DSA':
            if 'parameters' not in _KEYS:  # the slow part of DSA
                _KEYS['parameters'] = dsa.generate_parameters(key_size=2048)
            _KEYS[kind, role] = _KEYS['parameters'].generate_private_key()
        else:
            _KEYS[kind, role] = ec.generate_private_key(getattr(ec, kind)())
    return _KEYS[kind, role]


def certificate(common_name, subject_key, signer=None, ca=False, path_length=None, days=(-1, 30)):
    """A certificate for subject_key, issued by signer (certificate, key) or self-signed."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, u'vmimages test'), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, signing_key = (signer[0].subject, signer[1]) if signer else (name, subject_key)
    usage = dict(digital_signature=not ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name).public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW + days[0] * DAY).not_valid_after(NOW + days[1] * DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(**usage), critical=True))
    return builder.sign(signing_key, hashes.SHA256())


def write_pem(path, *certificates):
    with open(str(path), 'wb') as handle:
        for one in certificates:
            handle.write(one.public_bytes(serialization.Encoding.PEM))
    return str(path)


def write_key(path, private_key):
    with open(str(path), 'wb') as handle:
        handle.write(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(path)


def hash_algorithm(hash_method):
    return getattr(hashes, hash_method.replace('-', ''))()


def sign(private_key, payload, hash_method):
    """The signature over the whole payload, made in one go (the verifier works on a digest built in chunks)."""
    algorithm = hash_algorithm(hash_method)
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(payload, padding.PSS(mgf=padding.MGF1(algorithm), salt_length=padding.PSS.MAX_LENGTH), algorithm)
    if isinstance(private_key, dsa.DSAPrivateKey):
        return private_key.sign(payload, algorithm)
    return private_key.sign(payload, ec.ECDSA(algorithm))


def b64(raw):
    return base64.b64encode(raw).decode('ascii')


def feed(spec, payload):
    """Verify payload in 4 MiB chunks, as memoryviews like the pipeline's."""
    verifier = spec.verifier()
    view = memoryview(payload)
    for offset in range(0, len(payload), CHUNK):
        verifier.update(view[offset:offset + CHUNK])
    verifier.verify()


def flip_bit(raw, index):
    flipped = bytearray(raw)
    flipped[index] ^= 0x10
    return bytes(flipped)


class Pki:
    """A root CA and an intermediate CA that issued the signing certificate, as PEM files.

    trusted.pem holds both CAs (cursive takes the intermediates from the trusted set too); signer.pem
    holds the signing certificate alone. roles: keyword dicts for certificate() by role.
    """

    def __init__(self, directory, kind, **roles):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_kind = {'RSA': 'RSA', 'DSA': 'DSA'}.get(kind, 'SECP384R1')
        root_key, intermediate_key = key(self.ca_kind, 'root'), key(self.ca_kind, 'intermediate')
        options = dict((role, dict(dict(ca=role != 'leaf'), **roles.get(role, {}))) for role in ('root', 'intermediate', 'leaf'))
        self.root = certificate(u'Test Root CA', root_key, **options['root'])
        self.intermediate = certificate(u'Test Intermediate CA', intermediate_key, (self.root, root_key), **options['intermediate'])
        self.key = key(kind, 'leaf')
        self.leaf = certificate(u'Image Signer', self.key, (self.intermediate, intermediate_key), **options['leaf'])
        self.certificate = write_pem(directory / 'signer.pem', self.leaf)
        self.trusted_certs = write_pem(directory / 'trusted.pem', self.root, self.intermediate)

    def params(self, payload, key_type, hash_method='SHA-256', **changes):
        params = dict(value=b64(sign(self.key, payload, hash_method)), hash_method=hash_method, key_type=key_type,
                      certificate=self.certificate, trusted_certs=self.trusted_certs)
        params.update(changes)
        return params


def refused(error, params, **changes):
    """The message of the error from_params raises with changes applied to params."""
    params = dict(params, **changes)
    with pytest.raises(error) as caught:
        SignatureSpec.from_params(params)
    message = str(caught.value)
    value = params.get('value')
    assert not isinstance(value, str) or len(value) < 8 or value not in message
    return message


@pytest.fixture
def rsa_pki(tmp_path):
    return Pki(tmp_path, 'RSA')


def test_api_constants():
    assert HASH_METHODS == ('SHA-224', 'SHA-256', 'SHA-384', 'SHA-512')
    assert KEY_TYPES == ('RSA-PSS', 'ECC_SECT571K1', 'ECC_SECT409K1', 'ECC_SECT571R1', 'ECC_SECT409R1', 'ECC_SECP384R1', 'ECC_SECP521R1', 'DSA')
    assert issubclass(SignatureError, SourceError)


@pytest.mark.parametrize('kind, key_type, hash_method', [
    ('RSA', 'RSA-PSS', 'SHA-224'),
    ('RSA', 'RSA-PSS', 'SHA-256'),
    ('RSA', 'RSA-PSS', 'SHA-384'),
    ('RSA', 'RSA-PSS', 'SHA-512'),
    ('SECP384R1', 'ECC_SECP384R1', 'SHA-384'),
    ('SECP521R1', 'ECC_SECP521R1', 'SHA-512'),
    ('SECP521R1', 'ECC_SECP521R1', 'SHA-224'),
    pytest.param('SECT409K1', 'ECC_SECT409K1', 'SHA-256', marks=NO_BINARY_CURVES),
    pytest.param('SECT571R1', 'ECC_SECT571R1', 'SHA-512', marks=NO_BINARY_CURVES),
    ('DSA', 'DSA', 'SHA-256'),
    ('DSA', 'DSA', 'SHA-512'),
])
def test_good_signature(tmp_path, data, kind, key_type, hash_method):
    pki = Pki(tmp_path, kind)
    params = pki.params(data, key_type, hash_method)
    spec = SignatureSpec.from_params(params)
    feed(spec, data)
    spec.check_trust()
    assert spec.properties()['img_signature_key_type'] == key_type


@pytest.mark.parametrize('kind, key_type', [('RSA', 'RSA-PSS'), ('SECP521R1', 'ECC_SECP521R1'), ('DSA', 'DSA')])
def test_forged_data_or_signature(tmp_path, data, kind, key_type):
    pki = Pki(tmp_path, kind)
    params = pki.params(data, key_type)
    spec = SignatureSpec.from_params(params)
    with pytest.raises(SignatureError) as caught:
        feed(spec, flip_bit(data, CHUNK + 4321))
    message = str(caught.value)
    assert message.startswith('signature verification failed for the image data: ') and message.endswith('nothing was stored')
    assert "'CN=Image Signer,O=vmimages test'" in message and params['value'] not in message

    raw = base64.b64decode(params['value'])
    forged = SignatureSpec.from_params(dict(params, value=b64(flip_bit(raw, len(raw) // 2))))
    with pytest.raises(SignatureError, match='^signature verification failed for the image data: .*nothing was stored$'):
        feed(forged, data)


def test_signature_of_other_data(rsa_pki, data):
    spec = SignatureSpec.from_params(rsa_pki.params(data[:-1], 'RSA-PSS'))
    with pytest.raises(SignatureError, match='signature verification failed'):
        feed(spec, data)


def test_bytes_chunks_and_wrapped_base64(rsa_pki, data):
    """Plain bytes chunks of any size, and a value wrapped at 64 columns like `openssl base64` writes it."""
    params = rsa_pki.params(data, 'RSA-PSS', 'SHA-512')
    compact = params['value']
    wrapped = '\n'.join(compact[start:start + 64] for start in range(0, len(compact), 64)) + '\n'
    spec = SignatureSpec.from_params(dict(params, value=wrapped))
    verifier = spec.verifier()
    for offset in range(0, len(data), 1000003):
        verifier.update(data[offset:offset + 1000003])
    verifier.verify()
    verifier.verify()
    assert spec.properties()['img_signature'] == compact


def test_properties(rsa_pki, data):
    params = rsa_pki.params(data, 'RSA-PSS', 'SHA-384')
    properties = SignatureSpec.from_params(params).properties()
    fingerprint = hashlib.sha256(rsa_pki.leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert properties == {
        'img_signature': params['value'],
        'img_signature_hash_method': 'SHA-384',
        'img_signature_key_type': 'RSA-PSS',
        'img_signature_certificate_fingerprint': 'sha256:' + fingerprint,
    }
    assert all(isinstance(value, str) for value in properties.values())


def test_der_certificate_and_full_chain_file(tmp_path, data):
    """A DER signing certificate; a PEM file with the intermediate after the signing certificate and only the root trusted."""
    pki = Pki(tmp_path, 'SECP384R1')
    der = tmp_path / 'signer.der'
    der.write_bytes(pki.leaf.public_bytes(serialization.Encoding.DER))
    feed(SignatureSpec.from_params(pki.params(data, 'ECC_SECP384R1', certificate=str(der))), data)

    root_only = write_pem(tmp_path / 'root.pem', pki.root)
    message = refused(SignatureError, pki.params(data, 'ECC_SECP384R1', trusted_certs=root_only))
    assert ("the signing certificate 'CN=Image Signer,O=vmimages test', issued by 'CN=Test Intermediate CA,O=vmimages test', "
            "does not chain to signature.trusted_certs '%s'" % root_only) in message
    full_chain = write_pem(tmp_path / 'fullchain.pem', pki.leaf, pki.intermediate)
    feed(SignatureSpec.from_params(pki.params(data, 'ECC_SECP384R1', certificate=full_chain, trusted_certs=root_only)), data)
    # The intermediate of the certificate file never anchors the chain: only trusted_certs does.
    intermediate_only = write_pem(tmp_path / 'intermediate.pem', pki.intermediate)
    message = refused(SignatureError, pki.params(data, 'ECC_SECP384R1', certificate=full_chain, trusted_certs=intermediate_only))
    assert "the certificate 'CN=Test Intermediate CA,O=vmimages test' (in the chain of the signing certificate" in message
    assert "issued by 'CN=Test Root CA,O=vmimages test'" in message


def test_expired_and_not_yet_valid_signing_certificate(tmp_path, data):
    expired = Pki(tmp_path, 'RSA', leaf=dict(days=(-30, -2)))
    message = refused(SignatureError, expired.params(data, 'RSA-PSS'))
    assert "the signing certificate 'CN=Image Signer,O=vmimages test' (signature.certificate '%s') expired on " % expired.certificate in message
    assert (NOW - 2 * DAY).strftime('%Y-%m-%d') in message and (NOW - 30 * DAY).strftime('%Y-%m-%d') in message

    future = Pki(tmp_path, 'RSA', leaf=dict(days=(2, 30)))
    message = refused(SignatureError, future.params(data, 'RSA-PSS'))
    assert 'is not valid yet: valid from %s' % (NOW + 2 * DAY).strftime('%Y-%m-%d') in message


def test_check_trust_again_later(rsa_pki, data):
    spec = SignatureSpec.from_params(rsa_pki.params(data, 'RSA-PSS'))
    spec.check_trust(NOW.replace(tzinfo=None) + DAY)
    with pytest.raises(SignatureError, match='expired on'):
        spec.check_trust(NOW + 31 * DAY)
    with pytest.raises(SignatureError, match='is not valid yet'):
        spec.check_trust(NOW - 2 * DAY)


def test_expired_intermediate(tmp_path, data):
    pki = Pki(tmp_path, 'RSA', intermediate=dict(days=(-30, -1)))
    message = refused(SignatureError, pki.params(data, 'RSA-PSS'))
    assert "the issuer 'CN=Test Intermediate CA,O=vmimages test' expired on" in message


def test_untrusted_chains(tmp_path, data):
    """A signing certificate of another CA; one that names our intermediate as issuer but was signed by another key."""
    pki = Pki(tmp_path, 'RSA')
    other_root = certificate(u'Other Root CA', key('RSA', 'other'), ca=True)
    stranger = certificate(u'Stranger', pki.key, (other_root, key('RSA', 'other')))
    message = refused(SignatureError, pki.params(data, 'RSA-PSS', certificate=write_pem(tmp_path / 'stranger.pem', stranger)))
    assert ("the signing certificate 'CN=Stranger,O=vmimages test', issued by 'CN=Other Root CA,O=vmimages test', does not chain to "
            "signature.trusted_certs '%s': no certificate there (nor in signature.certificate) is its issuer" % pki.trusted_certs) in message

    impostor = certificate(u'Image Signer', pki.key, (pki.intermediate, key('RSA', 'other')))
    message = refused(SignatureError, pki.params(data, 'RSA-PSS', certificate=write_pem(tmp_path / 'impostor.pem', impostor)))
    assert "'CN=Test Intermediate CA,O=vmimages test' has the issuer's name but its key did not sign it" in message


def test_self_signed_signing_certificate(tmp_path, data):
    """Trusted only when it is itself in trusted_certs."""
    pki = Pki(tmp_path, 'DSA')
    alone = write_pem(tmp_path / 'alone.pem', certificate(u'Lone Signer', pki.key))
    message = refused(SignatureError, pki.params(data, 'DSA', certificate=alone))
    assert "the certificate 'CN=Lone Signer,O=vmimages test' (in the chain of signature.certificate '%s') is self-signed" % alone in message
    feed(SignatureSpec.from_params(pki.params(data, 'DSA', certificate=alone, trusted_certs=alone)), data)


def test_ca_constraints(tmp_path, data):
    """As cursive: issuers must be CAs allowed to sign certificates, within their path length."""
    not_ca = Pki(tmp_path, 'SECP384R1', intermediate=dict(ca=False))
    message = refused(SignatureError, not_ca.params(data, 'ECC_SECP384R1'))
    assert "the issuer 'CN=Test Intermediate CA,O=vmimages test' is not a CA (basicConstraints)" in message
    short = Pki(tmp_path, 'SECP384R1', root=dict(path_length=0))
    message = refused(SignatureError, short.params(data, 'ECC_SECP384R1'))
    assert "the CA certificate 'CN=Test Root CA,O=vmimages test' allows 0 intermediate CA certificates below it" in message
    feed(SignatureSpec.from_params(Pki(tmp_path, 'SECP384R1', root=dict(path_length=1)).params(data, 'ECC_SECP384R1')), data)


def test_wrong_key_type(tmp_path, data):
    rsa_params = Pki(tmp_path / 'r', 'RSA').params(data, 'RSA-PSS')
    message = refused(SignatureError, rsa_params, key_type='ECC_SECP384R1')
    assert "signature.key_type ECC_SECP384R1 (curve secp384r1) does not match the certificate 'CN=Image Signer,O=vmimages test'" in message
    assert 'it holds an RSA key (2048 bits), which needs key_type RSA-PSS' in message
    assert 'holds an RSA key' in refused(SignatureError, rsa_params, key_type='DSA')

    p521_params = Pki(tmp_path / 'e', 'SECP521R1').params(data, 'ECC_SECP521R1')
    message = refused(SignatureError, p521_params, key_type='ECC_SECP384R1')
    assert 'it holds an ECC key on curve secp521r1, which needs key_type ECC_SECP521R1' in message
    assert 'which needs key_type ECC_SECP521R1' in refused(SignatureError, p521_params, key_type='RSA-PSS')

    p256 = Pki(tmp_path / 'p', 'SECP256R1')
    message = refused(SignatureError, p256.params(data, 'ECC_SECP384R1'))
    assert 'an ECC key on curve secp256r1, a curve image signatures do not accept' in message


def test_bad_option_values(rsa_pki, data):
    params = rsa_pki.params(data, 'RSA-PSS')
    message = refused(InvalidArgument, params, hash_method='MD5')
    assert message == "signature.hash_method 'MD5' is not supported: use one of SHA-224, SHA-256, SHA-384, SHA-512"
    message = refused(InvalidArgument, params, key_type='ECC_SECP256R1')
    assert message.startswith("signature.key_type 'ECC_SECP256R1' is not supported: use one of RSA-PSS, ECC_SECT571K1, ")
    assert refused(InvalidArgument, params, value=None) == (
        'signature needs value, hash_method, key_type, certificate, trusted_certs: missing value')
    with pytest.raises(InvalidArgument, match='missing key_type, trusted_certs$'):
        SignatureSpec.from_params(dict(value='AAAA', hash_method='SHA-256', certificate='/x'))
    with pytest.raises(InvalidArgument, match='signature must be a dictionary'):
        SignatureSpec.from_params('AAAA')
    for value in ('not base64 at all!', params['value'][:-1], '====', params['value'].replace('+', '-') + '-_'):
        assert refused(InvalidArgument, params, value=value).startswith('signature.value is not base64: ')


@pytest.mark.parametrize('option', ['certificate', 'trusted_certs'])
def test_bad_certificate_files(rsa_pki, data, tmp_path, option):
    params = rsa_pki.params(data, 'RSA-PSS')

    def message(path, content=None):
        if content is not None:
            (tmp_path / path).write_bytes(content)
            path = str(tmp_path / path)
        return refused(InvalidArgument, params, **{option: path})

    assert message('signer.pem') == "signature.%s 'signer.pem' is not an absolute path: give the absolute path of the file on the managed host" % option
    assert message(str(tmp_path / 'nothing.pem')).endswith("'%s' does not exist on the managed host" % (tmp_path / 'nothing.pem'))
    assert 'is not an absolute path' in message(str(tmp_path) + '/\x00.pem')
    assert message(str(tmp_path)).endswith('is not a regular file')
    assert message(rsa_pki.certificate + '/signer.pem').endswith('cannot be read: Not a directory')
    assert message('garbage.pem', os.urandom(3000)).endswith(NO_CERTIFICATE)
    assert message('empty.pem', b'').endswith('is empty: it must hold PEM certificates')
    assert message('blank.pem', b'\n\n').endswith('is empty: it must hold PEM certificates')
    private_key = (tmp_path / 'key.pem')
    write_key(private_key, key('RSA', 'leaf'))
    assert message('key.pem', private_key.read_bytes()).endswith(NO_CERTIFICATE)
    block = b'-----BEGIN CERTIFICATE-----\n' + base64.encodebytes(os.urandom(600)) + b'-----END CERTIFICATE-----\n'
    assert message('broken.pem', Path(rsa_pki.certificate).read_bytes() + block).endswith(': PEM certificate 2 of 2 is not a valid X.509 certificate')


def test_unreadable_file(rsa_pki, data, tmp_path):
    if os.geteuid() == 0:
        pytest.skip('root reads every file')
    path = tmp_path / 'locked.pem'
    path.write_bytes(Path(rsa_pki.certificate).read_bytes())
    path.chmod(0)
    assert 'cannot be read: Permission denied' in refused(InvalidArgument, rsa_pki.params(data, 'RSA-PSS'), certificate=str(path))


def test_missing_cryptography(monkeypatch, rsa_pki, data):
    """The one mock of this file: None in sys.modules for cryptography and its modules makes importing them fail."""
    params = rsa_pki.params(data, 'RSA-PSS')
    for name in list(sys.modules):
        if name == 'cryptography' or name.startswith('cryptography.'):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(InvalidArgument) as caught:
        SignatureSpec.from_params(params)
    assert str(caught.value) == ('image signatures need the Python package cryptography on the managed host: '
                                 'install python3-cryptography (Debian/Ubuntu) or pip install cryptography')


def openssl(*arguments):
    subprocess.run(('openssl',) + arguments, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def openssl_signature(private_key_path, payload_path, hash_method, *options):
    signature_path = payload_path + '.sig'
    openssl('dgst', '-' + hash_method.replace('-', '').lower(), '-sign', private_key_path, '-out', signature_path, *options + (payload_path,))
    with open(signature_path, 'rb') as handle:
        return b64(handle.read())


@pytest.mark.skipif(not shutil.which('openssl'), reason='no openssl command')
def test_openssl_command_line_signature(rsa_pki, data, tmp_path):
    """Glance's documented workflow: openssl dgst -sign with PSS padding, whose default salt is the largest."""
    payload = tmp_path / 'image.raw'
    payload.write_bytes(data)
    value = openssl_signature(write_key(tmp_path / 'signer.key', rsa_pki.key), str(payload), 'SHA-256', '-sigopt', 'rsa_padding_mode:pss')
    feed(SignatureSpec.from_params(rsa_pki.params(data, 'RSA-PSS', value=value)), data)


DEBIAN_SCRIPT = r'''
import json, sys
sys.path.insert(0, sys.argv[1])
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import MultistoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.signatures.verifier import SignatureSpec
results = []
for params, payload_path in json.loads(sys.argv[2]):
    try:
        spec = SignatureSpec.from_params(params)
        verifier = spec.verifier()
        with open(payload_path, 'rb') as handle:
            for chunk in iter(lambda: handle.read(4 << 20), b''):
                verifier.update(chunk)
        verifier.verify()
        results.append(spec.properties()['img_signature_key_type'])
    except MultistoreError as exc:
        results.append('%s: %s' % (type(exc).__name__, exc))
print(json.dumps(results))
'''


def debian_cryptography():
    """The version of Debian's python3-cryptography, or None."""
    if not os.path.exists(DEBIAN_PYTHON):
        return None
    process = subprocess.run([DEBIAN_PYTHON, '-c', 'import cryptography; print(cryptography.__version__)'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             check=False)
    return process.stdout.decode().strip() if process.returncode == 0 else None


@pytest.mark.skipif(not shutil.which('openssl') or not debian_cryptography(), reason='needs openssl and python3-cryptography for %s' % DEBIAN_PYTHON)
def test_binary_curves_with_debian_cryptography(data, tmp_path):
    """SECT signing keys certified by our intermediate (openssl x509 -req), signatures by openssl dgst; verified by
    Debian's python3 and its python3-cryptography, which also runs the chain checks with that library's API."""
    pki = Pki(tmp_path, 'SECP384R1')
    payload, forged = tmp_path / 'image.raw', tmp_path / 'forged.raw'
    payload.write_bytes(data)
    forged.write_bytes(flip_bit(data, 3))
    ca_key = write_key(tmp_path / 'intermediate.key', key('SECP384R1', 'intermediate'))
    ca_certificate = write_pem(tmp_path / 'intermediate.pem', pki.intermediate)
    cases, expected = [], []
    for curve in BINARY_CURVES:
        key_path, request, certificate_path = (str(tmp_path / (curve + suffix)) for suffix in ('.key', '.csr', '.pem'))
        openssl('ecparam', '-name', curve.lower(), '-genkey', '-noout', '-out', key_path)
        openssl('req', '-new', '-key', key_path, '-subj', '/O=vmimages test/CN=Signer %s' % curve, '-out', request)
        openssl('x509', '-req', '-in', request, '-CA', ca_certificate, '-CAkey', ca_key, '-CAcreateserial', '-days', '2', '-sha384', '-out', certificate_path)
        params = dict(value=openssl_signature(key_path, str(payload), 'SHA-384'), hash_method='SHA-384', key_type='ECC_' + curve,
                      certificate=certificate_path, trusted_certs=pki.trusted_certs)
        cases += [(params, str(payload)), (params, str(forged))]
        expected += ['ECC_' + curve, 'SignatureError: signature verification failed for the image data']
    rsa_pki, dsa_pki = Pki(tmp_path / 'rsa', 'RSA'), Pki(tmp_path / 'dsa', 'DSA')
    expired = Pki(tmp_path / 'expired', 'DSA', leaf=dict(days=(-9, -1)))
    cases += [(rsa_pki.params(data, 'RSA-PSS', 'SHA-512'), str(payload)), (dsa_pki.params(data, 'DSA'), str(payload)),
              (expired.params(data, 'DSA'), str(payload))]
    expected += ['RSA-PSS', 'DSA', "SignatureError: the signing certificate 'CN=Image Signer,O=vmimages test'"]

    tree = os.path.abspath(verifier_module.__file__).rsplit(os.sep + 'ansible_collections' + os.sep, 1)[0]
    process = subprocess.run([DEBIAN_PYTHON, '-c', DEBIAN_SCRIPT, tree, json.dumps(cases)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, PYTHONNOUSERSITE='1'), check=False)
    assert process.returncode == 0, process.stderr.decode()
    results = json.loads(process.stdout.decode())
    assert [result[:len(prefix)] for result, prefix in zip(results, expected)] == expected, results

    if not hasattr(ec, 'SECT409K1'):
        message = refused(InvalidArgument, cases[2][0])
        assert message == 'signature.key_type ECC_SECT409K1: the cryptography library on the managed host does not support the curve sect409k1'
