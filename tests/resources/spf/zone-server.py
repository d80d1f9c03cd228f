#!/usr/bin/python3
"""The RFC 7208 test suite's DNS: serves one scenario's zone data over UDP
and TCP on 127.0.0.1, as the suite's own driver (python3-spf's testspf.py)
reads it.

  zone-server.py list SUITE.yml[.gz]            the scenarios and tests, as JSON
  zone-server.py serve SUITE.yml[.gz] N PORT    serves scenario N on PORT

Zone data rules, after testspf.py: an `SPF` record also gives a TXT record
unless the name has TXT records of its own; `TIMEOUT` as a name's only entry
(or after the records, when none is of the asked type; or as the value of
a record of the asked type) means no answer at all; a name that is not
in the zone is NXDOMAIN, and one starting with `error.` times out; a CNAME is
followed one level. Debian packages: python3-dnslib, python3-yaml, and
python3-spf for the suite itself.
"""

import gzip
import json
import socket
import sys
import threading

import yaml
from dnslib import (AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel,
                    DNSRecord)
from dnslib.dns import DNSError
from dnslib.server import BaseResolver, DNSLogger, DNSServer


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def records(name, entries):
    """(type, value) of one name, with the SPF -> TXT copies."""
    out, copies, own_txt = [], [], False
    for e in entries:
        if e == "TIMEOUT":
            out.append(("TIMEOUT", None))
            continue
        for t, v in e.items():
            if t in ("TXT", "SPF") and isinstance(v, str) and v != "TIMEOUT":
                v = [v]
            if t == "TXT":
                own_txt = True
            elif t == "SPF":
                copies.append(("TXT", v))
            if v != ["NONE"]:
                out.append((t, v))
    if not own_txt:
        out.extend(copies)
    return out


def rdata(t, v):
    if t == "A":
        return QTYPE.A, A(v)
    if t == "AAAA":
        return QTYPE.AAAA, AAAA(v)
    if t in ("TXT", "SPF"):
        data = [s.encode("utf-8") for s in v]
        return (QTYPE.TXT if t == "TXT" else 99), TXT(data)
    if t == "MX":
        return QTYPE.MX, MX(v[1], v[0])
    if t == "PTR":
        return QTYPE.PTR, PTR(v)
    if t == "CNAME":
        return QTYPE.CNAME, CNAME(v)
    return None, None


class Zone(BaseResolver):
    def __init__(self, zonedata):
        self.zone = {
            name.lower().rstrip("."): records(name, entries or [])
            for name, entries in zonedata.items()
        }

    def answer(self, reply, name, qtype, level=0):
        recs = self.zone.get(name)
        if recs is None:
            if name.startswith("error."):
                raise DNSError("timeout")
            if level == 0:
                reply.header.rcode = RCODE.NXDOMAIN
            return
        answered = False
        for t, v in recs:
            if t == "TIMEOUT":
                # testspf.py: a TIMEOUT entry times out the query unless a
                # record of the asked type came before it.
                if not answered:
                    raise DNSError("timeout")
                return
            if v == "TIMEOUT":
                if t == QTYPE[qtype]:
                    raise DNSError("timeout")
                continue
            rtype, rd = rdata(t, v)
            if rd is None:
                continue
            if rtype == qtype:
                answered = True
                reply.add_answer(RR(name, rtype, rdata=rd, ttl=60))
            elif rtype == QTYPE.CNAME and level == 0:
                reply.add_answer(RR(name, rtype, rdata=rd, ttl=60))
                self.answer(reply, str(v).lower().rstrip("."), qtype, 1)

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        # The labels as they are: str() would escape a space as "\\032",
        # and the suite has names with spaces (macro-mania-in-domain).
        name = ".".join(
            l.decode("latin-1") for l in request.q.qname.label
        ).lower()
        self.answer(reply, name, request.q.qtype)
        return reply


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "list":
        out = []
        for i, s in enumerate(load(sys.argv[2])):
            tests = {}
            for name, t in (s.get("tests") or {}).items():
                r = t.get("result")
                tests[name] = {
                    "helo": str(t.get("helo", "")),
                    "host": str(t.get("host", "")),
                    "mailfrom": str(t.get("mailfrom", "")),
                    "result": r if isinstance(r, list) else [r],
                }
                if "explanation" in t:
                    tests[name]["explanation"] = str(t["explanation"])
            out.append({"index": i, "description": s.get("description", ""), "tests": tests})
        json.dump(out, sys.stdout)
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        scenario = load(sys.argv[2])[int(sys.argv[3])]
        port = int(sys.argv[4])
        zone = Zone(scenario.get("zonedata") or {})
        quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        for tcp in (False, True):
            DNSServer(zone, port=port, address="127.0.0.1", tcp=tcp, logger=quiet).start_thread()
        print("ready", flush=True)
        threading.Event().wait()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
