#!/usr/bin/env bash
# Instructions per request, by function, for one workload under callgrind.
#
# usage: bench/profile.sh ours|mod_lua SCOPE hello|args|post_form|compute|output_filter|map_handler [REQUESTS]
#
# Starts a single-process httpd (-X) under valgrind --tool=callgrind on 127.0.0.1 with the
# module and LuaScope given, warms it up, zeroes the counters, sends REQUESTS keep-alive
# requests with ab, dumps, and prints the per-request total and the top functions
# (inclusive). Output stays in $OUT (default /tmp/mod_lua_rs-profile). Stops only the server
# it started.
set -euo pipefail
which=${1:?ours|mod_lua}; scope=${2:?scope}; workload=${3:?hello|args|post_form|compute|output_filter|map_handler}; n=${4:-2000}
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/mod_lua_rs-profile}/$which-$scope-$workload
rm -rf "$out"; mkdir -p "$out/htdocs" "$out/logs" "$out/run"
case $which in
  ours) so=$here/target/release/libmod_lua_rs.so ;;
  mod_lua) so=/usr/lib/apache2/modules/mod_lua.so ;;
  *) echo "ours or mod_lua" >&2; exit 2 ;;
esac
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$out/htdocs/hello.lua" <<'LUA'
function handle(r)
  r.content_type = "text/plain"
  r:puts("Hello Lua World!\n")
end
LUA
cat > "$out/htdocs/args.lua" <<'LUA'
function handle(r)
  r.content_type = "text/plain"
  local get = r:parseargs()
  for _, k in ipairs({"a", "b", "c", "d", "e"}) do r:puts(k, "=", tostring(get[k]), "\n") end
  for _, h in ipairs({"User-Agent", "Accept", "X-Test"}) do r:puts(h, ": ", tostring(r.headers_in[h]), "\n") end
end
LUA
cat > "$out/htdocs/compute.lua" <<'LUA'
function handle(r)
  local items = {}
  for i = 1, 500 do items[i] = string.format("item-%05d:%s", (i * 7919) % 1000, string.rep("x", 4)) end
  table.sort(items)
  local out = table.concat(items, ",")
  r.content_type = "text/plain"
  r:puts(#out, " ", out:sub(1, 40), "\n")
end
LUA
cat > "$out/filters.lua" <<'LUA'
function upper(r)
  coroutine.yield()
  while bucket do coroutine.yield(bucket:upper()) end
end
LUA
mkdir -p "$out/htdocs/f"
python3 -c 'import sys; sys.stdout.write("abcdefgh" * 8192)' > "$out/htdocs/f/big.html"
cat > "$out/htdocs/post_form.lua" <<'LUA'
function handle(r)
  r.content_type = "text/plain"
  local post = r:parsebody()
  local n = 0
  for k, v in pairs(post) do n = n + #v end
  r:puts("fields bytes ", n, "\n")
end
LUA
python3 -c 'import sys; sys.stdout.write("&".join("field%02d=%s" % (i, "v" * 40) for i in range(1, 41)))' > "$out/post.txt"
cat > "$out/map.lua" <<'LUA'
function handle_item(r)
  r.content_type = 'text/plain'
  r:puts('item ', r.uri:match('(%d+)$'), '\n')
end
LUA
scopeline="LuaScope $scope"; [ "$scope" = default ] && scopeline=""
cat > "$out/httpd.conf" <<CONF
ServerRoot $out
ServerName localhost
Listen 127.0.0.1:$port
PidFile $out/run/httpd.pid
DefaultRuntimeDir $out/run
Mutex file:$out/run default
ErrorLog $out/logs/error_log
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule lua_module $so
TypesConfig /etc/mime.types
DocumentRoot $out/htdocs
<Directory $out/htdocs>
 Require all granted
</Directory>
AddHandler lua-script .lua
LuaOutputFilter UPPER $out/filters.lua upper
LuaMapHandler ^/items/(\\d+)$ $out/map.lua handle_item
<Location /f/>
 SetOutputFilter UPPER
</Location>
$scopeline
CONF
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  /usr/sbin/apache2 -X -d "$out" -f "$out/httpd.conf" 2>"$out/vg.log" &
vg=$!
trap 'kill $vg 2>/dev/null || true' EXIT
url="http://127.0.0.1:$port/$workload.lua"
[ "$workload" = args ] && url="$url?a=1&b=two&c=3&d=four&e=5"
[ "$workload" = output_filter ] && url="http://127.0.0.1:$port/f/big.html"
[ "$workload" = map_handler ] && url="http://127.0.0.1:$port/items/42"
for _ in $(seq 60); do curl -s -o /dev/null "$url" && break; sleep 1; done
post=(); [ "$workload" = post_form ] && post=(-p "$out/post.txt" -T application/x-www-form-urlencoded)
ab -q -k -n 300 -H 'X-Test: yes' "${post[@]}" "$url" >/dev/null
callgrind_control -z "$vg" >/dev/null
ab -q -k -n "$n" -H 'X-Test: yes' "${post[@]}" "$url" >"$out/ab.txt"
callgrind_control -d "$vg" >/dev/null
kill "$vg"; wait "$vg" 2>/dev/null || true; trap - EXIT
dump=$(ls -t "$out"/cg.out.* | head -1)
total=$(callgrind_annotate "$dump" | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$which $scope $workload: $((total / n)) instructions per request"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '/file:function/,$p' | head -60 \
  | awk -v n="$n" 'NR>1 && $1 ~ /[0-9]/ {v=$1; gsub(",","",v); $1=""; printf "%8d %s\n", v/n, $0}' | head -50
