#!/usr/bin/env bash
# Runs the whole test suite: formatting and lint checks, unit tests, and the integration tests
# that start real httpd servers with the freshly built module (and Debian's mod_lua for the
# differential tests). Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo build --release
# The other Lua flavours must keep compiling without warnings; MOD_LUA_RS_ALL_FLAVOURS=1 runs
# their tests too.
for flavour in lua53 luajit; do
  if [ "${MOD_LUA_RS_ALL_FLAVOURS:-0}" = 1 ]; then
    CARGO_TARGET_DIR=target/$flavour MOD_LUA_RS_FEATURES=$flavour \
      cargo test --release --no-default-features --features "$flavour"
  else
    CARGO_TARGET_DIR=target/$flavour cargo clippy --release --all-targets --no-default-features \
      --features "$flavour" -- -D warnings
  fi
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One total over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
