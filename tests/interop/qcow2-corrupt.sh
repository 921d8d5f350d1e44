#!/usr/bin/env bash
# Interop: corrupted qcow2 images (qemu's qcow2_signal_corruption events and
# check/repair) — unaligned L1/L2/refblock entries, metadata pointing into
# other metadata, invalid extended-L2 bitmaps, zero clusters in v2 images,
# leaked clusters and zeroed refcounts. info, check, check -r leaks|all, map
# and convert -O raw must give qemu-img's stdout, stderr and exit code, and
# a writable open must set the corrupt bit as qemu does.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }

# Layout of a fresh 1M image with 64k clusters after one write at 0:
# header 0, reftable 0x10000, refblock 0x20000, L1 0x30000, L2 0x40000,
# data 0x50000...
base() { "$QEMU_IMG" create -q -f qcow2 "$@" && qio -c 'write -P 5 0 128k' -c 'write -P 6 192k 64k' "${@: -2:1}"; }

# name | create options | python-free poke list "OFFSET=VALUE ..."
cases=(
    "l1-unaligned||0x30000=0x8000000000040200"
    "l1-into-reftable||0x30000=0x8000000000010000"
    "l1-into-header-area||0x30000=0x8000000000000200"
    "l2-data-unaligned||0x40000=0x8000000000050200"
    "l2-data-into-l1||0x40008=0x8000000000030000"
    "l2-data-past-eof||0x40000=0x8000000001000000"
    "l2-compressed-past-eof||0x40000=0x4000000001000000"
    "reftable-unaligned||0x10000=0x0000000000020200"
    "refblock-zeroed||0x20000=0 0x20008=0 0x20010=0 0x20018=0"
    "leaked-data||0x40018=0"
    "l2-reserved-bits||0x40000=0x8000000000050002"
    "v2-zero-flag|-o compat=0.10|0x40000=0x0000000000000001"
    "extl2-invalid-bitmap|-o extended_l2=on|0x40008=0x0000000100000001"
    "extl2-unalloc-bitmap|-o extended_l2=on|0x40018=0x00000000ffffffff"
)

for c in "${cases[@]}"; do
    IFS='|' read -r name copts pokes <<<"$c"
    mkimg() {
        base $copts "$name.qcow2" 1M || return 1
        for p in $pokes; do put64 "$name.qcow2" "${p%%=*}" "${p#*=}" || return 1; done
        cp "$name.qcow2" "$name-ro.qcow2"
    }
    fixture mkimg
    same "$name: info json" -- info --output=json "$name-ro.qcow2"
    same "$name: check" -- check "$name-ro.qcow2"
    same "$name: map" -- map --output=json "$name-ro.qcow2"
    same "$name: convert" -- convert -O raw "$name-ro.qcow2" "$name.raw"
    fixture cp "$name.qcow2" "$name-l.qcow2"
    same "$name: check -r leaks" -- check -r leaks "$name-l.qcow2"
    verify "$name: after check -r leaks" -- check "$name-l.qcow2"
    # (reftable-unaligned: the new refblock would overwrite the cluster the
    # corrupt entry points into, so qemu's overlap check fails the rebuild
    # with "ERROR writing refblock"; so must ours.)
    same "$name: check -r all" -- check -r all "$name.qcow2"
    verify "$name: after check -r all" -- check "$name.qcow2"
done

# A writable open that meets the corruption marks the image corrupt (qemu
# prints "Marking image as corrupt"); the bit then shows in info and
# refuses a read-write open.
mkw() { base wr.qcow2 1M && put64 wr.qcow2 0x30000 0x8000000000040200 &&
        printf 'x%.0s' $(seq 512) > w.raw; }
fixture mkw
same "writable open: write into unaligned L2" -- convert -n -f raw -O qcow2 w.raw wr.qcow2
same "writable open: corrupt bit in info" -- info --output=json wr.qcow2
same "writable open: rw open refused" -- resize wr.qcow2 2M
verify "writable open: header as qemu's" -- info --output=json wr.qcow2
same "writable open: check -r all repairs" -- check -r all wr.qcow2
same "writable open: info after repair" -- info --output=json wr.qcow2

# A later write through commit/rebase paths: data written over a cluster
# whose L2 entry points into the L1 table is refused, not overwritten.
mko() { base ov.qcow2 1M && put64 ov.qcow2 0x40000 0x8000000000030000 &&
        printf 'y%.0s' $(seq 512) > y.raw; }
fixture mko
same "overlap: write over L1 via data entry" -- convert -n -f raw -O qcow2 y.raw ov.qcow2
same "overlap: check after" -- check ov.qcow2

# an L1 entry with the COPIED flag and no table (qemu asserts on a write there):
# a write gets a new L2 table; repairing it overlaps the header, which is
# signalled as corruption before check reports the failed overlap check
mkc() { "$QEMU_IMG" create -q -f qcow2 cz.qcow2 1M && put64 cz.qcow2 0x30000 0x8000000000000000 &&
        cp cz.qcow2 cz-w.qcow2 && printf 'z%.0s' $(seq 4096) > z.raw; }
fixture mkc
check "L1 COPIED without a table: convert -n writes" "$QIMG" convert -n -f raw -O qcow2 "$A/z.raw" "$A/cz-w.qcow2"
check "L1 COPIED without a table: data" "$QEMU_IMG" compare -f raw -F qcow2 "$A/z.raw" "$A/cz-w.qcow2"
check "L1 COPIED without a table: qemu-img check after the write" "$QEMU_IMG" check -q "$A/cz-w.qcow2"
same "L1 COPIED without a table: check -r all" -- check -r all cz.qcow2
same "L1 COPIED without a table: info after the repair" -- info cz.qcow2
