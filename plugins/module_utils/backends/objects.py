# -*- coding: utf-8 -*-
# Copyright: vmimages.multistore contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the two object-store back ends (s3, swift) declare alike: a bucket or container of deduplicated slices."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.vmimages.multistore.plugins.module_utils.backends.backend import Option
from ansible_collections.vmimages.multistore.plugins.module_utils.common.errors import InvalidArgument
from ansible_collections.vmimages.multistore.plugins.module_utils.common.validation import check_bucket_name, check_endpoint, check_key_prefix


def object_options(container_key):
    return (
        Option('endpoint'),
        Option(container_key),
        Option('prefix'),
        Option('access_key', shown=False),
        Option('secret_key', secret=True),
        Option('region'),
        Option('validate_certs', type='bool', default=True, shown=False),
    )


def configure_objects(params, container_key):
    """The declaration of an s3 bucket or a swift container (the keys checked to come together)."""
    declaration = {container_key: check_bucket_name(params.get(container_key), container_key),
                   'prefix': check_key_prefix(params.get('prefix')), 'validate_certs': params.get('validate_certs', True) is not False}
    if params.get('endpoint'):
        declaration['endpoint'] = check_endpoint(params['endpoint'])
    if params.get('region'):
        declaration['region'] = params['region']
    if bool(params.get('access_key')) != bool(params.get('secret_key')):
        raise InvalidArgument('give access_key and secret_key together')
    if params.get('access_key'):
        declaration['access_key'] = params['access_key']
        declaration['secret_key'] = params['secret_key']
    return declaration
