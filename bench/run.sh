#!/usr/bin/env bash
# trough against its peers, side by side: ONE command.
#
#   bench/run.sh [--preset smoke|small|full] [--scenarios 1,2,3,4,5,6] [--runs N] [--duration-ms MS]
#                [--scale-segments N] [--out FILE] [--work-dir DIR]
#
# Builds what it needs (release: trough and trough-bench; with TROUGH_BIN set, that trough binary
# and a debug trough-bench, as the CI smoke test does), installs Datasette into
# ~/.cache/trough-tools/bench-venv (idempotent; needs PyPI), generates the data (reused between
# runs under --work-dir), starts every server on 127.0.0.1, drives the load, and prints tables of
# medians and ratios. Results: bench/results/<preset>.json (`trough-bench report FILE` prints
# them again). See BENCHMARKS.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"

preset=small
scenarios=1,2,3,4,5,6
out=""
work=""
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --preset=*) preset="${1#*=}"; shift ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --scenarios=*) scenarios="${1#*=}"; shift ;;
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#*=}"; shift ;;
    --work-dir) work="$2"; shift 2 ;;
    --work-dir=*) work="${1#*=}"; shift ;;
    --runs|--duration-ms|--scale-segments) pass+=("$1" "$2"); shift 2 ;;
    --runs=*|--duration-ms=*|--scale-segments=*) pass+=("$1"); shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$preset" in smoke|small|full) ;; *) echo "run.sh: unknown preset $preset" >&2; exit 2 ;; esac
out="${out:-$ROOT/bench/results/$preset.json}"
work="${work:-$ROOT/target/bench-work}"

if [ -n "${TROUGH_BIN:-}" ]; then
  echo "run.sh: trough binary from TROUGH_BIN=$TROUGH_BIN; building trough-bench (debug)" >&2
  "$CARGO" build --quiet -p trough-bench
  BENCH_BIN="$ROOT/target/debug/trough-bench"
else
  echo "run.sh: cargo build --release -p trough -p trough-bench" >&2
  "$CARGO" build --quiet --release -p trough -p trough-bench
  TROUGH_BIN="$ROOT/target/release/trough"
  BENCH_BIN="$ROOT/target/release/trough-bench"
fi
[ -x "$TROUGH_BIN" ] || { echo "run.sh: no trough binary at $TROUGH_BIN" >&2; exit 1; }

datasette_args=()
if [[ ",$scenarios," == *,1,* ]]; then
  # Scenario 1 compares with Datasette: no Datasette, no run (never a silent skip).
  DATASETTE="$(bash "$ROOT/bench/setup-datasette.sh")" \
    || { echo "run.sh: Datasette could not be installed (see above); scenario 1 needs it" >&2; exit 1; }
  datasette_args=(--datasette-bin "$DATASETTE")
fi

exec "$BENCH_BIN" run --preset "$preset" --scenarios "$scenarios" \
  --trough-bin "$TROUGH_BIN" "${datasette_args[@]}" --work-dir "$work" --out "$out" \
  --repo "$ROOT" --command "bench/run.sh --preset $preset --scenarios $scenarios${pass[*]:+ ${pass[*]}}" \
  "${pass[@]}"
