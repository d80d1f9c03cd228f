#!/usr/bin/env python3
"""Writes the Debian package's /etc/mailward/mailward.toml: the embedded
default configuration (`mailward config default`, read on stdin) with the
Debian paths and the service user. Every replacement must match exactly
once, so a change to the default that moves one of these lines fails the
package build instead of shipping a half-edited file."""
import sys

EDITS = [
    ('# user = "mailward"\n# group = "mailward"\n',
     'user = "mailward"\ngroup = "mailward"\n'),
    ('data_dir = "mailward-data"\n', 'data_dir = "/var/lib/mailward"\n'),
    ('# admin_socket = "mailward-data/admin.sock"\n',
     'admin_socket = "/run/mailward/admin.sock"\n'),
    ('listen_on = ["127.0.0.1:2525"]\n',
     '# The package listens on port 25 of every IPv4 address (the unit gives\n'
     '# it CAP_NET_BIND_SERVICE); Postfix or another MTA on the same host\n'
     '# needs another port here.\n'
     'listen_on = ["0.0.0.0:25"]\n'),
    ('# raw_destination = "mailward-data/stats/raw.log"\n',
     'raw_destination = "/var/log/mailward/raw.log"\n'),
    ('destination = "stderr"\n',
     'destination = "file:/var/log/mailward/mailward.log"\n'),
    ('rotate_size = "10MiB"\n',
     '# logrotate rotates the files (/etc/logrotate.d/mailward).\n'
     'rotate_size = "0"\n'),
    # What the default says of itself is not true of this file.
    ('# As shipped, Mailward listens on 127.0.0.1:2525, forwards all mail to\n'
     '# 127.0.0.1:2526, serves metrics on 127.0.0.1:9925, looks for an AgentX\n'
     '# master at tcp:127.0.0.1:705, and keeps its state under ./mailward-data/.\n',
     '# As packaged, Mailward listens on port 25 of every IPv4 address, forwards\n'
     '# all mail to 127.0.0.1:2526 until [[route]] says otherwise, serves metrics\n'
     '# on 127.0.0.1:9925, looks for an AgentX master at tcp:127.0.0.1:705, and\n'
     '# keeps its state under /var/lib/mailward/.\n'),
    # The defaults that follow data_dir, shown where they are on Debian.
    ('# dir = "mailward-data/spam"\n', '# dir = "/var/lib/mailward/spam"\n'),
    ('# av = "mailward-data/bases/av"\n', '# av = "/var/lib/mailward/bases/av"\n'),
    ('# destination = "mailward-data/stats/stats.json"\n',
     '# destination = "/var/lib/mailward/stats/stats.json"\n'),
]

text = sys.stdin.read()
header = (
    "# /etc/mailward/mailward.toml: Mailward's configuration on Debian.\n"
    "# The embedded default (`mailward config default`) with Debian's paths:\n"
    "# state in /var/lib/mailward, the admin socket in /run/mailward, logs and\n"
    "# raw records in /var/log/mailward, run as the user mailward. Set\n"
    "# protected_domains, relay_networks and [[route]] for your site, check it\n"
    "# with `mailward check-config --config /etc/mailward/mailward.toml`, then\n"
    "# `systemctl enable --now mailward`.\n\n"
)
for old, new in EDITS:
    count = text.count(old)
    if count != 1:
        sys.exit(f"debian-config.py: expected {old!r} once in the default, found it {count} times")
    text = text.replace(old, new)
sys.stdout.write(header + text)
