#!/usr/bin/env bash
# Installs Datasette (the peer of scenario 1) into a Python venv under the test tools directory,
# idempotently, and prints the path of its `datasette` executable on stdout.
#   venv: ${TROUGH_TOOLS_DIR:-~/.cache/trough-tools}/bench-venv
# Fails loudly (non-zero exit, message on stderr) when the venv or the install cannot be made:
# the benchmark never silently drops its peer.
set -euo pipefail
DATASETTE_VERSION="${DATASETTE_VERSION:-0.65.5}"
TOOLS="${TROUGH_TOOLS_DIR:-$HOME/.cache/trough-tools}"
VENV="$TOOLS/bench-venv"
log() { echo "setup-datasette: $*" >&2; }

want="datasette, version $DATASETTE_VERSION"
if [ -x "$VENV/bin/datasette" ] && [ "$("$VENV/bin/datasette" --version 2>/dev/null)" = "$want" ]; then
  echo "$VENV/bin/datasette"
  exit 0
fi
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || { log "no $PY: cannot install Datasette"; exit 1; }
mkdir -p "$TOOLS"
if [ ! -x "$VENV/bin/pip" ]; then
  log "creating venv $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" >&2 || { log "python3 -m venv failed (apt-get install python3-venv?)"; exit 1; }
fi
log "installing datasette==$DATASETTE_VERSION from PyPI"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "datasette==$DATASETTE_VERSION" >&2 \
  || { log "pip install datasette==$DATASETTE_VERSION failed"; exit 1; }
got="$("$VENV/bin/datasette" --version)"
[ "$got" = "$want" ] || { log "installed '$got', wanted '$want'"; exit 1; }
echo "$VENV/bin/datasette"
