#!/usr/bin/env bash
# Interop: the http protocol (libcurl, read-only) against a lighttpd started
# here on loopback, serving a folder of images: info, map, compare and
# convert of http:// images compared with the real qemu-img 7.2 (Debian's
# qemu-img loads its curl driver as the block-curl module), qcow2 and a
# backing chain over http, the driver options through --image-opts and
# json:, and the error messages (404, refused, a server without ranges).
# The same server also speaks HTTPS (mod_openssl, a self-signed certificate
# made here), guards one folder with basic auth (username/password-secret)
# and one with a cookie (cookie/cookie-secret); a second, rate-limited
# server is killed in the middle of a copy.
. "$(dirname "$0")/lib.sh"
# Each command gets a minute: a hung transfer fails its check (qimg) or is
# run again (the real qemu-img, whose curl driver can hang), not the file.
SIDE_TIMEOUT=${SIDE_TIMEOUT:-60}

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
# /priv/ needs basic auth (alice / s3cret), /ck/ a session cookie
mkdir -p "$WWW/priv" "$WWW/ck"
cp "$WWW/src.raw" "$WWW/src.qcow2" "$WWW/priv/"
cp "$WWW/src.raw" "$WWW/ck/"
printf 'alice:s3cret\n' >"$T/htpasswd"

PORT=$(free_port)
cat >"$T/lighttpd.conf" <<EOF
server.document-root = "$WWW"
server.bind = "127.0.0.1"
server.port = $PORT
server.errorlog = "$T/lighttpd.log"
server.modules = ( "mod_access", "mod_auth", "mod_authn_file" )
mimetype.assign = ( "" => "application/octet-stream" )
auth.backend = "plain"
auth.backend.plain.userfile = "$T/htpasswd"
auth.require = ( "/priv/" => ( "method" => "basic", "realm" => "qimg", "require" => "valid-user" ) )
\$HTTP["url"] =~ "^/ck/" {
    \$REQUEST_HEADER["Cookie"] !~ "(^|; )session=abc123(;|\$)" {
        url.access-deny = ( "" )
    }
}
EOF
# HTTPS on a second socket of the same server when mod_openssl is there
# (Debian: lighttpd-mod-openssl), with a throwaway self-signed certificate.
SPORT=$(free_port)
HTTPS=0
if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1; then
    cat "$T/key.pem" "$T/cert.pem" >"$T/server.pem"
    cp "$T/lighttpd.conf" "$T/try.conf"
    cat >>"$T/try.conf" <<EOF
server.modules += ( "mod_openssl" )
\$SERVER["socket"] == "127.0.0.1:$SPORT" {
    ssl.engine = "enable"
    ssl.pemfile = "$T/server.pem"
}
EOF
    if "$LIGHTTPD" -tt -f "$T/try.conf" >/dev/null 2>&1; then
        mv "$T/try.conf" "$T/lighttpd.conf"
        HTTPS=1
    fi
fi
[ "$HTTPS" = 1 ] || echo "# no lighttpd mod_openssl (or openssl): https checks skipped"
"$LIGHTTPD" -D -f "$T/lighttpd.conf" >"$T/lighttpd.out" 2>&1 &
_PIDS+=($!)
wait_port "$PORT" || _bail "lighttpd did not start" "$(cat "$T/lighttpd.out" "$T/lighttpd.log" 2>/dev/null)"
H=http://127.0.0.1:$PORT
HS=https://127.0.0.1:$SPORT
[ "$HTTPS" = 0 ] || wait_port "$SPORT" || _bail "lighttpd's https socket did not start"

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
for ra in 0 4k; do
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

# ------------------------------------------------------------ https

# Checked against the oracle only: what a refused certificate or a login
# looks like exists nowhere else.
if [ "$HTTPS" = 1 ] && [ "$ORACLE_HTTP" = 1 ]; then
    JS="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"https\",\"url\":\"$HS/src.raw\",\"sslverify\":\"off\"}}"
    JQ="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"https\",\"url\":\"$HS/src.qcow2\",\"sslverify\":\"off\"}}"
    same "https: self-signed certificate refused (sslverify on)" --rc 1 -- info "$HS/src.raw"
    same "https: convert from a refused server" --rc 1 -- convert -O raw "$HS/src.qcow2" refused.raw
    same "https sslverify=off: info" -- info --image-opts "driver=https,url=$HS/src.raw,sslverify=off"
    same "https sslverify=off: info json" -- \
        info --output=json --image-opts "driver=https,url=$HS/src.raw,sslverify=off"
    same "https json: qcow2: info" -- info "$JQ"
    JB="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"https\",\"url\":\"$HS/src.qcow2\",\"sslverify\":false}}"
    same "https json: sslverify as a JSON boolean keeps its type in the name" -- info "$JB"
    same "https json: qcow2: info json" -- info --output=json "$JQ"
    same "https json: raw: map" -- map "$JS"
    same "https json: qcow2: map json" -- map --output=json "$JQ"
    same "https json: compare qcow2 with the local raw" -- compare "$JQ" "$WWW/src.raw"
    same "https: convert qcow2 -> raw" -- convert -O raw "$JQ" https.raw
    check "https: convert qcow2 -> raw: bytes equal the source" cmp "$A/https.raw" "$WWW/src.raw"
    same "https: convert raw -> qcow2" -- convert -O qcow2 "$JS" https.qcow2
    check "https: convert -> qcow2: qemu-img compare" "$QEMU_IMG" compare "$A/https.qcow2" "$WWW/src.raw"
    check "https: convert -> qcow2: qemu-img check" "$QEMU_IMG" check "$A/https.qcow2"
    same "https: basic auth with password-secret" -- info --object secret,id=pw,data=s3cret \
        --image-opts "driver=https,url=$HS/priv/src.raw,sslverify=off,username=alice,password-secret=pw"
    same "http driver given an https url" --filter 'grep -v GLib' -- \
        info --image-opts "driver=http,url=$HS/src.raw,sslverify=off"
fi

# ------------------------------------------------------------ login and cookies

if [ "$ORACLE_HTTP" = 1 ]; then
    printf 'wrong' >"$W/pw.txt"
    PRIV="driver=http,url=$H/priv/src.raw"
    same "basic auth: no credentials (401)" -- info "$H/priv/src.raw"
    same "basic auth: username, no password (401)" -- info --image-opts "$PRIV,username=alice"
    same "basic auth: username + password-secret" -- \
        info --object secret,id=pw,data=s3cret --image-opts "$PRIV,username=alice,password-secret=pw"
    same "basic auth: wrong password from a secret file (401)" -- \
        info --object "secret,id=pw,file=$W/pw.txt" --image-opts "$PRIV,username=alice,password-secret=pw"
    same "basic auth: unknown secret id" --filter 'grep -v GLib' -- \
        info --image-opts "$PRIV,username=alice,password-secret=nosuch"
    same "basic auth: qcow2 over http, json: with the secret" -- info --object secret,id=pw,data=s3cret \
        "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"http\",\"url\":\"$H/priv/src.qcow2\",\"username\":\"alice\",\"password-secret\":\"pw\"}}"
    same "basic auth: convert" -- convert --object secret,id=pw,data=s3cret --image-opts -O raw \
        "driver=raw,file.driver=http,file.url=$H/priv/src.raw,file.username=alice,file.password-secret=pw" auth.raw
    check "basic auth: convert: bytes equal the source" cmp "$A/auth.raw" "$WWW/src.raw"
    same "proxy-username and proxy-password-secret (no proxy in between)" -- \
        info --object secret,id=pp,data=x --image-opts "driver=http,url=$H/src.raw,proxy-username=bob,proxy-password-secret=pp"
    same "proxy-password-secret: unknown secret id" --filter 'grep -v GLib' -- \
        info --image-opts "driver=http,url=$H/src.raw,proxy-password-secret=nosuch"

    CK="driver=http,url=$H/ck/src.raw"
    same "cookie: none (403)" -- info "$H/ck/src.raw"
    same "cookie=: plain option" -- info --image-opts "$CK,cookie=session=abc123"
    same "cookie-secret: info" -- info --object secret,id=ck,data=session=abc123 --image-opts "$CK,cookie-secret=ck"
    same "cookie-secret: among other cookies" -- \
        info --object "secret,id=ck,data=lang=en; session=abc123" --image-opts "$CK,cookie-secret=ck"
    same "cookie-secret: wrong cookie (403)" -- \
        info --object secret,id=ck,data=session=nope --image-opts "$CK,cookie-secret=ck"
    same "cookie-secret: unknown secret id" --filter 'grep -v GLib' -- info --image-opts "$CK,cookie-secret=nosuch"
    same "cookie-secret: secret not UTF-8" --filter 'grep -v GLib' -- \
        info --object secret,id=bad,data=/w==,format=base64 --image-opts "$CK,cookie-secret=bad"
    same "cookie and cookie-secret together" --filter 'grep -v GLib' -- \
        info --object secret,id=ck,data=session=abc123 --image-opts "$CK,cookie=a=b,cookie-secret=ck"
    same "cookie-secret: convert" -- convert --object secret,id=ck,data=session=abc123 --image-opts -O raw \
        "driver=raw,file.driver=http,file.url=$H/ck/src.raw,file.cookie-secret=ck" ck.raw
    check "cookie-secret: convert: bytes equal the source" cmp "$A/ck.raw" "$WWW/src.raw"
    same_files "no target left by the refused converts"
fi

# ------------------------------------------------------------ a server dying mid-copy

# A second server that sends 2 MiB/s per connection, killed 0.7 s into a
# convert: the copy fails with curl's words and qemu-img's read error, and
# qimg leaves no target behind (qemu-img does leave its partial file).
mkdir -p "$T/slow"
truncate -s 64M "$T/slow/big.raw"
SLOWPORT=$(free_port)
cat >"$T/slow.conf" <<EOF
server.document-root = "$T/slow"
server.bind = "127.0.0.1"
server.port = $SLOWPORT
server.errorlog = "$T/slow.log"
server.modules = ( )
mimetype.assign = ( "" => "application/octet-stream" )
connection.kbytes-per-second = 2048
EOF
dies_mid_copy() { # BINDIR DIR: the kinds of lines the convert printed, and its exit code
    local pid out rc
    "$LIGHTTPD" -D -f "$T/slow.conf" >/dev/null 2>&1 &
    pid=$!
    wait_port "$SLOWPORT" || { kill "$pid"; echo "slow server did not start"; return; }
    (sleep 0.7; kill "$pid") &
    out=$(cd "$2" && "$1/qemu-img" convert -O raw "http://127.0.0.1:$SLOWPORT/big.raw" dies.raw 2>&1)
    rc=$?
    wait
    echo "exit $rc"
    # the failed requests' curl messages and the offset vary from run to run
    printf '%s\n' "$out" | sed -E 's/^(qemu-img: curl: ).*/\1.../; s/[0-9]+/N/g' | sort -u
}
got=$(dies_mid_copy "$QBIN" "$A")
want=$(dies_mid_copy "$RBIN" "$B")
if [ "$ORACLE_HTTP" = 1 ]; then
    eq "server killed mid-copy: qemu-img's error and exit code" "$got" "$want"
else
    check_sh "server killed mid-copy: an error" "[[ '$got' == *'error while reading'* && '$got' == 'exit 1'* ]]"
fi
check_sh "server killed mid-copy: no target left" "[ ! -e '$A/dies.raw' ]"
