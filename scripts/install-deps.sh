#!/usr/bin/env bash
# Installs what building, serving and testing mod_lua_rs need, through apt, when missing:
# httpd and its headers (apxs, apr-1-config), libclang for bindgen, the system Lua libraries
# (5.4 by default; 5.3 and LuaJIT for the other cargo features), lua-cjson, wrk, curl and valgrind
# (bench.py --profile), and
# for the database tests APR's SQLite and PostgreSQL drivers plus a PostgreSQL server.
set -euo pipefail

PKGS=(apache2 apache2-dev libclang-dev pkg-config liblua5.4-dev liblua5.3-dev libluajit-5.1-dev
      lua-cjson wrk curl valgrind ca-certificates openssl libaprutil1-dbd-sqlite3 libaprutil1-dbd-pgsql
      postgresql)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Installing the apache2 package may start the system service on port 80; the project runs
  # its own private servers and needs none.
  if [[ " ${missing[*]} " == *" apache2 "* ]]; then
    $SUDO service apache2 stop >/dev/null 2>&1 || true
  fi
  # Likewise the packaged PostgreSQL cluster: the tests start their own on a free port.
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    $SUDO service postgresql stop >/dev/null 2>&1 || true
  fi
fi

# The WebSocket tests use Python's websockets package as a real client (and openssl makes
# their self-signed certificate).
if ! python3 -c "import websockets" >/dev/null 2>&1; then
  echo "install-deps: installing the websockets Python package" >&2
  python3 -m pip install --quiet --disable-pip-version-check websockets >/dev/null 2>&1 ||
    python3 -m pip install --quiet --break-system-packages websockets
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo is not installed; install a Rust toolchain (https://rustup.rs)" >&2
  exit 1
fi
