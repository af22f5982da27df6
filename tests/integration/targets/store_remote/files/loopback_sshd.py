# -*- coding: utf-8 -*-
"""A private sshd on loopback for the store_remote target: own host key, one authorized client key.

Usage: loopback_sshd.py DIR LIFETIME. Writes DIR/sshd.json (port, client key, known_hosts) once sshd
listens, runs until LIFETIME seconds passed or DIR disappears, then stops sshd.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import socket
import subprocess
import sys
import time


def main():
    directory, lifetime = sys.argv[1], int(sys.argv[2])
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    host_key = os.path.join(directory, 'host_key')
    client_key = os.path.join(directory, 'client_key')
    for key in (host_key, client_key):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key], check=True)
    with open(client_key + '.pub') as source, open(os.path.join(directory, 'authorized_keys'), 'w') as target:
        target.write(source.read())
    with open(host_key + '.pub') as handle:
        host_public = ' '.join(handle.read().split()[:2])
    with open(os.path.join(directory, 'known_hosts'), 'w') as handle:
        handle.write('127.0.0.1 %s\n' % host_public)
    with open(os.path.join(directory, 'wrong_known_hosts'), 'w') as handle:
        handle.write('127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMUb8fJc6p2Ay5bJ5FqQhW7oMhHjJ1Y0mW0nqXjJb6Xo\n')
    config = os.path.join(directory, 'sshd_config')
    with open(config, 'w') as handle:
        handle.write('\n'.join(['Port %d' % port, 'ListenAddress 127.0.0.1', 'ListenAddress 127.0.0.5', 'HostKey %s' % host_key,
                                'AuthorizedKeysFile %s' % os.path.join(directory, 'authorized_keys'),
                                'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'UsePAM no', 'StrictModes no',
                                'PidFile %s' % os.path.join(directory, 'sshd.pid'), 'LogLevel VERBOSE', '']))
    if not os.path.isdir('/run/sshd'):
        os.makedirs('/run/sshd', 0o755)
    log = os.path.join(directory, 'sshd.log')
    server = subprocess.Popen(['/usr/sbin/sshd', '-D', '-f', config, '-E', log])
    try:
        deadline = time.time() + 15
        while True:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit('sshd did not start, see %s' % log)
                time.sleep(0.05)
        with open(os.path.join(directory, 'sshd.json.tmp'), 'w') as handle:
            json.dump({'port': port, 'private_key': client_key, 'known_hosts': os.path.join(directory, 'known_hosts'),
                       'wrong_known_hosts': os.path.join(directory, 'wrong_known_hosts'), 'log': log}, handle)
        os.rename(os.path.join(directory, 'sshd.json.tmp'), os.path.join(directory, 'sshd.json'))
        end = time.time() + lifetime
        while time.time() < end and os.path.isdir(directory) and not os.path.exists(os.path.join(directory, 'stop')):
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait()


if __name__ == '__main__':
    main()
