#!/usr/bin/env bash
# Set-up and entry point for Taskdesk on Debian (and derivatives).
#
#   scripts/dev.sh run [taskdesk options]   install what is missing, then start Taskdesk
#   scripts/dev.sh test [pytest options]    install what is missing, then lint, type-check, test
#   scripts/dev.sh bench [--quick]          install what is missing, then run the benchmarks
#   scripts/dev.sh setup [extras]           only install (extras: e.g. test, bench)
#
# What it installs, only when missing: Python 3 with venv, the Debian libraries and fonts
# PySide6 needs, and a virtual environment in .venv built from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

# Libraries the PySide6 wheels load, plus fonts (without them text renders as empty boxes).
QT_DEBS=(libglib2.0-0 libgl1 libegl1 libxkbcommon0 libx11-6 libfreetype6 libfontconfig1
         libdbus-1-3 fonts-dejavu-core)
# Extra libraries of Qt's xcb platform plugin, needed to show the window on an X display.
XCB_DEBS=(libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
          libxcb-xkb1 libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-xfixes0 libx11-xcb1)
PY_DEBS=(python3 python3-venv)
# Only for the tests: the headless browser tests/test_browser_security.py drives, the
# validator tests/test_desktop_entry.py checks the desktop entry with, and PostgreSQL for the
# tests of several instances on one database (pg_virtualenv, from postgresql-common, runs the
# suite beside a throw-away cluster).
TEST_DEBS=(chromium desktop-file-utils postgresql postgresql-common)

say() { printf 'taskdesk setup: %s\n' "$*" >&2; }

ensure_debs() {
  command -v dpkg-query >/dev/null || { say "not a Debian system; install by hand: $*"; return 0; }
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

python_ok() {
  command -v python3 >/dev/null &&
    python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

ensure_venv() {
  local extras=$1
  python_ok || ensure_debs "${PY_DEBS[@]}"
  python_ok || { say "Python 3.11 or newer with venv is required"; exit 1; }
  [ -x .venv/bin/python ] || { say "creating .venv"; python3 -m venv .venv; }
  # Reinstall only when pyproject.toml or the requested extras change.
  local stamp=.venv/.taskdesk-setup-${extras:-base}
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python packages${extras:+ [$extras]}"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-run}
shift || true
case "$cmd" in
  setup)
    ensure_debs "${QT_DEBS[@]}" "${XCB_DEBS[@]}"
    ensure_venv "${1:-test}"
    ;;
  run)
    ensure_debs "${QT_DEBS[@]}" "${XCB_DEBS[@]}"
    ensure_venv ""
    exec .venv/bin/taskdesk "$@"
    ;;
  test)
    ensure_debs "${QT_DEBS[@]}" "${TEST_DEBS[@]}"
    ensure_venv test
    export QT_QPA_PLATFORM=offscreen
    say "ruff"
    .venv/bin/ruff check .
    say "mypy"
    .venv/bin/mypy
    say "pytest"
    if command -v pg_virtualenv >/dev/null; then
      # A throw-away cluster for the suite, in a temporary folder: pg_virtualenv sets PGHOST,
      # PGPORT, PGUSER, PGPASSWORD and PGDATABASE for the tests and drops the cluster however
      # the command ends (its trap covers exit, INT, TERM and HUP).
      say "with a throw-away PostgreSQL cluster (pg_virtualenv)"
      exec pg_virtualenv -t -- .venv/bin/python -m pytest "$@"
    fi
    say "PostgreSQL is not installed: its tests will skip (fail with CI=true)"
    exec .venv/bin/python -m pytest "$@"
    ;;
  bench)
    # wrk generates the HTTP load from a separate process; cases 8-10 need PostgreSQL; case
    # 12 times `taskdesk list` with hyperfine beside task-spooler's `tsp -l`; case 13 runs
    # commands beside task-spooler's queue.
    ensure_debs "${QT_DEBS[@]}" wrk postgresql postgresql-common hyperfine task-spooler
    ensure_venv "test,bench"
    export QT_QPA_PLATFORM=offscreen
    # A throw-away cluster as for the tests, but with fsync on (pg_virtualenv turns it off):
    # commits are then as durable, and as costly, as on a real server.
    exec pg_virtualenv -t -o fsync=on -- .venv/bin/python -m benchmarks "$@"
    ;;
  *)
    echo "usage: scripts/dev.sh run|test|bench|setup [args]" >&2
    exit 2
    ;;
esac
