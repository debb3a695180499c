#!/usr/bin/env bash
# Deploys a real trough cluster with ansible-playbook on this machine, then checks it end to end.
#
#   scripts/ansible-test.sh            (TROUGH_BIN defaults to target/debug/trough, built if missing)
#
# What it does, in order (every step must pass; bounded time, no prompts, no sudo):
#   1. tools, idempotently: consul and s3s-fs (scripts/install-test-deps.sh); ansible-core and
#      ansible-lint in a venv under $TROUGH_TOOLS_DIR/ansible-venv
#   2. ansible-lint --profile production over ansible/ (skip with TROUGH_ANSIBLE_SKIP_LINT=1)
#   3. starts s3s-fs (object storage is the operator's, not deployed by the playbook)
#   4. makes a test CA, a certificate per host and one for the test client with `openssl`, a
#      bootstrap admin token and a Consul token; writes an inventory of four test hosts on this
#      machine (ansible_connection: local) that deploys with authorization, TLS and mutual TLS
#      on, each host with its own base directory under a temp dir and its own ports:
#        host0: Consul server (bootstrap_expect 1) + trough router
#        host1: Consul client + reader + sync server      (tier default, quota 1 GB)
#        host2: Consul client + reader + sync server      (tier default, quota 2 GB)
#        host3: Consul client + reader + writer           (tier default, no quota)
#      Services run under the supervisor fallback (no systemd here); the rendered systemd units
#      are checked with `systemd-analyze verify` (or supervise-unit's own check without it)
#   5. secure by default: the same inventory without a bootstrap token and certificates fails
#      at the role's first checks, before anything is written
#   6. ansible-playbook site.yml; then, over HTTPS trusting only the test CA: a request without a
#      token is refused (401); with the bootstrap admin token, publishes a SQLite segment through
#      the router (PUT), waits until two readers hold verified copies, queries it through the
#      router and compares the answer; a read-only token created through the API queries it but
#      may not publish (403); resolves the segment through Consul DNS
#   7. ansible-playbook site.yml again: the recap must show changed=0 for every host
#   8. kill -9 of a reader: the supervisor restarts it (Restart=on-failure)
#   9. a quota change on one host restarts only that host's reader, which registers the new quota
#  10. a renewed certificate for the router's host is deployed and served
#  11. a rolling upgrade of the read nodes to a new binary with -e trough_serial=1 while a client
#      queries the router without pause: no query may fail
#  12. removal of a read node (trough_state=absent): its services stop and its secrets are
#      removed, queries still answer
#  13. secrets (bootstrap and API tokens, Consul token, private keys) appear in no configuration,
#      environment or playbook output and no service log; the files holding them are 0640 or
#      0600, and nothing under the configuration directories is readable by others
#  14. teardown (also on failure): every supervised process, s3s-fs, the temp dir
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${TROUGH_TOOLS_DIR:-$HOME/.cache/trough-tools}"
VENV="$TOOLS/ansible-venv"
ANSIBLE_PINS="ansible-core==2.19.14 ansible-lint==26.10.1"
PLAYBOOK_TIMEOUT="${TROUGH_ANSIBLE_PLAYBOOK_TIMEOUT:-300}"
SUPERVISE="$ROOT/ansible/roles/supervisor/files/supervise-unit"
CHECKS="$ROOT/scripts/ansible_test_checks.py"
HOSTS=(host0 host1 host2 host3)

log() { printf '[ansible-test +%ss] %s\n' "$SECONDS" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# --- 1. tools ---------------------------------------------------------------------------------
export TROUGH_TOOLS_DIR="$TOOLS"
bash "$ROOT/scripts/install-test-deps.sh"
CONSUL="$TOOLS/bin/consul"
S3S="$TOOLS/bin/s3s-fs"

install_ansible() {
  mkdir -p "$TOOLS"
  (
    flock -w 600 9 || die "timed out waiting for the venv lock"
    if [ -x "$VENV/bin/ansible-playbook" ] && [ "$(cat "$VENV/.pins" 2>/dev/null)" = "$ANSIBLE_PINS" ]; then
      exit 0
    fi
    log "installing $ANSIBLE_PINS into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $ANSIBLE_PINS >&2
    echo "$ANSIBLE_PINS" > "$VENV/.pins"
  ) 9>"$TOOLS/ansible-venv.lock"
}
install_ansible
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
export ANSIBLE_CONFIG="$ROOT/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 PY_COLORS=0
export ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False PYTHONDONTWRITEBYTECODE=1

if [ -z "${TROUGH_BIN:-}" ]; then
  TROUGH_BIN="$ROOT/target/debug/trough"
  [ -x "$TROUGH_BIN" ] || (cd "$ROOT" && cargo build --quiet --bin trough)
fi
[ -x "$TROUGH_BIN" ] || die "TROUGH_BIN=$TROUGH_BIN is not an executable"

# --- 2. lint ----------------------------------------------------------------------------------
if [ "${TROUGH_ANSIBLE_SKIP_LINT:-0}" != 1 ]; then
  log "ansible-lint --profile production"
  (cd "$ROOT/ansible" && ansible-lint --profile production --offline -q site.yml roles inventory) \
    || die "ansible-lint found problems"
fi

# --- 3. work dir, teardown, s3s-fs ------------------------------------------------------------
WORK="$(mktemp -d /tmp/trough-ansible-XXXXXX)"
S3_PID=""
QUERY_PID=""
teardown() {
  local rc=$? stoppers=() pid pidfile state f
  set +e
  [ -n "$QUERY_PID" ] && kill "$QUERY_PID" 2>/dev/null
  # Every service the playbook started runs under supervise-unit with a pid file in its host's
  # state directory: stop each (which stops its process group), then kill by pid what is left.
  for state in "$WORK"/host*/run; do
    [ -d "$state" ] || continue
    for pidfile in "$state"/*.pid; do
      [ -e "$pidfile" ] || continue
      case "$pidfile" in *.main.pid) continue ;; esac
      "$SUPERVISE" --state-dir "$state" stop "$(basename "$pidfile" .pid)" >/dev/null 2>&1 &
      stoppers+=($!)
    done
  done
  for pid in "${stoppers[@]}"; do wait "$pid"; done
  for pidfile in "$WORK"/host*/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null)"
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  done
  [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    log "logs of the failed run (last lines of each):"
    for f in "$WORK"/host*/run/*.log "$WORK"/*.log; do
      [ -e "$f" ] || continue
      echo "----- $f" >&2
      tail -n 25 "$f" >&2
    done
  fi
  if [ "${TROUGH_ANSIBLE_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  log "teardown done (exit $rc)"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Free ports, all bound at once so that none is handed out twice.
mapfile -t PORTS < <("$PY" - <<'EOF'
import socket
socks = []
for _ in range(40):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
)
next_port() { NEXT_PORT="${PORTS[0]}"; PORTS=("${PORTS[@]:1}"); }

mkdir -p "$WORK/s3/trough"
next_port; S3_PORT=$NEXT_PORT
"$S3S" --host 127.0.0.1 --port "$S3_PORT" --access-key trough-key --secret-key trough-secret \
  "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
S3_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null || die "s3s-fs did not start"
log "s3s-fs on 127.0.0.1:$S3_PORT, work dir $WORK"

# --- 4. certificates, tokens, inventory --------------------------------------------------------
# A throw-away CA; a certificate per host (and a renewed one for host0, deployed in step 10) and
# one for this script as a client, all for 127.0.0.1 where the test hosts listen.
PKI="$WORK/pki"
mkdir -p "$PKI"
openssl_q() { openssl "$@" >>"$PKI/openssl.log" 2>&1 || die "openssl $1 failed: $(tail -n 5 "$PKI/openssl.log")"; }
openssl_q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=trough-ansible-test-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.pem"
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$PKI/ext"
for name in "${HOSTS[@]}" host0-renewed client; do
  openssl_q req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$name" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
  openssl_q x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 2 -extfile "$PKI/ext" -out "$PKI/$name.pem"
done
# The bootstrap admin token, as an operator makes one; a Consul ACL token (the test agent has no
# ACLs and ignores it: what is checked is that the role hands it over without leaking it).
ADMIN_TOKEN="trough_$(openssl rand -hex 8)_$(openssl rand -hex 32)"
CONSUL_TOKEN="$("$PY" -c 'import uuid; print(uuid.uuid4())')"
printf 'Authorization: Bearer %s\n' "$ADMIN_TOKEN" >"$WORK/admin.header"
chmod 600 "$WORK/admin.header"
log "test CA, 6 certificates and the tokens made in $PKI"

declare -A HTTP SERF ROUTER READER WRITER SYNC
{
  echo "---"
  echo "all:"
  echo "  vars:"
  echo "    ansible_connection: local"
  echo "    ansible_python_interpreter: \"$PY\""
  echo "    consul_service_manager: supervisor"
  echo "    trough_service_manager: supervisor"
  echo "    consul_binary_src: \"$CONSUL\""
  echo "    consul_create_user: false"
  echo "    consul_user: \"$(id -un)\""
  echo "    consul_group: \"$(id -gn)\""
  echo "    consul_bind_addr: 127.0.0.1"
  echo "    consul_retry_interval: 1s"
  echo "    trough_binary_src: \"$TROUGH_BIN\""
  echo "    trough_create_user: false"
  echo "    trough_user: \"$(id -un)\""
  echo "    trough_group: \"$(id -gn)\""
  echo "    trough_listen_host: 127.0.0.1"
  echo "    trough_advertise_host: 127.0.0.1"
  echo "    trough_object_store: s3://trough/cluster"
  echo "    trough_object_store_options:"
  echo "      aws_endpoint: http://127.0.0.1:$S3_PORT"
  echo "      aws_region: us-east-1"
  echo "      aws_allow_http: true"
  echo "      aws_access_key_id: trough-key"
  echo "      aws_secret_access_key: trough-secret"
  echo "    trough_tiers: [{name: default, replication_factor: 2}]"
  echo "    trough_restart_sec: 1"
  echo "    trough_health_timeout_secs: 60"
  echo "    trough_config: {sync: {interval_secs: 2}}"
  echo "    trough_bootstrap_token: \"$ADMIN_TOKEN\""
  echo "    trough_consul_token: \"$CONSUL_TOKEN\""
  echo "    trough_tls_ca_src: \"$PKI/ca.pem\""
  echo "    trough_tls_cert_src: \"$PKI/{{ inventory_hostname }}.pem\""
  echo "    trough_tls_key_src: \"$PKI/{{ inventory_hostname }}.key\""
  echo "    trough_tls_client_auth: true"
  # Nothing for callers without a token (the role's health check then sends the bootstrap token).
  echo "    trough_auth_anonymous: []"
  echo "  hosts:"
  for h in "${HOSTS[@]}"; do
    base="$WORK/$h"
    next_port; HTTP[$h]=$NEXT_PORT; next_port; dns=$NEXT_PORT; next_port; server=$NEXT_PORT
    next_port; SERF[$h]=$NEXT_PORT; next_port; wan=$NEXT_PORT
    next_port; ROUTER[$h]=$NEXT_PORT; next_port; READER[$h]=$NEXT_PORT
    next_port; WRITER[$h]=$NEXT_PORT; next_port; SYNC[$h]=$NEXT_PORT
    [ "$h" = host0 ] && DNS_PORT=$dns
    echo "    $h:"
    echo "      consul_bin_path: $base/bin/consul"
    echo "      consul_config_dir: $base/etc/consul.d"
    echo "      consul_data_dir: $base/var/lib/consul"
    echo "      consul_unit_dir: $base/etc/systemd/system"
    echo "      consul_supervisor_bin: $base/bin/supervise-unit"
    echo "      consul_supervisor_state_dir: $base/run"
    echo "      consul_http_port: ${HTTP[$h]}"
    echo "      consul_dns_port: $dns"
    echo "      consul_server_port: $server"
    echo "      consul_serf_lan_port: ${SERF[$h]}"
    echo "      consul_serf_wan_port: $wan"
    echo "      trough_consul_url: http://127.0.0.1:${HTTP[$h]}"
    echo "      trough_bin_path: $base/bin/trough"
    echo "      trough_config_dir: $base/etc/trough"
    echo "      trough_data_root: $base/var/lib/trough"
    echo "      trough_unit_dir: $base/etc/systemd/system"
    echo "      trough_supervisor_bin: $base/bin/supervise-unit"
    echo "      trough_supervisor_state_dir: $base/run"
    echo "      trough_ports: {router: ${ROUTER[$h]}, reader: ${READER[$h]}, writer: ${WRITER[$h]}, sync_server: ${SYNC[$h]}}"
    if [ "$h" = host3 ]; then
      # This host's certificate and key as PEM text (how they come from a vault).
      echo "      trough_tls_cert_src: \"\""
      echo "      trough_tls_key_src: \"\""
      echo "      trough_tls_cert: |"
      sed 's/^/        /' "$PKI/$h.pem"
      echo "      trough_tls_key: |"
      sed 's/^/        /' "$PKI/$h.key"
    fi
  done
  echo "  children:"
  echo "    consul_servers:"
  echo "      hosts:"
  echo "        host0:"
  echo "    trough_routers:"
  echo "      hosts:"
  echo "        host0:"
  echo "    trough_nodes:"
  echo "      hosts:"
  echo "        host1: {trough_quota_bytes: 1000000000}"
  echo "        host2: {trough_quota_bytes: 2000000000}"
  echo "        host3: {trough_quota_bytes: 0}"
  echo "    trough_sync_servers:"
  echo "      hosts:"
  echo "        host1:"
  echo "        host2:"
  echo "    trough_writers:"
  echo "      hosts:"
  echo "        host3:"
} > "$WORK/inventory.yml"
ROUTER_URL="https://127.0.0.1:${ROUTER[host0]}"

playbook() {
  local name="$1"
  shift
  log "ansible-playbook ($name) $*"
  local start=$SECONDS rc=0
  (cd "$ROOT/ansible" && timeout "$PLAYBOOK_TIMEOUT" ansible-playbook -i "$WORK/inventory.yml" site.yml "$@") \
    >"$WORK/$name.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 80 "$WORK/$name.log" >&2
    die "ansible-playbook ($name) exited with $rc"
  fi
  log "ansible-playbook ($name) done in $((SECONDS - start))s"
  sed -n '/^PLAY RECAP/,$p' "$WORK/$name.log" >&2
}

# recap_check LOG HOST... : every host is in the recap with failed=0 unreachable=0; with
# CHANGED=0 set, also changed=0.
recap_check() {
  local file="$1" want_unchanged="$2"
  shift 2
  local h line
  for h in "$@"; do
    line="$(sed -n '/^PLAY RECAP/,$p' "$file" | grep -E "^$h +:" || true)"
    [ -n "$line" ] || die "$h is missing from the recap of $file"
    grep -qE 'unreachable=0 +failed=0' <<<"$line" || die "$h failed: $line"
    if [ "$want_unchanged" = 1 ]; then
      grep -qE 'changed=0 ' <<<"$line" || die "not idempotent: $line"
    fi
  done
}

# HTTPS trusting only the test CA, presenting the client certificate (mutual TLS is on):
# `anon` sends no token, `http` the bootstrap admin token, `http_ro` the read-only one.
TLS_ARGS=(--cacert "$PKI/ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key")
anon() { curl -sS --max-time 10 "${TLS_ARGS[@]}" "$@"; }
http() { anon -H @"$WORK/admin.header" "$@"; }
http_ro() { anon -H @"$WORK/ro.header" "$@"; }

# --- 5. secure by default ---------------------------------------------------------------------
# Without a bootstrap token and certificates (and without trough_insecure) the role stops at
# its first checks, saying what to set, before writing anything.
log "ansible-playbook without security settings must fail early"
rc=0
(cd "$ROOT/ansible" && timeout "$PLAYBOOK_TIMEOUT" ansible-playbook -i "$WORK/inventory.yml" site.yml \
  --tags trough --limit host1 \
  -e '{"trough_bootstrap_token": "", "trough_tls_cert_src": "", "trough_tls_cert": ""}') \
  >"$WORK/insecure.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || die "the playbook ran without authorization and TLS settings"
grep -q 'set trough_insecure: true' "$WORK/insecure.log" \
  || die "the early failure does not say what to set: $(tail -n 30 "$WORK/insecure.log")"
[ ! -e "$WORK/host1/etc/trough" ] || die "the refused run wrote $WORK/host1/etc/trough"
log "refused without security settings, nothing written"

# --- 6. deploy and use ------------------------------------------------------------------------
playbook deploy
recap_check "$WORK/deploy.log" 0 "${HOSTS[@]}"

log "checking the rendered files"
units=("$WORK"/host*/etc/systemd/system/*.service)
[ "${#units[@]}" -eq 11 ] || die "expected 11 units (4 consul, 7 trough), got ${#units[@]}: ${units[*]}"
"$SUPERVISE" check "${units[@]}" || die "supervise-unit check failed"
if command -v systemd-analyze >/dev/null 2>&1; then
  out="$(systemd-analyze verify "${units[@]}" 2>&1)" || die "systemd-analyze verify failed: $out"
  [ -z "$out" ] || die "systemd-analyze verify complained: $out"
  log "systemd-analyze verify: ${#units[@]} units clean"
else
  log "systemd-analyze is not installed: units checked by supervise-unit check only"
fi
"$PY" "$CHECKS" configs "$WORK" || die "a rendered configuration is wrong"

log "checking authorization and TLS through the router"
code="$(anon -o "$WORK/anon.json" -w '%{http_code}' "$ROUTER_URL/tokens")"
[ "$code" = 401 ] || die "GET /tokens without a token answered $code: $(cat "$WORK/anon.json")"
code="$(anon -o "$WORK/anon.json" -w '%{http_code}' -X PUT --data-binary 'x' "$ROUTER_URL/segments/pages-2024")"
[ "$code" = 401 ] || die "PUT without a token answered $code: $(cat "$WORK/anon.json")"
# Plain HTTP to a TLS port gets no answer; a client that does not trust the test CA is refused.
curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:${ROUTER[host0]}/health" 2>/dev/null \
  && die "the router answered plain HTTP"
curl -sS --max-time 5 -o /dev/null "$ROUTER_URL/health" 2>/dev/null \
  && die "a client without the test CA was served"
# Mutual TLS: without a client certificate the handshake fails.
curl -sS --max-time 5 -o /dev/null --cacert "$PKI/ca.pem" "$ROUTER_URL/health" 2>/dev/null \
  && die "a client without a certificate was served"
log "no token: 401; plain HTTP, an unknown CA and no client certificate: refused"

log "publishing a segment through the router"
"$PY" - "$WORK/pages.sqlite" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE pages(url TEXT PRIMARY KEY, status INTEGER, size INTEGER)")
c.executemany("INSERT INTO pages VALUES (?,?,?)",
              [(f"https://example.com/{i}", 404 if i % 7 == 0 else 200, i * 100) for i in range(1000)])
c.commit()
EOF
code="$(http -o "$WORK/put.json" -w '%{http_code}' -X PUT --data-binary @"$WORK/pages.sqlite" "$ROUTER_URL/segments/pages-2024")"
[ "$code" = 201 ] || die "PUT /segments/pages-2024 answered $code: $(cat "$WORK/put.json")"

log "waiting for two verified replicas"
replicas=0
for _ in $(seq 120); do
  replicas="$(http "$ROUTER_URL/segments/pages-2024" | "$PY" -c \
    'import json,sys; d=json.load(sys.stdin); print(sum(1 for r in d.get("replicas", []) if r.get("verified") and r.get("version") == 1))' 2>/dev/null || echo 0)"
  [ "$replicas" -ge 2 ] && break
  sleep 0.5
done
[ "$replicas" -ge 2 ] || die "pages-2024 never had 2 verified replicas: $(http "$ROUTER_URL/segments/pages-2024")"
log "replicated: $replicas verified copies"

# check_query [CLIENT]: the grouped query through the router, as the admin (http) or CLIENT.
check_query() {
  local got
  got="$("${1:-http}" -d 'SELECT status, count(*) AS n, sum(size) AS total FROM pages GROUP BY status ORDER BY status' \
    "$ROUTER_URL/segments/pages-2024/query")" || return 1
  "$PY" - "$WORK/pages.sqlite" "$got" <<'EOF'
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
want = [{"status": s, "n": n, "total": t} for s, n, t in c.execute(
    "SELECT status, count(*), sum(size) FROM pages GROUP BY status ORDER BY status")]
got = json.loads(sys.argv[2])
if got != want:
    sys.exit(f"router answered {got}, expected {want}")
EOF
}
check_query || die "the query through the router gave a wrong answer"
log "query through the router: correct answer"
code="$(anon -o "$WORK/anon.json" -w '%{http_code}' -d 'SELECT count(*) FROM pages' "$ROUTER_URL/segments/pages-2024/query")"
[ "$code" = 401 ] || die "a query without a token answered $code: $(cat "$WORK/anon.json")"

# A read-only token made through the API: it may query, not publish.
code="$(http -o "$WORK/ro.json" -w '%{http_code}' -H 'content-type: application/json' \
  -d '{"description": "ansible-test reader", "grants": [{"segments": "pages-*", "right": "read"}]}' \
  "$ROUTER_URL/tokens")"
[ "$code" = 201 ] || die "POST /tokens answered $code: $(cat "$WORK/ro.json")"
RO_TOKEN="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"])' "$WORK/ro.json")"
printf 'Authorization: Bearer %s\n' "$RO_TOKEN" >"$WORK/ro.header"
chmod 600 "$WORK/ro.header"
rm -f "$WORK/ro.json"
check_query http_ro || die "the read-only token could not query"
"$PY" -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("CREATE TABLE pages(url TEXT)"); c.commit()' \
  "$WORK/other.sqlite"
code="$(http_ro -o "$WORK/ro-put.json" -w '%{http_code}' -X PUT --data-binary @"$WORK/other.sqlite" "$ROUTER_URL/segments/pages-2024")"
[ "$code" = 403 ] || die "PUT with the read-only token answered $code: $(cat "$WORK/ro-put.json")"
code="$(http_ro -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$WORK/other.sqlite" "$ROUTER_URL/segments/pages-new")"
[ "$code" = 403 ] || die "PUT of a new segment with the read-only token answered $code"
check_query || die "the refused PUT changed the segment"
log "read-only token: queries answer, publishing is refused (403) and changes nothing"

"$PY" "$CHECKS" dns "$DNS_PORT" || die "Consul DNS did not resolve the segment to its 2 replicas"

# --- 7. idempotence ---------------------------------------------------------------------------
playbook again
recap_check "$WORK/again.log" 1 "${HOSTS[@]}"
log "second run: changed=0 on every host"

# --- 8. restart on failure --------------------------------------------------------------------
state1="$WORK/host1/run"
old_pid="$(cat "$state1/trough-reader.main.pid")"
kill -9 "$old_pid"
new_pid=""
for _ in $(seq 100); do
  new_pid="$(cat "$state1/trough-reader.main.pid" 2>/dev/null || true)"
  if [ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ] && http "https://127.0.0.1:${READER[host1]}/health" >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done
[ -n "$new_pid" ] && [ "$new_pid" != "$old_pid" ] || die "the supervisor did not restart the killed reader"
log "killed reader pid $old_pid; supervisor restarted it as pid $new_pid"

# --- 9. a quota change restarts only the reader of that host ----------------------------------
state2="$WORK/host2/run"
reader_before="$(cat "$state2/trough-reader.main.pid")"
sync_before="$(cat "$state2/trough-sync-server.main.pid")"
playbook quota --limit host2 --tags trough -e trough_quota_bytes=3000000000
grep -q '^quota_bytes = 3000000000$' "$WORK/host2/etc/trough/reader.toml" || die "host2's reader.toml has no new quota"
[ "$(cat "$state2/trough-reader.main.pid")" != "$reader_before" ] || die "the reader of host2 was not restarted"
[ "$(cat "$state2/trough-sync-server.main.pid")" = "$sync_before" ] || die "the sync server of host2 was restarted too"
grep -qE '^host2 +: .*changed=[1-9]' "$WORK/quota.log" || die "the quota change changed nothing"
quota_seen=""
for _ in $(seq 40); do
  quota_seen="$(curl -sS --max-time 10 "http://127.0.0.1:${HTTP[host2]}/v1/kv/trough/nodes/host2?raw" 2>/dev/null || true)"
  grep -q '"quota_bytes":3000000000' <<<"$quota_seen" && break
  sleep 0.5
done
grep -q '"quota_bytes":3000000000' <<<"$quota_seen" || die "host2's reader did not register its new quota: $quota_seen"
log "quota change: only trough-reader on host2 restarted; it registered the new quota"

# --- 10. a renewed certificate ----------------------------------------------------------------
# The router's host gets a new certificate (another serial, same CA). With mutual TLS a node
# presents its certificate when it forwards and reads it at start, so the role restarts the
# router; the new certificate is served.
served_serial() {
  openssl s_client -connect "127.0.0.1:$1" -CAfile "$PKI/ca.pem" -cert "$PKI/client.pem" \
    -key "$PKI/client.key" </dev/null 2>/dev/null | openssl x509 -noout -serial
}
old_serial="$(served_serial "${ROUTER[host0]}")"
[ "$old_serial" = "$(openssl x509 -noout -serial -in "$PKI/host0.pem")" ] || die "the router serves $old_serial, not host0.pem"
router_before="$(cat "$WORK/host0/run/trough-router.main.pid")"
playbook renew --limit host0 --tags trough -e "trough_tls_cert_src=$PKI/host0-renewed.pem" \
  -e "trough_tls_key_src=$PKI/host0-renewed.key"
new_serial="$(served_serial "${ROUTER[host0]}")"
[ "$new_serial" = "$(openssl x509 -noout -serial -in "$PKI/host0-renewed.pem")" ] \
  || die "after the renewal the router serves $new_serial (before: $old_serial)"
[ "$(cat "$WORK/host0/run/trough-router.main.pid")" != "$router_before" ] || die "the router was not restarted"
check_query || die "queries fail after the renewal"
log "renewed certificate served by the router ($old_serial -> $new_serial)"

# --- 11. rolling upgrade, no failed query ------------------------------------------------------
cp "$TROUGH_BIN" "$WORK/trough-v2"
printf 'trough-ansible-test upgrade marker %s\n' "$(date +%s%N)" >>"$WORK/trough-v2"
"$PY" "$CHECKS" queries "$ROUTER_URL" "$WORK/queries.txt" "$WORK/stop-queries" "$PKI" "$WORK/ro.header" &
QUERY_PID=$!
playbook upgrade --limit trough_nodes --tags trough -e trough_serial=1 -e "trough_binary_src=$WORK/trough-v2"
touch "$WORK/stop-queries"
wait "$QUERY_PID" || true
QUERY_PID=""
read -r ok failed <"$WORK/queries.txt"
[ "$failed" -eq 0 ] || die "$failed of $((ok + failed)) queries failed during the rolling upgrade: $(tail -n +2 "$WORK/queries.txt")"
[ "$ok" -ge 20 ] || die "only $ok queries ran during the rolling upgrade"
for h in host1 host2 host3; do
  cmp -s "$WORK/trough-v2" "$WORK/$h/bin/trough" || die "$h does not run the new binary"
done
recap_check "$WORK/upgrade.log" 0 host1 host2 host3
log "rolling upgrade: $ok queries during it, none failed"

# --- 12. remove a node -------------------------------------------------------------------------
playbook remove --limit host3 --tags trough -e trough_state=absent
ls "$WORK"/host3/etc/systemd/system/trough-*.service >/dev/null 2>&1 && die "host3 still has trough units"
for part in reader writer; do
  "$SUPERVISE" --state-dir "$WORK/host3/run" status "trough-$part" >/dev/null && die "trough-$part still runs on host3"
done
for f in bootstrap-token consul-token tls; do
  [ ! -e "$WORK/host3/etc/trough/$f" ] || die "host3 still has etc/trough/$f"
done
check_query || die "queries fail after host3 left"
log "host3 removed, with its secrets; queries still answer"

# --- 13. no secret leaks ------------------------------------------------------------------------
log "checking where the secrets are"
"$PY" "$CHECKS" secrets "$WORK" "$ADMIN_TOKEN" "$RO_TOKEN" "$CONSUL_TOKEN" || die "a secret leaked or a file is too open"

log "all checks passed"
