# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3 store: a bucket on Ceph radosgw, MinIO or AWS S3, through boto3 (layout: see repository.py and objectstore.py).

Configuration (the store's declaration): ``endpoint`` (URL; empty for AWS), ``bucket``, ``access_key``,
``secret_key``, ``region``, ``validate_certs`` (default true), ``prefix``. Buckets are addressed by path
(what radosgw and MinIO expect) unless the endpoint is AWS's.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import threading

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, this keeps pylint's py2 checks quiet
    from urlparse import urlsplit  # noqa

try:
    import boto3
    import botocore.auth
    import botocore.config
    import botocore.exceptions
    HAS_BOTO3 = True
except ImportError:
    HAS_BOTO3 = False

from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import StoreError
from ansible_collections.vmimages.multistore.plugins.module_utils.stores.objectstore import (
    CONNECT_TIMEOUT, READ_TIMEOUT, WORKERS, ObjectBlobs, ObjectStore, network_reason)

BUCKET_NAME = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
DEFAULT_REGION = 'us-east-1'
MISSING = ('404', 'NoSuchKey', 'NoSuchBucket', 'NotFound')
DENIED = ('403', 'AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'AllAccessDisabled')


# A slice's name is the sha256 of its bytes, which SigV4 signs as the payload hash (X-Amz-Content-SHA256). botocore
# would hash the 4 MiB again for every PUT (about 1 CPU-second per GB here); the signer below takes the digest the
# pipeline computed instead. The server still hashes the body and refuses it if it differs: the same guarantee.
KNOWN_SHA256 = 'vmimages_multistore_sha256'
KNOWN_SHA256_SIGNER = 's3v4-vmimages-multistore-known-sha256'
_sending = threading.local()  # the sha256 of the slice this thread's put_object is sending

if HAS_BOTO3:
    class KnownSha256S3SigV4Auth(botocore.auth.S3SigV4Auth):
        """S3 SigV4 that signs the payload hash the caller knows (request.context[KNOWN_SHA256]) without hashing the body."""

        def payload(self, request):
            known = request.context.get(KNOWN_SHA256)
            streaming = getattr(self, '_is_streaming_checksum_payload', lambda request: False)(request)  # botocore >= 1.36
            if known and not streaming and self._should_sha256_sign_payload(request):
                return known
            return super(KnownSha256S3SigV4Auth, self).payload(request)

    botocore.auth.AUTH_TYPE_MAPS.setdefault(KNOWN_SHA256_SIGNER, KnownSha256S3SigV4Auth)


def _choose_known_sha256_signer(signature_version=None, context=None, **kwargs):
    """choose-signer handler: our signer for a PutObject of a slice whose sha256 is known, else botocore's choice."""
    known = getattr(_sending, 'sha256', None)
    if known and context is not None and signature_version in ('v4', 's3v4'):
        context[KNOWN_SHA256] = known
        return KNOWN_SHA256_SIGNER
    return None


class S3Blobs(ObjectBlobs):
    kind = 's3'
    library_errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) if HAS_BOTO3 else ()

    def __init__(self, name, config):
        super(S3Blobs, self).__init__(name, config)
        self.endpoint = (config.get('endpoint') or '').rstrip('/')
        self.bucket = config.get('bucket') or ''
        self.region = config.get('region') or DEFAULT_REGION
        self._client = None
        self._client_lock = threading.Lock()

    def config_problem(self):
        if not BUCKET_NAME.match(self.bucket) or '..' in self.bucket:
            return ("bucket %r is not a valid S3 bucket name: use 3-63 lowercase letters, digits, '.' and '-', starting and ending "
                    "with a letter or digit" % self.bucket)
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ('http', 'https') or not parts.hostname:
                return 'endpoint %r is not an http(s) URL such as http://rgw.example:7480' % self.endpoint
            if parts.username or parts.password:
                return 'the endpoint URL must not hold credentials: give access_key and secret_key'
        return None

    def endpoint_url(self):
        return '%s/%s' % (self.endpoint or 'https://s3.%s.amazonaws.com' % self.region, self.bucket)

    def _location_base(self):
        host = urlsplit(self.endpoint).netloc if self.endpoint else 's3.%s.amazonaws.com' % self.region
        return 's3://%s/%s' % (host, self.bucket)

    def client(self):
        if not HAS_BOTO3:
            raise StoreError("store '%s': the s3 store needs boto3 on the host running the task: install python3-boto3" % self.name)
        with self._client_lock:
            if self._client is None:
                options = {
                    'connect_timeout': CONNECT_TIMEOUT, 'read_timeout': READ_TIMEOUT,
                    # One retry: a stopped endpoint fails in seconds, not minutes.
                    'retries': {'total_max_attempts': 2, 'mode': 'standard'},
                    'max_pool_connections': WORKERS + 2,
                    's3': {'addressing_style': 'path' if self.endpoint else 'auto'},
                }
                # botocore >= 1.36 sends CRC32 checksums in aws-chunked bodies by default, which radosgw
                # before Reef and other S3 look-alikes refuse; payload signing (sha256) guards the bytes.
                if 'request_checksum_calculation' in botocore.config.Config.OPTION_DEFAULTS:
                    options.update(request_checksum_calculation='when_required', response_checksum_validation='when_required')
                session = boto3.session.Session()
                self._client = session.client(
                    's3', endpoint_url=self.endpoint or None, region_name=self.region,
                    aws_access_key_id=self.config.get('access_key') or None,
                    aws_secret_access_key=self.config.get('secret_key') or None,
                    verify=bool(self.config.get('validate_certs', True)), config=botocore.config.Config(**options))
                # first: botocore's own choose-signer handlers answer for every operation
                self._client.meta.events.register_first('choose-signer.s3.PutObject', _choose_known_sha256_signer)
            return self._client

    @staticmethod
    def _code(exc):
        if not isinstance(exc, botocore.exceptions.ClientError):
            return None, None
        response = exc.response or {}
        return (response.get('Error') or {}).get('Code'), (response.get('ResponseMetadata') or {}).get('HTTPStatusCode')

    def _missing(self, exc):
        code, status = self._code(exc)
        return code in MISSING or status == 404

    # ---- primitives
    # The client comes first, outside try: without boto3 its StoreError must not meet an except clause naming botocore.
    def _get(self, key):
        client = self.client()
        try:
            response = client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if self._missing(exc):
                return None
            raise
        with response['Body'] as body:
            return body.read()

    def _put(self, key, data):
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    @staticmethod
    def payload(data):
        # A bytearray, not bytes: botocore joins a bytes body to the request head, one more 4 MiB copy per PUT.
        return bytearray(data)

    def _put_slice(self, key, data, sha256):
        client = self.client()
        _sending.sha256 = sha256
        try:
            client.put_object(Bucket=self.bucket, Key=key, Body=data)
        finally:
            _sending.sha256 = None

    def _head(self, key):
        client = self.client()
        try:
            return client.head_object(Bucket=self.bucket, Key=key)['ContentLength']
        except botocore.exceptions.ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def _delete(self, key):
        self.client().delete_object(Bucket=self.bucket, Key=key)

    def _list(self, prefix):
        paginator = self.client().get_paginator('list_objects_v2')
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get('Contents') or ():
                    yield item['Key'], item['Size']
        except botocore.exceptions.ClientError as exc:
            if self._code(exc)[0] != 'NoSuchBucket':
                raise

    def _ensure_container(self):
        client = self.client()
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            if not self._missing(exc):
                raise
        arguments = {'Bucket': self.bucket}
        if not self.endpoint and self.region != DEFAULT_REGION:
            arguments['CreateBucketConfiguration'] = {'LocationConstraint': self.region}
        try:
            client.create_bucket(**arguments)
        except botocore.exceptions.ClientError as exc:
            if self._code(exc)[0] != 'BucketAlreadyOwnedByYou':
                raise

    # ---- errors
    def _unreachable(self, exc):
        return HAS_BOTO3 and isinstance(exc, (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)) and \
            not isinstance(exc, botocore.exceptions.SSLError)

    def _describe_error(self, exc, what):
        where = self.endpoint or 'AWS S3 (%s)' % self.region
        code, status = self._code(exc)
        if code is not None:
            message = ((exc.response or {}).get('Error') or {}).get('Message') or ''
            if code in DENIED or status == 403:
                return ("%s refused access to bucket '%s' (%s%s) to %s: check access_key and secret_key, and that this user may use "
                        "the bucket" % (where, self.bucket, code, ': %s' % message if message and message != code else '', what))
            if code == 'NoSuchBucket':
                return "bucket '%s' does not exist at %s: declare the store with vmimages.multistore.store, which creates it" % (self.bucket, where)
            return 'cannot %s in %s: %s %s%s' % (what, self.endpoint_url(), status, code, ' (%s)' % message if message else '')
        if isinstance(exc, botocore.exceptions.SSLError):
            return ('cannot reach %s: TLS certificate verification failed (%s): install the CA certificate on this host, or set '
                    'validate_certs: false' % (where, network_reason(exc) or exc))
        if self._unreachable(exc):
            return ("cannot reach %s for bucket '%s' (%s): is the S3 service (radosgw, MinIO) running, and reachable from this host?"
                    % (where, self.bucket, network_reason(exc) or exc))
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return 'no credentials for %s: give access_key and secret_key' % where
        return 'cannot %s in %s: %s' % (what, self.endpoint_url(), exc)


class S3Store(ObjectStore):
    kind = 's3'
    blob_class = S3Blobs
