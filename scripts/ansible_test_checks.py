#!/usr/bin/env python3
"""Checks of scripts/ansible-test.sh that are easier in Python: `python3 ansible_test_checks.py
<check> <args...>`, exit status 0 when the check passes. Not a test on its own."""

import glob
import json
import os
import random
import socket
import ssl
import stat
import struct
import sys
import time
import tomllib
import urllib.request


def configs():
    """The rendered trough and Consul configurations of every test host."""
    work = sys.argv[1]
    for path in sorted(glob.glob(f"{work}/host*/etc/trough/*.toml")):
        with open(path, "rb") as f:
            c = tomllib.load(f)
        assert c["consul"].startswith("http://127.0.0.1:"), (path, c)
        etc = path.rsplit("/", 1)[0]
        assert c["auth"] == {"enabled": True, "bootstrap_token_file": f"{etc}/bootstrap-token",
                             "anonymous": []}, (path, c)
        assert c["tls"] == {"cert_file": f"{etc}/tls/node.pem", "key_file": f"{etc}/tls/node.key",
                            "ca_file": f"{etc}/tls/ca.pem", "client_ca_file": f"{etc}/tls/ca.pem"}, (path, c)
        assert c["consul_token_file"] == f"{etc}/consul-token", (path, c)
        assert c["node"]["advertise"].startswith("https://127.0.0.1:"), (path, c)
        assert c["object_store"] == "s3://trough/cluster", (path, c)
        assert c["assignment"]["tiers"] == [{"name": "default", "replication_factor": 2}], (path, c)
        assert c["sync"]["interval_secs"] == 2, (path, c)
        assert c["data_dir"].endswith("/" + path.rsplit("/", 1)[1][:-5]), (path, c)
        if path.endswith("reader.toml"):
            want = {"host1": 1000000000, "host2": 2000000000, "host3": 0}[path.split("/")[-4]]
            assert c["node"]["quota_bytes"] == want, (path, c)
    for path in sorted(glob.glob(f"{work}/host*/etc/consul.d/consul.json")):
        with open(path) as f:
            c = json.load(f)
        assert c["server"] == path.startswith(f"{work}/host0/"), (path, c)
    print("configurations ok", file=sys.stderr)


def dns():
    """Consul DNS resolves the segment to its 2 replicas (SRV records)."""
    port = int(sys.argv[1])
    name = "pages-2024.trough-read.service.consul"

    def srv_answers():
        qid = random.randrange(65536)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
        q += struct.pack(">HH", 33, 1)  # SRV, IN
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(q, ("127.0.0.1", port))
        r, _ = s.recvfrom(4096)
        rid, flags, _, an = struct.unpack(">HHHH", r[:8])
        assert rid == qid, "answer to another query"
        return flags & 0xF, an

    deadline = time.monotonic() + 20
    while True:
        try:
            rcode, an = srv_answers()
        except OSError as e:
            rcode, an = f"no answer ({e})", 0
        if rcode == 0 and an >= 2:
            print(f"Consul DNS: {an} SRV records for {name}", file=sys.stderr)
            break
        if time.monotonic() > deadline:
            sys.exit(f"Consul DNS on port {port}: rcode {rcode}, {an} SRV records for {name}")
        time.sleep(0.5)


def queries():
    """Queries the router without pause until a stop file appears; writes `ok failed` and the first errors."""
    url, out, stop, pki, header = sys.argv[1:6]
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
    ctx.load_cert_chain(f"{pki}/client.pem", f"{pki}/client.key")
    name, value = open(header).read().strip().split(": ", 1)
    ok = failed = 0
    errors = []
    while not os.path.exists(stop):
        req = urllib.request.Request(url + "/segments/pages-2024/query",
                                     data=b"SELECT count(*) AS n FROM pages", method="POST",
                                     headers={name: value})
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as r:
                if json.load(r) == [{"n": 1000}]:
                    ok += 1
                else:
                    failed += 1
        except Exception as e:  # noqa: BLE001
            failed += 1
            errors.append(f"{time.strftime('%H:%M:%S')} {e}")
        time.sleep(0.1)
    with open(out, "w") as f:
        f.write(f"{ok} {failed}\n" + "\n".join(errors[:20]) + "\n")


def secrets():
    """Every secret only in its own file (0640/0600, the service's group); nothing open to others."""
    work, *tokens = sys.argv[1:]
    uid, gid = os.getuid(), os.getgid()
    # The body of every private key (the first line of base64 is enough to recognise one).
    keys = [open(k).read().splitlines()[1] for k in glob.glob(f"{work}/pki/host*.key")]
    secrets = tokens + keys
    # Where each secret may be: the bootstrap token in bootstrap-token, the Consul token in
    # consul-token, a host's key in its tls/node.key.
    allowed = ("/etc/trough/bootstrap-token", "/etc/trough/consul-token", "/etc/trough/tls/node.key")
    files = [f for f in glob.glob(f"{work}/host*/**", recursive=True) if os.path.isfile(f)]
    # Not the binaries, nor the data (segment copies, Consul's state: it holds token hashes only).
    files = [f for f in files if "/var/lib/" not in f and "/bin/" not in f]
    files += glob.glob(f"{work}/*.log")
    checked = 0
    for path in files:
        if path.endswith(allowed):
            continue
        text = open(path, "rb").read().decode("utf-8", "replace")
        checked += 1
        for i, s in enumerate(secrets):
            if s in text:
                sys.exit(f"secret #{i} appears in {path}")
    logs = [f for f in files if f.endswith(".log") and "/run/trough-" in f]
    assert len(logs) >= 7, f"expected the logs of 7 trough services, found {logs}"
    for etc in glob.glob(f"{work}/host*/etc/trough"):
        for root, dirs, names in os.walk(etc):
            for n in dirs + names:
                p = os.path.join(root, n)
                st = os.stat(p)
                if st.st_mode & 0o007:
                    sys.exit(f"{p} is open to others: {stat.filemode(st.st_mode)}")
                if st.st_gid != gid:
                    sys.exit(f"{p} is not in the service's group")
                if p.endswith(allowed):
                    if stat.S_IMODE(st.st_mode) not in (0o600, 0o640) or st.st_uid != uid:
                        sys.exit(f"{p}: {stat.filemode(st.st_mode)} uid {st.st_uid}")
    for h in ("host0", "host1", "host2"):
        with open(f"{work}/{h}/etc/trough/bootstrap-token") as f:
            assert f.read().strip() == tokens[0], f"{h}: wrong bootstrap token file"
        with open(f"{work}/{h}/etc/trough/consul-token") as f:
            assert f.read().strip() == tokens[2], f"{h}: wrong Consul token file"
        want = open(f"{work}/pki/{'host0-renewed' if h == 'host0' else h}.key").read().strip()
        with open(f"{work}/{h}/etc/trough/tls/node.key") as f:
            assert f.read().strip() == want, f"{h}: wrong key"
    print(f"secrets: in none of {checked} configuration, log and output files "
          f"({len(logs)} service logs); secret files 0640, nothing open to others", file=sys.stderr)


CHECKS = {"configs": configs, "dns": dns, "queries": queries, "secrets": secrets}

if __name__ == "__main__":
    check = CHECKS[sys.argv.pop(1)]
    check()
