#!/usr/bin/env bash
# Installs what the test suite needs, idempotently, under $TROUGH_TOOLS_DIR
# (default ~/.cache/trough-tools, outside the checkout so fresh clones reuse it):
#   - consul 1.8.7 (Debian bullseye's package, unpacked; the system's apt sources are not changed)
#   - s3s-fs 0.14.1 (a real S3 server over a local directory), built with cargo
#   - cargo-machete 0.9.2 (finds declared dependencies no code uses; scripts/test.sh fails on any)
#   - the original Trough's Python clients (PyPI `trough` and `warcprox`) in a venv, for
#     tests/trough_clients.rs
# Re-running it is cheap: everything already present is kept.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${TROUGH_TOOLS_DIR:-$HOME/.cache/trough-tools}"
mkdir -p "$TOOLS/bin"

log() { echo "install-test-deps: $*" >&2; }

install_consul() {
  if [ -x "$TOOLS/bin/consul" ] && "$TOOLS/bin/consul" version >/dev/null 2>&1; then
    return
  fi
  if command -v consul >/dev/null 2>&1; then
    ln -sf "$(command -v consul)" "$TOOLS/bin/consul"
    return
  fi
  log "fetching consul from Debian bullseye (private apt config)"
  local apt="$TOOLS/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/preferences.d" "$apt/etc/apt.conf.d"
  # Signed by the bullseye archive key that Debian ships in /etc/apt/trusted.gpg.d.
  echo "deb [signed-by=/etc/apt/trusted.gpg.d/debian-archive-bullseye-stable.asc] http://deb.debian.org/debian bullseye main" > "$apt/etc/sources.list"
  touch "$apt/status"
  local opts=(-o "Dir::Etc=$apt/etc" -o "Dir::Etc::sourcelist=$apt/etc/sources.list"
    -o "Dir::Etc::sourceparts=-" -o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists"
    -o "Dir::State::status=$apt/status" -o "Dir::Cache=$apt/cache"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$apt" && apt-get "${opts[@]}" download -qq consul >/dev/null)
  local deb
  # No `| head` under pipefail: head exits early and the writer dies of SIGPIPE (exit 141).
  local debs=("$apt"/consul_*.deb)
  deb="${debs[0]}"
  rm -rf "$apt/unpacked" && dpkg-deb -x "$deb" "$apt/unpacked"
  cp "$apt/unpacked/usr/bin/consul" "$TOOLS/bin/consul"
  "$TOOLS/bin/consul" version | awk 'NR == 1' >&2
}

install_s3s_fs() {
  if [ -x "$TOOLS/bin/s3s-fs" ]; then
    return
  fi
  log "building s3s-fs 0.14.1 (a few minutes, once)"
  cargo install --quiet --locked s3s-fs@0.14.1 --features binary --root "$TOOLS/cargo" >&2
  ln -sf "$TOOLS/cargo/bin/s3s-fs" "$TOOLS/bin/s3s-fs"
}

install_cargo_machete() {
  if [ -x "$TOOLS/bin/cargo-machete" ] && "$TOOLS/bin/cargo-machete" --version 2>/dev/null | grep -q 0.9.2; then
    return
  fi
  log "building cargo-machete 0.9.2 (about a minute, once)"
  cargo install --quiet --locked cargo-machete@0.9.2 --root "$TOOLS/cargo" >&2
  ln -sf "$TOOLS/cargo/bin/cargo-machete" "$TOOLS/bin/cargo-machete"
}

# The original Trough's clients, unchanged, from PyPI. `trough` and `warcprox` are installed
# without their declared dependencies: those pull Trough's server side (HDFS, uWSGI, old
# aiohttp) that no longer builds on Python 3.11 and that the clients do not import; the
# libraries the clients do import are pinned below.
TROUGH_CLIENT_PINS="trough==0.2.0 warcprox==2.13.1"
TROUGH_CLIENT_DEPS="requests==2.34.2 doublethink==0.4.9 rethinkdb==2.4.9 aiohttp==3.14.5 warctools==5.0.1 urlcanon==0.3.1 cachetools==8.0.2 PySocks==1.7.1 cryptography==45.0.7 idna==3.20 rfc3986==2.0.0 PyYAML==6.0.4 six==1.17.0 urllib3==2.8.0"
install_trough_clients() {
  local venv="$TOOLS/trough-clients-venv"
  local want="$TROUGH_CLIENT_PINS $TROUGH_CLIENT_DEPS"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$want" ]; then
    return
  fi
  log "installing the original Trough clients (trough, warcprox) from PyPI"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps $TROUGH_CLIENT_PINS >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check $TROUGH_CLIENT_DEPS >&2
  echo "$want" > "$venv/.pins"
}

install_consul
install_s3s_fs
install_cargo_machete
install_trough_clients
log "ready: $TOOLS/bin"
