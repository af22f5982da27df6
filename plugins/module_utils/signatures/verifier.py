# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image signature verification the way Glance does it (the cursive library).

The holder of a certificate's private key signs the image bytes as uploaded. The data is hashed chunk
by chunk while it streams and the digest is verified at the end (``utils.Prehashed``), so an image of
any size is never buffered. The certificate must be in its validity period and chain to a self-signed
certificate of ``trusted_certs``: each link is checked by issuer name and by the issuer's signature
over the certificate, as cursive's certificate_utils does.

cryptography is imported only when a signature is checked: the engine must import on hosts without it.
Hosts run Debian 12's python3-cryptography 38, so only its API is used (no verify_directly_issued_by,
no load_pem_x509_certificates, naive validity dates).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import datetime
import errno
import os
import re
import stat
import types

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument, SignatureError

HASH_METHODS = ('SHA-224', 'SHA-256', 'SHA-384', 'SHA-512')
# cursive's curves: only those with keys of 384 bits or more.
ECC_CURVES = ('sect571k1', 'sect409k1', 'sect571r1', 'sect409r1', 'secp384r1', 'secp521r1')
KEY_TYPES = ('RSA-PSS',) + tuple('ECC_' + curve.upper() for curve in ECC_CURVES) + ('DSA',)
OPTIONS = ('value', 'hash_method', 'key_type', 'certificate', 'trusted_certs')

NEEDS_CRYPTOGRAPHY = ('image signatures need the Python package cryptography on the managed host: '
                      'install python3-cryptography (Debian/Ubuntu) or pip install cryptography')
MAX_CERTIFICATE_FILE = 16 * 1024 * 1024  # a whole distribution's CA bundle is about 200 KiB
MAX_CHAIN = 10
PEM_CERTIFICATE = re.compile(br'-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----', re.DOTALL)
UTC = datetime.timezone.utc


def _cryptography():
    """The cryptography modules, imported on first use so that the engine imports without them."""
    try:
        from cryptography import exceptions, x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils
    except ImportError:
        raise InvalidArgument(NEEDS_CRYPTOGRAPHY)
    return types.SimpleNamespace(exceptions=exceptions, x509=x509, hashes=hashes, dsa=dsa, ec=ec,
                                 ed448=ed448, ed25519=ed25519, padding=padding, rsa=rsa, utils=utils)


def _choice(params, option, choices):
    value = params[option]
    if value not in choices:
        raise InvalidArgument('signature.%s %r is not supported: use one of %s' % (option, value, ', '.join(choices)))
    return value


def _decode_signature(value):
    """The signature bytes; line breaks and spaces (as `base64` or `openssl base64` write) are ignored."""
    if not isinstance(value, str):
        raise InvalidArgument('signature.value must be a base64 string, not %s' % type(value).__name__)
    compact = ''.join(value.split())
    try:
        signature = base64.b64decode(compact.encode('ascii'), validate=True)
    except (binascii.Error, ValueError):
        signature = b''
    if not signature:
        raise InvalidArgument('signature.value is not base64: give the signature file encoded as standard base64 (for example `base64 -w0 image.sig`)')
    return compact, signature


def _read_certificates(crypto, option, path):
    """The certificates of a file: every CERTIFICATE block of a PEM file in order, or the one of a DER file."""
    where = "signature.%s '%s'" % (option, path)
    if not isinstance(path, str) or not os.path.isabs(path) or '\x00' in path:
        raise InvalidArgument('%s is not an absolute path: give the absolute path of the file on the managed host' % where)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise InvalidArgument('%s is not a regular file' % where)
        with open(path, 'rb') as handle:
            data = handle.read(MAX_CERTIFICATE_FILE + 1)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            raise InvalidArgument('%s does not exist on the managed host' % where)
        raise InvalidArgument('%s cannot be read: %s' % (where, exc.strerror or exc))
    if len(data) > MAX_CERTIFICATE_FILE:
        raise InvalidArgument('%s is larger than %d MiB: it is not a certificate file' % (where, MAX_CERTIFICATE_FILE // (1024 * 1024)))
    blocks = PEM_CERTIFICATE.findall(data)
    certificates = []
    for number, block in enumerate(blocks, 1):
        try:
            certificates.append(crypto.x509.load_pem_x509_certificate(block))
        except ValueError:
            raise InvalidArgument('%s: PEM certificate %d of %d is not a valid X.509 certificate' % (where, number, len(blocks)))
    if certificates:
        return certificates
    if not data.strip():
        raise InvalidArgument('%s is empty: it must hold PEM certificates' % where)
    if b'-----BEGIN' not in data:
        try:
            return [crypto.x509.load_der_x509_certificate(data)]
        except ValueError:
            pass
    raise InvalidArgument('%s holds no certificate: give PEM certificates (-----BEGIN CERTIFICATE-----) or one DER certificate' % where)


def _name(certificate):
    return certificate.subject.rfc4514_string() or '(empty subject)'


def _issuer_name(certificate):
    return certificate.issuer.rfc4514_string() or '(empty issuer)'


def _date(moment):
    return moment.strftime('%Y-%m-%d %H:%M:%S UTC')


def _validity(certificate):
    """(not before, not after) as aware UTC datetimes; cryptography before 42 has naive ones only."""
    try:
        return certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except AttributeError:
        return certificate.not_valid_before.replace(tzinfo=UTC), certificate.not_valid_after.replace(tzinfo=UTC)


def _outside_validity(certificate, now):
    """Why certificate is not valid at now, or None."""
    not_before, not_after = _validity(certificate)
    if now < not_before:
        return 'is not valid yet: valid from %s to %s, and it is %s now' % (_date(not_before), _date(not_after), _date(now))
    if now > not_after:
        return 'expired on %s (valid from %s); it is %s now' % (_date(not_after), _date(not_before), _date(now))
    return None


def _why_not_ca(crypto, certificate):
    """Why certificate may not issue certificates, or None: cursive wants basicConstraints CA and keyUsage keyCertSign."""
    try:
        extensions = certificate.extensions
    except ValueError:
        return 'has extensions that cannot be parsed'
    try:
        if not extensions.get_extension_for_class(crypto.x509.BasicConstraints).value.ca:
            return 'is not a CA (basicConstraints)'
    except crypto.x509.ExtensionNotFound:
        return 'has no basicConstraints extension'
    try:
        if not extensions.get_extension_for_class(crypto.x509.KeyUsage).value.key_cert_sign:
            return 'may not sign certificates (keyUsage has no keyCertSign)'
    except crypto.x509.ExtensionNotFound:
        return 'has no keyUsage extension'
    return None


def _signed_by(crypto, issuer, certificate):
    """Whether the key of issuer made the signature of certificate (checked on its TBS part)."""
    signature, signed = certificate.signature, certificate.tbs_certificate_bytes
    try:
        key = issuer.public_key()
        if isinstance(key, crypto.rsa.RSAPublicKey):
            key.verify(signature, signed, crypto.padding.PKCS1v15(), certificate.signature_hash_algorithm)
        elif isinstance(key, crypto.ec.EllipticCurvePublicKey):
            key.verify(signature, signed, crypto.ec.ECDSA(certificate.signature_hash_algorithm))
        elif isinstance(key, crypto.dsa.DSAPublicKey):
            key.verify(signature, signed, certificate.signature_hash_algorithm)
        elif isinstance(key, (crypto.ed25519.Ed25519PublicKey, crypto.ed448.Ed448PublicKey)):
            key.verify(signature, signed)
        else:
            return False
    except (crypto.exceptions.InvalidSignature, crypto.exceptions.UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _describe_key(crypto, key):
    """What a certificate's public key is, and the key_type it would need."""
    if isinstance(key, crypto.rsa.RSAPublicKey):
        return 'an RSA key (%d bits), which needs key_type RSA-PSS' % key.key_size
    if isinstance(key, crypto.dsa.DSAPublicKey):
        return 'a DSA key (%d bits), which needs key_type DSA' % key.key_size
    if isinstance(key, crypto.ec.EllipticCurvePublicKey):
        key_type = 'ECC_' + key.curve.name.upper()
        if key_type in KEY_TYPES:
            return 'an ECC key on curve %s, which needs key_type %s' % (key.curve.name, key_type)
        return 'an ECC key on curve %s, a curve image signatures do not accept (curves: %s)' % (key.curve.name, ', '.join(ECC_CURVES))
    return 'a %s, a key type image signatures do not accept' % type(key).__name__.lstrip('_')


class SignatureSpec:
    """A checked ``signature`` option: the decoded signature, its certificate and the certificates trusted to vouch for it."""

    def __init__(self, crypto, value, signature, hash_method, key_type, paths, certificates, trusted):
        self._crypto = crypto
        self._value = value
        self._signature = signature
        self.hash_method = hash_method
        self.key_type = key_type
        self.certificate_path, self.trusted_certs_path = paths
        # The certificate file may carry intermediate CA certificates after the signing one (a "full chain"
        # file); they help build the chain but are never trusted themselves.
        self._certificate = certificates[0]
        self._intermediates = certificates[1:]
        self._trusted = trusted
        self.subject = _name(self._certificate)
        fingerprint = self._certificate.fingerprint(crypto.hashes.SHA256())
        self.fingerprint = 'sha256:' + binascii.hexlify(fingerprint).decode('ascii')
        self._public_key = None

    @classmethod
    def from_params(cls, params):
        """Check every option, load the files and check trust; raises InvalidArgument or SignatureError."""
        if not isinstance(params, dict):
            raise InvalidArgument('signature must be a dictionary with the options %s' % ', '.join(OPTIONS))
        missing = [option for option in OPTIONS if params.get(option) in (None, '')]
        if missing:
            raise InvalidArgument('signature needs %s: missing %s' % (', '.join(OPTIONS), ', '.join(missing)))
        hash_method = _choice(params, 'hash_method', HASH_METHODS)
        key_type = _choice(params, 'key_type', KEY_TYPES)
        value, signature = _decode_signature(params['value'])
        crypto = _cryptography()
        certificates = _read_certificates(crypto, 'certificate', params['certificate'])
        trusted = _read_certificates(crypto, 'trusted_certs', params['trusted_certs'])
        spec = cls(crypto, value, signature, hash_method, key_type, (params['certificate'], params['trusted_certs']), certificates, trusted)
        spec._load_public_key()
        spec.check_trust()
        return spec

    def _load_public_key(self):
        """The signing key, checked against key_type (cursive's SignatureKeyType lookup and isinstance check)."""
        crypto = self._crypto
        where = "the certificate '%s' (signature.certificate '%s')" % (self.subject, self.certificate_path)
        curve = self.key_type[len('ECC_'):].lower() if self.key_type.startswith('ECC_') else None
        try:
            key = self._certificate.public_key()
        except (crypto.exceptions.UnsupportedAlgorithm, ValueError) as exc:
            if curve and not hasattr(crypto.ec, curve.upper()):
                raise InvalidArgument('signature.key_type %s: the cryptography library on the managed host does not support the curve %s'
                                      % (self.key_type, curve))
            raise InvalidArgument('the public key of %s cannot be loaded by the cryptography library on the managed host: %s' % (where, exc))
        if self.key_type == 'RSA-PSS':
            matches = isinstance(key, crypto.rsa.RSAPublicKey)
        elif self.key_type == 'DSA':
            matches = isinstance(key, crypto.dsa.DSAPublicKey)
        else:
            matches = isinstance(key, crypto.ec.EllipticCurvePublicKey) and key.curve.name == curve
        if not matches:
            raise SignatureError('signature.key_type %s%s does not match %s: it holds %s'
                                 % (self.key_type, ' (curve %s)' % curve if curve else '', where, _describe_key(crypto, key)))
        self._public_key = key

    def check_trust(self, now=None):
        """Raise SignatureError unless the certificate is valid at now (default: the current time) and chains to trusted_certs."""
        if now is None:
            now = datetime.datetime.now(UTC)
        elif now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        problem = _outside_validity(self._certificate, now)
        if problem:
            raise SignatureError("the signing certificate '%s' (signature.certificate '%s') %s"
                                 % (self.subject, self.certificate_path, problem))
        self._check_path_lengths(self._chain(now))

    def _chain(self, now):
        """The certificates from the signing one up to a self-signed one of trusted_certs (cursive's chain building)."""
        chain = [self._certificate]
        while True:
            current = chain[-1]
            if current.issuer == current.subject and _signed_by(self._crypto, current, current):
                if current in self._trusted:
                    return chain
                raise SignatureError("the certificate '%s' (in the chain of signature.certificate '%s') is self-signed but not in "
                                     "signature.trusted_certs '%s'" % (_name(current), self.certificate_path, self.trusted_certs_path))
            issuer = self._issuer(current, now)
            if issuer in chain or len(chain) >= MAX_CHAIN:
                raise SignatureError("the chain of the signing certificate '%s' loops or is longer than %d certificates" % (self.subject, MAX_CHAIN))
            chain.append(issuer)

    def _issuer(self, certificate, now):
        """The certificate among trusted_certs and the intermediates that issued certificate, valid and allowed to."""
        refusals = []
        for candidate in self._trusted + self._intermediates:
            if candidate.subject != certificate.issuer:
                continue
            if not _signed_by(self._crypto, candidate, certificate):
                refusals.append("'%s' has the issuer's name but its key did not sign it" % _name(candidate))
                continue
            problem = _outside_validity(candidate, now) or _why_not_ca(self._crypto, candidate)
            if problem:
                refusals.append("the issuer '%s' %s" % (_name(candidate), problem))
                continue
            return candidate
        if certificate is self._certificate:
            what = "the signing certificate '%s'" % self.subject
        else:
            what = "the certificate '%s' (in the chain of the signing certificate '%s')" % (_name(certificate), self.subject)
        raise SignatureError("%s, issued by '%s', does not chain to signature.trusted_certs '%s': %s"
                             % (what, _issuer_name(certificate), self.trusted_certs_path,
                                '; '.join(refusals) if refusals else 'no certificate there (nor in signature.certificate) is its issuer'))

    def _check_path_lengths(self, chain):
        """Each CA's pathLenConstraint must allow the intermediate CAs below it (cursive's enforce_path_length)."""
        for index, certificate in enumerate(chain[1:], 1):
            limit = certificate.extensions.get_extension_for_class(self._crypto.x509.BasicConstraints).value.path_length
            if limit is not None and limit < index - 1:
                raise SignatureError("the CA certificate '%s' allows %d intermediate CA certificates below it, the chain of the signing "
                                     "certificate '%s' has %d" % (_name(certificate), limit, self.subject, index - 1))

    def verifier(self):
        """A fresh incremental verifier: update(chunk) for each chunk of the image in order, then verify()."""
        return _Verifier(self._crypto.hashes, getattr(self._crypto.hashes, self.hash_method.replace('-', ''))(), self._verify_digest)

    def properties(self):
        """The image properties that record the signature (Glance's names; the certificate by fingerprint, not by key manager id)."""
        return {
            'img_signature': self._value,
            'img_signature_hash_method': self.hash_method,
            'img_signature_key_type': self.key_type,
            'img_signature_certificate_fingerprint': self.fingerprint,
        }

    def _verify_digest(self, digest, algorithm):
        """Raise SignatureError unless the signature was made over the data whose digest this is."""
        crypto = self._crypto
        prehashed = crypto.utils.Prehashed(algorithm)
        try:
            if self.key_type == 'RSA-PSS':
                # As cursive: MGF1 with the same hash, and the largest salt.
                pss = crypto.padding.PSS(mgf=crypto.padding.MGF1(algorithm), salt_length=crypto.padding.PSS.MAX_LENGTH)
                self._public_key.verify(self._signature, digest, pss, prehashed)
            elif self.key_type == 'DSA':
                self._public_key.verify(self._signature, digest, prehashed)
            else:
                self._public_key.verify(self._signature, digest, crypto.ec.ECDSA(prehashed))
        except crypto.exceptions.InvalidSignature:
            raise SignatureError("signature verification failed for the image data: the signature (%s, %s) was not made over these bytes "
                                 "with the key of the certificate '%s' (%s); the image or the signature was altered, or they do not belong "
                                 "together; nothing was stored" % (self.key_type, self.hash_method, self.subject, self.fingerprint))


class _Verifier:
    """Hashes the image as it streams; verify() checks the signature over the digest."""

    def __init__(self, hashes, algorithm, verify_digest):
        self._algorithm = algorithm
        self._hash = hashes.Hash(algorithm)
        self._verify_digest = verify_digest
        self._digest = None

    def update(self, data):
        self._hash.update(data)

    def verify(self):
        """Raise SignatureError unless the signature matches the data passed to update()."""
        if self._digest is None:
            self._digest = self._hash.finalize()
        self._verify_digest(self._digest, self._algorithm)
