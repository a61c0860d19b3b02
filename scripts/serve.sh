#!/usr/bin/env bash
# Builds the module and runs httpd in the foreground on 127.0.0.1:${PORT:-8080}, serving
# lua-examples/ through httpd-conf/. Ctrl-C stops it. Logs go to the terminal.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-8080}

"$ROOT/scripts/install-deps.sh"
cargo build --release --manifest-path "$ROOT/Cargo.toml"

RUN=$ROOT/target/serve
mkdir -p "$RUN/run" "$RUN/logs"
chmod 1777 "$RUN/logs"   # the children (www-data) append the examples' JSON request log
EXAMPLES=$ROOT/lua-examples
USER_LINES=""
if [ "$(id -u)" -eq 0 ]; then
  USER_LINES=$'User www-data\nGroup www-data'
  # The children run as www-data: serve a readable copy if the checkout is not readable to it.
  if ! runuser -u www-data -- test -r "$EXAMPLES/hello.lua" 2>/dev/null; then
    rm -rf "$RUN/lua-examples" && cp -r "$EXAMPLES" "$RUN/lua-examples"
    chmod -R a+rX "$RUN/lua-examples" && chmod a+x "$RUN" "$ROOT/target" 2>/dev/null || true
    EXAMPLES=$RUN/lua-examples
    echo "serve: serving a copy of lua-examples/ from $EXAMPLES (checkout not readable by www-data)" >&2
  fi
fi

sed -e "s#@RUN@#$RUN#g" -e "s#@PORT@#$PORT#g" -e "s#@CONF@#$ROOT/httpd-conf#g" \
    -e "s#@EXAMPLES@#$EXAMPLES#g" -e "s#@MODULE@#$ROOT/target/release/libmod_lua_rs.so#g" \
    "$ROOT/httpd-conf/httpd.conf.in" > "$RUN/httpd.conf"
printf '%s\n' "$USER_LINES" >> "$RUN/httpd.conf"

/usr/sbin/apache2 -t -d "$RUN" -f "$RUN/httpd.conf"
echo "serve: http://127.0.0.1:$PORT/  (Ctrl-C stops)" >&2
exec /usr/sbin/apache2 -d "$RUN" -f "$RUN/httpd.conf" -DFOREGROUND
