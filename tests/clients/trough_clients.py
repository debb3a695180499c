"""Drives the original Trough's real clients against a trough server.

Usage: python trough_clients.py BASE_URL

The clients are the PyPI packages `trough` (trough.client.TroughClient) and `warcprox`
(warcprox.dedup.TroughDedupDb), unchanged, except for their service-discovery step: the original
finds the segment manager and read URLs in a RethinkDB service registry; here the segment
manager is BASE_URL and a segment's read URL is BASE_URL/?segment=<id> (what trough's router
answers). `trough/__init__.py` imports the server side of Trough (HDFS, uWSGI), which the client
does not use, so `trough/client.py` is loaded from the installed package on its own, and the TRACE
log level that `trough/__init__.py` adds is added here the same way.

Exits non-zero with a message on the first failed check; prints one line per check.
"""
import asyncio
import importlib.util
import logging
import os
import sys
import types
import uuid

BASE = sys.argv[1].rstrip("/")

# --- load trough.client from the installed package, without trough/__init__.py -----------------
site = next(p for p in sys.path if p.endswith("site-packages"))
pkg = types.ModuleType("trough")
pkg.__path__ = [os.path.join(site, "trough")]
sys.modules["trough"] = pkg
spec = importlib.util.spec_from_file_location(
    "trough.client", os.path.join(site, "trough", "client.py"))
client_mod = importlib.util.module_from_spec(spec)
sys.modules["trough.client"] = client_mod
spec.loader.exec_module(client_mod)
pkg.client = client_mod
TRACE = logging.DEBUG // 2
logging.addLevelName(TRACE, "TRACE")
logging.Logger.trace = lambda self, msg, *a, **k: self.isEnabledFor(TRACE) and self._log(TRACE, msg, a, **k)
logging.basicConfig(level=logging.WARNING)


class Discovering(client_mod.TroughClient):
    """TroughClient with discovery pointed at BASE instead of RethinkDB."""

    def __init__(self, rethinkdb_trough_db_url=None, promotion_interval=None):
        self._write_url_cache = {}
        self._read_url_cache = {}
        self._dirty_segments = set()
        import threading
        self._dirty_segments_lock = threading.RLock()
        self.promotion_interval = None  # the test promotes explicitly
        self._promoter_thread = None

    def segment_manager_url(self):
        return BASE

    def read_url_nocache(self, segment_id):
        return f"{BASE}/?segment={segment_id}"


# warcprox constructs trough.client.TroughClient itself: give it the discovering one.
client_mod.TroughClient = Discovering

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)
    checks += 1
    print(f"ok: {what}", flush=True)


run = uuid.uuid4().hex[:8]
cli = Discovering()

# --- schemas -------------------------------------------------------------------------------------
schema = f"kv-{run}"
check(cli.schema_exists("default"), "the default schema exists")
check(not cli.schema_exists(f"missing-{run}"), "an unknown schema does not exist")
cli.register_schema(schema, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER);")
check(cli.schema_exists(schema), "register_schema creates a schema (201)")
cli.register_schema(schema, "CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER);")
check(True, "register_schema replaces a schema (204)")

# --- writes and reads through the wire format ------------------------------------------------------
seg = f"seg-{run}"
cli.write(seg, "INSERT INTO kv (k, v, n) VALUES (%s, %s, %s);", ("a", "it's", 1), schema)
check(seg in cli._dirty_segments, "write provisions the segment and writes (200)")
cli.write(seg, "INSERT INTO kv (k, v, n) VALUES (%s, %s, %s), (%s, %s, %s)",
          ("b", None, 2, "c", "x" * 1000, 3), schema)
rows = cli.read(seg, "SELECT k, v, n FROM kv WHERE k = %s;", ("a",))
check(rows == [{"k": "a", "v": "it's", "n": 1}], f"read returns row objects: {rows}")
rows = cli.read(seg, "SELECT count(*) AS c FROM kv")
check(rows == [{"c": 3}], f"read sees every acknowledged write: {rows}")
rows = asyncio.run(cli.async_read(seg, "select k from kv order by k;"))
check([r["k"] for r in rows] == ["a", "b", "c"], f"async_read (aiohttp) works: {rows}")
cli.promote(seg)
check(True, "promote answers 200")
cli._write_url_cache.clear()  # the client provisions again after any failure: must be 200
cli.write(seg, "INSERT INTO kv (k, v, n) VALUES (%s, %s, %s);", ("d", "after", 4), schema)
rows = cli.read(seg, "SELECT count(*) AS c FROM kv;")
check(rows == [{"c": 4}], f"provisioning an existing segment again keeps its rows: {rows}")
try:
    cli.write(seg, "INSERT INTO nope VALUES (%s);", (1,), schema)
    check(False, "a bad write raises")
except client_mod.TroughException:
    check(True, "a bad write raises TroughException")
rows = cli.read(seg, "SELECT count(*) AS c FROM kv;")
check(rows == [{"c": 4}], "a failed write changed nothing")

# --- deleting a segment ------------------------------------------------------------------------------
gone = f"gone-{run}"
cli.write(gone, "INSERT INTO kv (k, v, n) VALUES (%s, %s, %s);", ("z", "bye", 9), schema)
cli.delete_segment(gone)
check(True, "delete_segment answers 204")
try:
    cli.delete_segment(gone)
    check(False, "deleting again raises")
except client_mod.TroughSegmentNotFound:
    check(True, "deleting an unknown segment raises TroughSegmentNotFound (404)")
cli._write_url_cache.clear()
cli.write(gone, "INSERT INTO kv (k, v, n) VALUES (%s, %s, %s);", ("y", "again", 8), schema)
rows = cli.read(gone, "SELECT k FROM kv;")
check(rows == [{"k": "y"}], f"a deleted segment is provisioned afresh: {rows}")

# --- warcprox's dedup store ------------------------------------------------------------------------
import warcprox  # noqa: E402
import warcprox.dedup  # noqa: E402
from hanzo import warctools  # noqa: E402

db = warcprox.dedup.TroughDedupDb(warcprox.Options(rethinkdb_trough_db_url="rethinkdb://unused/trough"))
db.start()
check(cli.schema_exists(db.SCHEMA_ID), "TroughDedupDb.start registers its schema")


def response_record(url, rid, date):
    return warctools.WarcRecord(headers=[
        (warctools.WarcRecord.TYPE, warctools.WarcRecord.RESPONSE),
        (warctools.WarcRecord.ID, rid.encode()),
        (warctools.WarcRecord.URL, url.encode()),
        (warctools.WarcRecord.DATE, date.encode()),
    ])


key = f"sha1:{run}AAAA"
db.save(key, response_record("http://example.com/a", f"<urn:uuid:{run}-1>", "2024-01-01T00:00:00Z"))
hit = db.lookup(key)
check(hit is not None and hit["url"] == b"http://example.com/a" and hit["id"] == f"<urn:uuid:{run}-1>".encode(),
      f"save then lookup in the default bucket __unspecified__: {hit}")
check(db.lookup(f"sha1:{run}missing") is None, "lookup of an unknown digest is None")
bucket = f"_bucket-{run}"
db.save(key, response_record("http://example.com/b", f"<urn:uuid:{run}-2>", "2024-01-02T00:00:00Z"), bucket=bucket)
hit = db.lookup(key, bucket=bucket)
check(hit is not None and hit["url"] == b"http://example.com/b", f"buckets are separate segments: {hit}")


class Rec:
    def __init__(self, i):
        import hashlib
        self.payload_digest = hashlib.sha1(f"{run}-{i}".encode())
        self.url = f"http://example.com/batch/{i}".encode()
        self.warc_records = [types.SimpleNamespace(date=b"2024-02-01T00:00:00Z", id=f"<urn:uuid:{run}-b{i}>".encode())]


batch = [Rec(i) for i in range(50)]
db.batch_save(batch)
keys = [warcprox.digest_str(r.payload_digest, False) for r in batch]
found = db.batch_lookup(keys + [b"sha1:nothere"])
check(len(found) == 50 and {f["url"] for f in found} == {r.url for r in batch},
      f"batch_save then batch_lookup finds all 50 ({len(found)})")

print(f"all {checks} checks passed", flush=True)
