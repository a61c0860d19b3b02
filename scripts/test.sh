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
cargo test --release
