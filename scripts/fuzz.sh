#!/usr/bin/env bash
# Fuzzes the pure parsers with cargo fuzz (libFuzzer):
#   scripts/fuzz.sh urlencoded|multipart|cookie [seconds=60]
# Installs cargo-fuzz when missing. Runs on the stable toolchain through RUSTC_BOOTSTRAP=1
# (cargo fuzz wants nightly-only sanitizer flags).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh urlencoded|multipart|cookie [seconds]}
seconds=${2:-60}
scripts/install-deps.sh
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run "$target" -- -max_total_time="$seconds"
