#!/usr/bin/env bash
# Interop: the nbd protocol (libnbd) against real servers started here —
# qemu-nbd and nbdkit (memory, file, pattern plugins) on Unix and TCP
# sockets. Read-only operations (info, map, compare, the error messages) are
# compared with the real qemu-img 7.2 on the same export; images qimg writes
# into an export are read back through NBD by the real qemu-img.
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------ servers

_PIDFILES=()
_stop_servers() {
    local f pid
    for f in "${_PIDFILES[@]}"; do
        [ -s "$f" ] || continue
        read -r pid <"$f" || continue
        kill "$pid" 2>/dev/null
    done
    return 0
}
trap '_rc=$?; _stop_servers; (exit $_rc); _cleanup' EXIT

skip_all() {
    printf 'ok - nbd: skip (%s) # SKIP\n' "$1"
    _N_OK=$((_N_OK + 1))
    exit 0
}

command -v qemu-nbd >/dev/null || skip_all "qemu-nbd not installed"
command -v nbdkit >/dev/null || skip_all "nbdkit not installed"
out=$("$QIMG" info nbd://127.0.0.1:1/ 2>&1)
case $out in
    *"Failed to connect"*|*"Could not open"*"nbd"*"refused"*) ;;
    *) skip_all "qimg built without libnbd" ;;
esac

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# qemu_nbd NAME ARGS...: start a persistent qemu-nbd in the background; it
# forks once its socket is ready.
qemu_nbd() {
    local name=$1
    shift
    _PIDFILES+=("$T/$name.pid")
    qemu-nbd --fork --pid-file="$T/$name.pid" -t "$@" >"$T/$name.log" 2>&1 ||
        _bail "qemu-nbd $name did not start" "$(cat "$T/$name.log")"
}

# nbdkit_srv NAME ARGS...: nbdkit daemonizes once its socket is ready.
nbdkit_srv() {
    local name=$1
    shift
    _PIDFILES+=("$T/$name.pid")
    nbdkit -P "$T/$name.pid" "$@" >"$T/$name.log" 2>&1 ||
        _bail "nbdkit $name did not start" "$(cat "$T/$name.log")"
}

stop_srv() {
    local pid i
    [ -s "$T/$1.pid" ] || return 0
    read -r pid <"$T/$1.pid"
    kill "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$T/$1.pid" "$T/$1.sock"
}

# ------------------------------------------------------------ fixtures

mkdata "$W/src.raw" 4M
"$QEMU_IMG" convert -f raw -O qcow2 "$W/src.raw" "$W/src.qcow2" || _bail "making src.qcow2"
cp "$W/src.qcow2" "$W/inner.img"        # a qcow2 served as raw bytes: qcow2 over NBD

# ------------------------------------------------------------ qemu-nbd, read-only, Unix socket

S1=$T/q1.sock
qemu_nbd q1 -r -k "$S1" -f qcow2 "$W/src.qcow2"
U1="nbd+unix:///?socket=$S1"

same "unix uri: info" -- info "$U1"
same "unix uri: info json" -- info --output=json "$U1"
same "legacy nbd:unix: info" -- info "nbd:unix:$S1"
same "image-opts driver=nbd unix: info" -- info --image-opts "driver=nbd,server.type=unix,server.path=$S1"
same "image-opts driver=raw,file.driver=nbd: info" -- \
    info --image-opts "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$S1"
same "json: filename: info" -- info "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$S1\"}}"
same "unix uri: map" -- map "$U1"
same "unix uri: map json" -- map --output=json "$U1"
same "unix uri: compare with the local file" -- compare "$U1" "$W/src.raw"
same "unix uri: compare -f raw -F qcow2" -- compare -f raw -F qcow2 "$U1" "$W/src.qcow2"
same "unix uri: check (raw: not supported)" -- check "$U1"
same "read-only export opened for writing" -- convert -n -O raw "$W/src.raw" "$U1"
same "read-only export: resize" -- resize -f raw "$U1" 8M
fixture "$QIMG" convert -O raw "$U1" from-nbd.raw
check "convert nbd -> raw: bytes equal the source" cmp "$A/from-nbd.raw" "$W/src.raw"
fixture "$QIMG" convert -O qcow2 "$U1" from-nbd.qcow2
check "convert nbd -> qcow2: qemu-img compare" "$QEMU_IMG" compare "$A/from-nbd.qcow2" "$W/src.raw"
check "convert nbd -> qcow2: qemu-img check" "$QEMU_IMG" check "$A/from-nbd.qcow2"
same "export name that the server lacks" -- info "nbd:unix:$S1:exportname=nosuch"
stop_srv q1

# ------------------------------------------------------------ qemu-nbd, TCP, named export, raw

P2=$(free_port)
qemu_nbd q2 -r --bind 127.0.0.1 -p "$P2" -x exp -f raw "$W/src.raw"
same "tcp uri: info" -- info "nbd://127.0.0.1:$P2/exp"
same "tcp uri: info json" -- info --output=json "nbd://127.0.0.1:$P2/exp"
same "tcp nbd+tcp:// uri: info" -- info "nbd+tcp://127.0.0.1:$P2/exp"
same "legacy nbd:host:port:exportname=: info" -- info "nbd:127.0.0.1:$P2:exportname=exp"
same "image-opts inet: info" -- \
    info --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$P2,export=exp"
same "tcp uri: map json" -- map --output=json "nbd://127.0.0.1:$P2/exp"
same "tcp uri: compare" -- compare "nbd://127.0.0.1:$P2/exp" "$W/src.raw"
same "tcp: wrong export name" -- info "nbd://127.0.0.1:$P2/other"
stop_srv q2

# ------------------------------------------------------------ qcow2 on top of NBD

S3=$T/q3.sock
qemu_nbd q3 -r -k "$S3" -f raw "$W/inner.img"
U3="nbd+unix:///?socket=$S3"
same "qcow2 over nbd: info (probed)" -- info "$U3"
same "qcow2 over nbd: info -f qcow2 json" -- info -f qcow2 --output=json "$U3"
same "qcow2 over nbd: map json" -- map -f qcow2 --output=json "$U3"
same "qcow2 over nbd: check" -- check -f qcow2 "$U3"
same "qcow2 over nbd: compare" -- compare -f qcow2 -F raw "$U3" "$W/src.raw"
stop_srv q3

# ------------------------------------------------------------ writing into exports

# nbdkit memory: convert -n into it, with and without --target-is-zero, and
# with several workers (nbdkit advertises multi-conn)
S4=$T/k4.sock
nbdkit_srv k4 -U "$S4" memory 4M
U4="nbd+unix:///?socket=$S4"
check "convert -n into nbdkit memory" "$QIMG" convert -n -O raw "$W/src.raw" "$U4"
check "nbdkit memory: qemu-img compare" "$QEMU_IMG" compare -f raw -F raw "$U4" "$W/src.raw"
same "nbdkit memory: map json after the copy" -- map --output=json "$U4"
same "nbdkit memory: info" -- info "$U4"
stop_srv k4
nbdkit_srv k4 -U "$S4" memory 4M
check "convert -n --target-is-zero into nbdkit memory" \
    "$QIMG" convert -n --target-is-zero -O raw "$W/src.raw" "$U4"
check "--target-is-zero: qemu-img compare" "$QEMU_IMG" compare -f raw -F raw "$U4" "$W/src.raw"
stop_srv k4
nbdkit_srv k4 -U "$S4" memory 4M
"$QEMU_IO" -f raw -c 'write -P 0x77 0 4M' "$U4" >/dev/null 2>&1
check "convert -n -m 4 -W over dirty multi-conn export" \
    "$QIMG" convert -n -m 4 -W -O raw "$W/src.raw" "$U4"
check "-m 4 -W: qemu-img compare (old data zeroed)" "$QEMU_IMG" compare -f raw -F raw "$U4" "$W/src.raw"
stop_srv k4

# A copy into an export ends with the data on the server's disk: qemu's NBD
# flush is a flush to the OS, sent even with convert's default cache=unsafe
# (and by dd). nbdkit's log filter records every request.
for tool in qemu-img qimg; do
    bin=$QEMU_IMG
    [ "$tool" = qimg ] && bin=$QIMG
    nbdkit_srv k4 -U "$S4" --filter=log memory 4M logfile="$T/k4-$tool.log"
    check "$tool: convert -n into a logged export" "$bin" convert -n -O raw "$W/src.raw" "$U4"
    stop_srv k4
    check "$tool: convert -n sent NBD_CMD_FLUSH" grep -q ' Flush ' "$T/k4-$tool.log"
    nbdkit_srv k4 -U "$S4" --filter=log memory 4M logfile="$T/k4d-$tool.log"
    check "$tool: dd into a logged export" "$bin" dd -O raw if="$W/src.raw" of="$U4" bs=1M
    stop_srv k4
    check "$tool: dd sent NBD_CMD_FLUSH" grep -q ' Flush ' "$T/k4d-$tool.log"
done

# an export whose size is not a whole number of sectors (qimg, like qemu,
# sees it rounded up; the rounding must not make the copy fail)
head -c 1000 "$W/src.raw" >"$W/odd.raw"
nbdkit_srv k4 -U "$S4" memory 1000
check "convert -n into a 1000-byte export" "$QIMG" convert -n -O raw "$W/odd.raw" "$U4"
check "1000-byte export: qemu-img compare" "$QEMU_IMG" compare -f raw -F raw "$U4" "$W/odd.raw"
same "1000-byte export: info" -- info "$U4"
same "1000-byte export: map json" -- map --output=json "$U4"
stop_srv k4

# nbdkit file plugin over a local file, TCP
P5=$(free_port)
truncate -s 4M "$W/k5.raw"
nbdkit_srv k5 -i 127.0.0.1 -p "$P5" file "$W/k5.raw"
check "convert -n into nbdkit file (tcp)" "$QIMG" convert -n -O raw "$W/src.raw" "nbd://127.0.0.1:$P5"
stop_srv k5
check "nbdkit file: the backing file holds the source's bytes" cmp "$W/k5.raw" "$W/src.raw"

# qemu-nbd, writable: create qcow2 through NBD, convert into it, then the
# real qemu-img reads and checks it through NBD
truncate -s 8M "$W/w6.raw"
S6=$T/q6.sock
qemu_nbd q6 -k "$S6" -f raw "$W/w6.raw"
U6="nbd+unix:///?socket=$S6"
same "create -f raw on an export of that size" -- create -f raw "$U6" 8M
same "create -f raw bigger than the export" -- create -f raw "$U6" 16M
same "resize an export (error)" -- resize -f raw "$U6" 16M
same "resize an export to its size" -- resize -f raw "$U6" 8M
check "create -f qcow2 on an export" "$QIMG" create -f qcow2 "$U6" 4M
check "convert -n -O qcow2 into the export" "$QIMG" convert -n -O qcow2 "$W/src.raw" "$U6"
check "qemu-img check of qcow2 written through nbd" "$QEMU_IMG" check -f qcow2 "$U6"
check "qemu-img compare of qcow2 written through nbd" \
    "$QEMU_IMG" compare -f qcow2 -F raw "$U6" "$W/src.raw"
same "qcow2 written through nbd: info" -- info "$U6"
stop_srv q6
check "qcow2 written through nbd: local file check" "$QEMU_IMG" check -f qcow2 "$W/w6.raw"

# ------------------------------------------------------------ pipelining and the block status cache
# A read-only nbdkit file export with more data than the driver's depth
# probe (32 MiB warm-up, then 6 windows of 16 MiB alternating one request at
# a time and several in flight) and many extents: copies by several threads with requests in flight must give the
# source's bytes, and map (answered from the one whole-export block status
# reply) must match qemu-img's.
truncate -s 176M "$W/big.raw"
"$QEMU_IO" -f raw -c 'write -P 0x11 0 40M' -c 'write -P 0x22 44M 36M' -c 'write -z 80M 4M' \
    -c 'write -P 0x33 96M 64M' -c 'write -P 0x44 164M 64k' -c 'write -P 0x55 175M 512' \
    "$W/big.raw" >/dev/null || _bail "making big.raw"
S7=$T/k7.sock
nbdkit_srv k7 -U "$S7" -r file "$W/big.raw"
U7="nbd+unix:///?socket=$S7"
check "pipelined convert -m 8 -W from nbdkit file" "$QIMG" convert -m 8 -W -O raw "$U7" "$A/big-out.raw"
check "pipelined convert: bytes equal the source" cmp "$A/big-out.raw" "$W/big.raw"
same "read-only nbdkit file: map json" -- map --output=json "$U7"
same "read-only nbdkit file: map" -- map "$U7"
stop_srv k7
# the same past the probe on the write side: nbdkit memory (its server pid
# is not the socket's, so the windows are timed) and qemu-nbd (a local
# server whose CPU time the probe reads), the copies by several threads
nbdkit_srv k7 -U "$S7" memory 176M
check "pipelined convert -n -m 8 -W into nbdkit memory" \
    "$QIMG" convert -n -m 8 -W -f raw -O raw "$W/big.raw" "$U7"
check "pipelined writes: qemu-img compare" "$QEMU_IMG" compare -f raw -F raw "$U7" "$W/big.raw"
stop_srv k7
S9=$T/q9.sock
U9="nbd+unix:///?socket=$S9"
truncate -s 176M "$W/big-w.raw"
qemu_nbd q9 -k "$S9" -f raw "$W/big-w.raw"
check "pipelined convert -n into qemu-nbd" "$QIMG" convert -n -f raw -O raw "$W/big.raw" "$U9"
stop_srv q9
check "qemu-nbd export written: bytes equal the source" cmp "$W/big-w.raw" "$W/big.raw"
qemu_nbd q9 -r -k "$S9" -f raw "$W/big.raw"
check "pipelined convert from qemu-nbd to qcow2" "$QIMG" convert -O qcow2 "$U9" "$A/big-out.qcow2"
check "from qemu-nbd: qemu-img compare" "$QEMU_IMG" compare "$A/big-out.qcow2" "$W/big.raw"
stop_srv q9
rm -f "$A/big-out.raw" "$A/big-out.qcow2" "$W/big.raw" "$W/big-w.raw"

# ------------------------------------------------------------ errors

same "refused tcp connection" -- info nbd://127.0.0.1:1/
same "refused legacy tcp" -- info nbd:127.0.0.1:1
same "missing unix socket" -- info "nbd+unix:///?socket=$T/none.sock"
same "missing legacy unix socket" -- info "nbd:unix:$T/none.sock"
same "image-opts inet refused" -- info --image-opts driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=1
same "bad uri" -- info nbd://
same "unix uri without socket" -- info nbd+unix:///x
same "legacy without port" -- info nbd:localhost
same "no address" -- info nbd:
same "image-opts without address" -- info --image-opts driver=nbd
same "image-opts unix without path" -- info --image-opts driver=nbd,server.type=unix
same "image-opts bad type" -- info --image-opts driver=nbd,server.type=foo
same "image-opts path and host" -- info --image-opts driver=nbd,path=/x,host=y
same "convert from a refused server" -- convert -O raw nbd://127.0.0.1:1/ never.raw
same_files "no target left by failed converts"

# the source dies in the middle of a copy: an error, and no half-written target
S7=$T/k7.sock
nbdkit_srv k7 -U "$S7" --filter=delay pattern 64M rdelay=50ms
(sleep 0.5; stop_srv k7) &
out=$(cd "$A" && "$QIMG" convert -O qcow2 "nbd+unix:///?socket=$S7" dies.qcow2 2>&1); rc=$?
wait
if [ $rc -ne 0 ] && [[ $out == *"error while reading"* ]]; then
    pass "server death mid-copy: error exit"
else
    fail "server death mid-copy: error exit" "exit $rc" "$out"
fi
check_sh "server death mid-copy: no half-written target" "[ ! -e '$A/dies.qcow2' ]"

# qemu-nbd killed (-9) mid-copy: its export read through a throttle node (4 MiB/s)
# so that the copy is still running when the server goes. Compared with
# qemu-img under the same kill: the kinds of lines (qemu-img reports the
# failed read once per coroutine, at offsets that vary) and the exit code.
head -c 32M /dev/urandom >"$W/slow.raw"
S8=$T/q8.sock
qnbd_dies_mid_copy() { # BINDIR DIR
    local pid out rc
    qemu_nbd q8 -r -k "$S8" --object throttle-group,id=tg,x-bps-read=4194304 \
        --image-opts "driver=throttle,throttle-group=tg,file.driver=raw,file.file.driver=file,file.file.filename=$W/slow.raw"
    read -r pid <"$T/q8.pid"
    # SIGKILL: on SIGTERM qemu-nbd first drains the throttled requests
    (sleep 0.7; kill -KILL "$pid") &
    out=$(cd "$2" && "$1/qemu-img" convert -O qcow2 "nbd+unix:///?socket=$S8" qdies.qcow2 2>&1)
    rc=$?
    wait
    stop_srv q8
    echo "exit $rc"
    printf '%s\n' "$out" | sed -E 's/[0-9]+/N/g' | sort -u
}
got=$(qnbd_dies_mid_copy "$QBIN" "$A")
want=$(qnbd_dies_mid_copy "$RBIN" "$B")
eq "qemu-nbd killed mid-copy: qemu-img's error and exit code" "$got" "$want"
check_sh "qemu-nbd killed mid-copy: no target left" "[ ! -e '$A/qdies.qcow2' ]"
