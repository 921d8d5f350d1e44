#!/usr/bin/env bash
# Interop: the http protocol (libcurl, read-only) against a lighttpd started
# here on loopback, serving a folder of images: info, map, compare and
# convert of http:// images compared with the real qemu-img 7.2 (Debian's
# qemu-img loads its curl driver as the block-curl module), qcow2 and a
# backing chain over http, the driver options through --image-opts and
# json:, and the error messages (404, refused, a server without ranges).
. "$(dirname "$0")/lib.sh"

_PIDS=()
_stop_servers() {
    local pid
    for pid in "${_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    return 0
}
trap '_rc=$?; _stop_servers; (exit $_rc); _cleanup' EXIT

skip_all() {
    printf 'ok - http: skip (%s) # SKIP\n' "$1"
    _N_OK=$((_N_OK + 1))
    exit 0
}

LIGHTTPD=$(command -v lighttpd || { [ -x /usr/sbin/lighttpd ] && echo /usr/sbin/lighttpd; })
[ -n "$LIGHTTPD" ] || skip_all "lighttpd not installed"
out=$("$QIMG" info http://127.0.0.1:1/x 2>&1)
[[ $out == *CURL* ]] || skip_all "qimg built without libcurl"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT: until something accepts connections on it (5 s at most)
    local i
    for i in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# ------------------------------------------------------------ the server

WWW=$W/www
mkdir -p "$WWW"
mkdata "$WWW/src.raw" 4M
"$QEMU_IMG" convert -f raw -O qcow2 "$WWW/src.raw" "$WWW/src.qcow2" || _bail "making src.qcow2"
"$QEMU_IMG" convert -f raw -O vmdk "$WWW/src.raw" "$WWW/src.vmdk" || _bail "making src.vmdk"
"$QEMU_IMG" create -f qcow2 -b src.qcow2 -F qcow2 "$WWW/top.qcow2" >/dev/null || _bail "making top.qcow2"
"$QEMU_IO" -f qcow2 -c 'write -P 0x33 1M 64k' "$WWW/top.qcow2" >/dev/null || _bail "writing top.qcow2"
head -c 1000 /dev/urandom >"$WWW/odd.raw"

PORT=$(free_port)
cat >"$T/lighttpd.conf" <<EOF
server.document-root = "$WWW"
server.bind = "127.0.0.1"
server.port = $PORT
server.errorlog = "$T/lighttpd.log"
server.modules = ( )
mimetype.assign = ( "" => "application/octet-stream" )
EOF
"$LIGHTTPD" -D -f "$T/lighttpd.conf" >"$T/lighttpd.out" 2>&1 &
_PIDS+=($!)
wait_port "$PORT" || _bail "lighttpd did not start" "$(cat "$T/lighttpd.out" "$T/lighttpd.log" 2>/dev/null)"
H=http://127.0.0.1:$PORT

# Does the oracle have its curl module? If not, compare with local results.
if [ -z "${HTTP_NO_ORACLE:-}" ] && "$QEMU_IMG" info "$H/src.raw" >/dev/null 2>&1; then
    ORACLE_HTTP=1
else
    ORACLE_HTTP=0
    echo "# the real qemu-img cannot read http here: comparing with local files"
fi

# same_http NAME ARGS...: qimg vs qemu-img on the same URLs (or, without
# the oracle's curl, qimg's result against qemu-img's on the local folder
# with the URL prefix replaced).
same_http() {
    local name=$1
    shift
    if [ "$ORACLE_HTTP" = 1 ]; then
        same "$name" -- "$@"
        return
    fi
    local a args=() got want
    for a in "$@"; do args+=("${a//$H/$WWW}"); done
    # what a local file shows and a URL cannot: disk usage, the dirty flag
    local norm='/disk size:\|actual-size\|dirty-flag/d; s/,$//; s/^qemu-img: //; s/^qimg: //'
    got=$("$QIMG" "$@" 2>&1 | sed "s#$H#@URL@#g" | sed "$norm")
    want=$("$QEMU_IMG" "${args[@]}" 2>&1 | sed "s#$WWW#@URL@#g" | sed "$norm")
    eq "$name" "$got" "$want"
}

# same_or_ok NAME ARGS...: compared with the oracle when it reads http;
# otherwise (no local equivalent: maps show the local file's holes, options
# are http's) qimg must just succeed.
same_or_ok() {
    local name=$1
    shift
    if [ "$ORACLE_HTTP" = 1 ]; then
        same "$name" -- "$@"
    else
        check "$name" "$QIMG" "$@"
    fi
}

# ------------------------------------------------------------ reading

for f in src.raw src.qcow2 src.vmdk odd.raw; do
    same_http "info $f" info "$H/$f"
    same_http "info --output=json $f" info --output=json "$H/$f"
    same_or_ok "map $f" map "$H/$f"
    same_or_ok "map --output=json $f" map --output=json "$H/$f"
    same_http "compare $f with the local raw" compare "$H/$f" "$W/www/src.raw"
done
same_http "compare qcow2 over http with raw over http" compare "$H/src.qcow2" "$H/src.raw"
same_http "compare: different images" compare "$H/src.qcow2" "$H/odd.raw"
same_http "info --backing-chain over http" info --backing-chain "$H/top.qcow2"
same_or_ok "map of a backing chain over http" map --output=json "$H/top.qcow2"
same "check qcow2 over http" -- check "$H/src.qcow2"

fixture "$QIMG" convert -O raw "$H/src.qcow2" from-qcow2.raw
check "convert http qcow2 -> raw: bytes equal" cmp "$A/from-qcow2.raw" "$WWW/src.raw"
fixture "$QIMG" convert -O qcow2 "$H/src.vmdk" from-vmdk.qcow2
check "convert http vmdk -> qcow2: qemu-img compare" "$QEMU_IMG" compare "$A/from-vmdk.qcow2" "$WWW/src.raw"
fixture "$QIMG" convert -O raw "$H/top.qcow2" from-top.raw
check "convert http backing chain -> raw: qemu-img compare" \
    "$QEMU_IMG" compare -F qcow2 "$A/from-top.raw" "$WWW/top.qcow2"
fixture "$QIMG" convert -O raw "$H/odd.raw" from-odd.raw
check_sh "convert of a 1000-byte http file: sector-rounded like qemu-img" \
    "[ \$(stat -c %s '$A/from-odd.raw') = 1024 ] && cmp -n 1000 '$A/from-odd.raw' '$WWW/odd.raw'"

# ------------------------------------------------------------ options

same_or_ok "image-opts driver=http,url=" info --image-opts "driver=http,url=$H/src.raw"
same_or_ok "image-opts readahead=64k,timeout=10" \
    info --image-opts "driver=http,url=$H/src.raw,readahead=64k,timeout=10"
same_or_ok "image-opts qcow2 over file.driver=http" \
    info --image-opts "driver=qcow2,file.driver=http,file.url=$H/src.qcow2,file.readahead=1M"
same_or_ok "json: filename" info "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"http\",\"url\":\"$H/src.qcow2\"}}"
for ra in 0 512 4k 1M; do
    fixture "$QIMG" convert -O raw --image-opts "driver=qcow2,file.driver=http,file.url=$H/src.qcow2,file.readahead=$ra" "ra-$ra.raw"
    check "convert with readahead=$ra: bytes equal" cmp "$A/ra-$ra.raw" "$WWW/src.raw"
done
same_or_ok "image-opts cookie= (json: node name)" info --image-opts "driver=http,url=$H/src.raw,cookie=a=b"
same_or_ok "image-opts sslverify=off (json: name through raw)" \
    info --image-opts "driver=raw,file.driver=http,file.url=$H/src.raw,file.sslverify=off"
if [ "$ORACLE_HTTP" = 1 ]; then
    same "readahead not a multiple of 512" --filter 'grep -v GLib' -- \
        info --image-opts "driver=http,url=$H/src.raw,readahead=1000"
    same "timeout too large" --filter 'grep -v GLib' -- \
        info --image-opts "driver=http,url=$H/src.raw,timeout=10001"
    same "https driver with an http url" --filter 'grep -v GLib' -- \
        info --image-opts "driver=https,url=$H/src.raw"
    same "http driver without url" --filter 'grep -v GLib' -- info --image-opts driver=http
fi

# ------------------------------------------------------------ errors

if [ "$ORACLE_HTTP" = 1 ]; then
    same "404" -- info "$H/nonexistent.img"
    same "refused connection" --filter 'sed "s/after [0-9]* ms/after N ms/"' -- info http://127.0.0.1:1/x.img
    same "convert into an http target" -- convert -n -O raw "$WWW/src.raw" "$H/src.raw"
    same "create on http" -- create -f qcow2 "$H/new.qcow2" 1M
    same "resize over http" -- resize "$H/src.raw" 8M
fi
same_files "nothing created by the failures"

# a server without byte ranges (python's http.server sends no Accept-Ranges)
P2=$(free_port)
(cd "$WWW" && exec python3 -m http.server --bind 127.0.0.1 "$P2" >"$T/pyhttp.log" 2>&1) &
_PIDS+=($!)
if wait_port "$P2"; then
    if [ "$ORACLE_HTTP" = 1 ]; then
        same "server without range support" -- info "http://127.0.0.1:$P2/src.raw"
    else
        check_sh "server without range support" \
            "'$QIMG' info 'http://127.0.0.1:$P2/src.raw' 2>&1 | grep -q \"Server does not support 'range'\""
    fi
else
    fail "python http.server did not start"
fi
