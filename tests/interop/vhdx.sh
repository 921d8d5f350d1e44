#!/usr/bin/env bash
# Interop: the vhdx format — create (dynamic, fixed, every option, the
# errors), info/check of images made by the real qemu-img, reading them
# (convert to raw), writing (convert to vhdx: block allocation and the BAT
# update through the log), a dirty log (refused read-only, replayed by
# check -r all), and damaged images — each compared with qemu-img 7.2 and
# qimg's images verified with the real tool.
TOOLS=$(cd "$(dirname "$0")/tools" && pwd)     # crc32c.py
. "$(dirname "$0")/lib.sh"

# Make the newest log entry active again and wipe the metadata sector it
# restores: the image then has a dirty log whose replay is observable.
mkdirty() {
    python3 - "$1" "$TOOLS" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[2])
from crc32c import crc32c
f = open(sys.argv[1], 'r+b')
def rd(o, n):
    f.seek(o)
    return f.read(n)
hs = []
for o in (65536, 131072):
    h = bytearray(rd(o, 4096))
    hs.append((struct.unpack_from('<Q', h, 8)[0], o, h))
_, ho, h = max(hs)
llen, loff = struct.unpack_from('<IQ', h, 68)
best = None
for p in range(0, llen - 63, 4096):
    e = rd(loff + p, 64)
    if e[:4] == b'loge':
        s = struct.unpack_from('<Q', e, 16)[0]
        if best is None or s > best[0]:
            best = (s, p, e)
_, p, e = best
target = struct.unpack_from('<Q', rd(loff + p + 64, 32), 16)[0]
f.seek(target)
f.write(b'\0' * 4096)
h[48:64] = e[32:48]
h[4:8] = b'\0\0\0\0'
struct.pack_into('<I', h, 4, crc32c(bytes(h)))
f.seek(ho)
f.write(h)
PY
}

# ============================================================== create

same "create -o help" -- create -f vhdx -o help
for sz in 0 1000 3M 20M 1100M; do
    same "create $sz" -- create -f vhdx c-$sz.vhdx $sz
    verify "create $sz: info json" -- info --output=json c-$sz.vhdx
    verify "create $sz: check" -- check c-$sz.vhdx
    same_alloc "create $sz: allocated blocks" c-$sz.vhdx
done
truncate -s 5M "$W/zero5.raw"
i=0
for o in subformat=fixed subformat=fixed,block_state_zero=off block_state_zero=off \
         log_size=2M,block_size=1M block_size=1 log_size=100k block_size=512M \
         log_size=3M,block_size=2M,block_state_zero=on,subformat=dynamic; do
    i=$((i + 1))
    same "create -o $o" -- create -f vhdx -o "$o" o-$i.vhdx 5M
    verify "create -o $o: info" -- info o-$i.vhdx
    verify "create -o $o: check" -- check o-$i.vhdx
    same_alloc "create -o $o: allocated blocks" o-$i.vhdx
    check "create -o $o: reads as zeros" "$QEMU_IMG" compare -q -F raw "$A/o-$i.vhdx" "$W/zero5.raw"
done
same "create: block size not a power of two" -- create -f vhdx -o block_size=3M e1.vhdx 1M
same "create: too large" -- create -f vhdx e2.vhdx 65T
same "create: bad subformat" -- create -f vhdx -o subformat=foo e3.vhdx 1M
same "create: log too large" -- create -f vhdx -o log_size=5G e4.vhdx 1M
same "create: bad bool" -- create -f vhdx -o block_state_zero=maybe e5.vhdx 1M
same "create: BAT over the request limit" -- create -f vhdx -o block_size=256M e6.vhdx 0
no_leftovers "create: failed creates leave no file" e1.vhdx e2.vhdx e3.vhdx e4.vhdx e5.vhdx e6.vhdx
same_files "create: files made"

# ============================================================== read qemu's images

make_src() {
    "$QEMU_IMG" create -q -f vhdx "$1" 40M $2 &&
    "$QEMU_IO" -f vhdx -c 'write -P 0xaa 0 64k' -c 'write -P 0x55 9M 1k' \
        -c 'write -P 0x11 17M 8M' -c 'write -z 30M 1M' -c 'write -P 0x22 40956k 4k' "$1" >/dev/null
}
fixture make_src s-dyn.vhdx
fixture make_src s-fix.vhdx "-o subformat=fixed,block_state_zero=off"
fixture make_src s-1m.vhdx "-o block_size=1M,block_state_zero=off"
for f in s-dyn s-fix s-1m; do
    same "info $f" -- info $f.vhdx
    same "info --output=json $f" -- info --output=json $f.vhdx
    same "check $f" -- check $f.vhdx
    same "check --output=json $f" -- check --output=json $f.vhdx
    same "convert $f to raw" -- convert -O raw $f.vhdx $f.raw
    same_image "convert $f to raw: content" $f.raw
    same_alloc "convert $f to raw: allocated blocks" $f.raw
    if "$QIMG" compare --help >/dev/null 2>&1; then
        same "compare $f with its raw copy" -- compare $f.vhdx $f.raw
    fi
    if "$QIMG" map --help >/dev/null 2>&1; then
        same "map --output=json $f (all data, no offsets, as qemu)" -- map --output=json $f.vhdx
        same "map $f (human map refuses, as qemu)" -- map $f.vhdx
    fi
done
same "info -f vhdx on a raw file" -- info -f vhdx s-dyn.raw

# ============================================================== write

fixture mkdata src.raw 20M
for o in "" subformat=fixed subformat=fixed,block_state_zero=off block_state_zero=off block_size=1M; do
    n=w${o//[=,]/-}
    same "convert raw to vhdx ${o:-(defaults)}" -- convert -O vhdx ${o:+-o $o} src.raw $n.vhdx
    verify "convert to vhdx ${o:-(defaults)}: check" -- check $n.vhdx
    verify "convert to vhdx ${o:-(defaults)}: info" -- info $n.vhdx
    same_image "convert to vhdx ${o:-(defaults)}: content" $n.vhdx vhdx
    same_alloc "convert to vhdx ${o:-(defaults)}: allocated blocks" $n.vhdx
    check "convert to vhdx ${o:-(defaults)}: equals the source" \
        "$QEMU_IMG" compare -q -F raw "$A/$n.vhdx" "$A/src.raw"
done
same "convert vhdx to vhdx" -- convert -O vhdx s-dyn.vhdx w-copy.vhdx
same_image "convert vhdx to vhdx: content" w-copy.vhdx vhdx
verify "convert vhdx to vhdx: check" -- check w-copy.vhdx

# ============================================================== dirty log

if command -v python3 >/dev/null; then
    fixture cp s-dyn.vhdx dirty.vhdx
    fixture mkdirty dirty.vhdx
    fixture cp dirty.vhdx dirty2.vhdx
    same "info of a dirty log is refused read-only" -- info dirty.vhdx
    same "check (read-only) of a dirty log" -- check dirty.vhdx
    same "convert of a dirty log" -- convert -O raw dirty.vhdx dirty.raw
    same "check -r all replays the log" -- check -r all dirty.vhdx
    same "after replay: check" -- check dirty.vhdx
    same_image "after replay: content" dirty.vhdx vhdx
    check "after replay: equals the source image" "$QEMU_IMG" compare -q "$A/dirty.vhdx" "$A/s-dyn.vhdx"
    same "check -r leaks also replays" -- check -r leaks dirty2.vhdx
    same_image "check -r leaks: content" dirty2.vhdx vhdx
fi

# ============================================================== damaged images

corrupt() { # FILE OFFSET BYTES
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
fixture cp c-20M.vhdx d-rt.vhdx
fixture corrupt d-rt.vhdx 196608 XXXX
fixture cp c-20M.vhdx d-hdr.vhdx
fixture corrupt d-hdr.vhdx 65536 XXXX
fixture corrupt d-hdr.vhdx 131072 XXXX
fixture cp c-20M.vhdx d-hdr1.vhdx
fixture corrupt d-hdr1.vhdx 65600 XXXX
fixture cp c-20M.vhdx d-sig.vhdx
fixture corrupt d-sig.vhdx 0 XXXX
fixture cp c-20M.vhdx d-meta.vhdx
fixture corrupt d-meta.vhdx 3145728 XXXX
fixture sh -c 'head -c 100000 c-20M.vhdx > d-trunc1.vhdx'
fixture sh -c 'head -c 2000000 c-20M.vhdx > d-trunc2.vhdx'
fixture sh -c 'head -c 4000000 s-dyn.vhdx > d-trunc3.vhdx'
for f in d-rt d-hdr d-hdr1 d-sig d-meta d-trunc1 d-trunc2; do
    same "info $f" -- info $f.vhdx
    same "info -f vhdx $f" -- info -f vhdx $f.vhdx
    same "check $f" -- check -f vhdx $f.vhdx
done
same "check of a truncated image" -- check d-trunc3.vhdx
check_fail "info of a truncated image fails" "$QIMG" info "$A/d-trunc3.vhdx"

# Overlapping entries in the region table (its checksum fixed): qemu reports
# the overlap itself and the open fails with no message of its own.
rtoverlap() {
    python3 - "$1" "$TOOLS" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[2])
from crc32c import crc32c
f = open(sys.argv[1], 'r+b')
f.seek(196608)
rt = bytearray(f.read(65536))
off1 = struct.unpack_from('<Q', rt, 16 + 32 + 16)[0]
struct.pack_into('<Q', rt, 16 + 16, off1 + 1)
struct.pack_into('<I', rt, 4, 0)
struct.pack_into('<I', rt, 4, crc32c(bytes(rt)))
f.seek(196608)
f.write(rt)
PY
}
fixture cp c-20M.vhdx d-rtover.vhdx
fixture rtoverlap d-rtover.vhdx
same "info: overlapping region table entries" -- info d-rtover.vhdx

# The BAT region moved (the table checksum fixed): qemu checks only overlaps and
# the GUIDs at open; a region running past the end of the file reads as
# zeros there (a BAT entirely past it: no block present), and one beyond
# qemu's largest request offset fails the read (EIO). The end of a region is
# computed modulo 2^64, as qemu does.
batmove() { # FILE OFFSET: the BAT region's file offset
    python3 - "$@" "$TOOLS" <<'PY'
import struct, sys
sys.path.insert(0, sys.argv[3])
from crc32c import crc32c
guid = '6677c22d23f600429d64115e9bfd4a08'
f = open(sys.argv[1], 'r+b')
f.seek(196608)
rt = bytearray(f.read(65536))
for i in range(struct.unpack_from('<I', rt, 8)[0]):
    if rt[16 + 32 * i:32 + 32 * i].hex() == guid:
        struct.pack_into('<Q', rt, 32 + 32 * i, int(sys.argv[2], 0))
struct.pack_into('<I', rt, 4, 0)
struct.pack_into('<I', rt, 4, crc32c(bytes(rt)))
f.seek(196608)
f.write(rt)
PY
}
batmove_eof() { batmove "$1" "$(stat -c %s "$1")"; }
fixture cp s-dyn.vhdx d-bateof.vhdx
fixture batmove_eof d-bateof.vhdx
fixture cp s-dyn.vhdx d-batfar.vhdx
fixture batmove d-batfar.vhdx 0x40000000
fixture cp s-dyn.vhdx d-batmax.vhdx
fixture batmove d-batmax.vhdx 0x7fffffffffff0000
fixture cp s-dyn.vhdx d-batwrap.vhdx
fixture batmove d-batwrap.vhdx 0xffffffffffff0000
for f in d-bateof d-batfar; do
    same "region past EOF: info $f" -- info $f.vhdx
    same "region past EOF: check $f" -- check $f.vhdx
    if "$QIMG" map --help >/dev/null 2>&1; then
        same "region past EOF: map --output=json $f" -- map --output=json $f.vhdx
    fi
    same "region past EOF: convert $f to raw" -- convert -O raw $f.vhdx $f.raw
    same_image "region past EOF: convert $f to raw: content" $f.raw
done
same "region past qemu's request limit: info" -- info d-batmax.vhdx
same "region end wraps past 2^64: info" -- info d-batwrap.vhdx
# a BAT problem found at open is reported by itself, then the open fails
same "info of a truncated image" -- info d-trunc3.vhdx
