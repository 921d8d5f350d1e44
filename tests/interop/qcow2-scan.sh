#!/usr/bin/env bash
# Interop: the qcow2 metadata scans that info, check, map and measure run
# (docs/performance.md, "Start-up"): L2 runs classified a run at a time,
# refcount blocks compared and counted a block at a time without the cache,
# the refcount table read lazily on a read-only open (only the prefix that
# covers the file; check streams the rest). Every refcount width, small
# clusters (several L2 tables and refcount blocks), extended L2, an external
# data file, zero and preallocated clusters, and refcount tables with
# entries past the file: stdout, stderr and exit code as qemu-img's.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }

# 24M image, 4k clusters: 512-entry L2 tables (2 MiB each), refcount blocks
# of 2048 16-bit entries (8 MiB); data in several runs, written out of order
# so that host runs break inside and across tables; zero clusters, both
# unallocated and preallocated; a discarded range.
mk() { # NAME CREATE-OPTS...
    local n=$1; shift
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k "$@" "$n" 24M &&
        qio -c 'write -P 1 8M 3M' -c 'write -P 2 0 1M' -c 'write -P 3 20M 64k' \
            -c 'write -P 4 2044k 16k' -c 'write -z 1M 64k' -c 'write -z 8M 8k' \
            -c 'write -P 5 12M 2M' -c 'discard 12M 512k' "$n"
}

for w in 1 2 4 8 16 32 64; do
    fixture mk "rb$w.qcow2" -o refcount_bits=$w
    same "refcount_bits=$w: info" -- info "rb$w.qcow2"
    same "refcount_bits=$w: check" -- check "rb$w.qcow2"
    same "refcount_bits=$w: check json" -- check --output=json "rb$w.qcow2"
    same "refcount_bits=$w: map" -- map "rb$w.qcow2"
    same "refcount_bits=$w: map json" -- map --output=json "rb$w.qcow2"
    same "refcount_bits=$w: measure" -- measure -O qcow2 "rb$w.qcow2"
done

# A leaked cluster (an L2 entry cleared; with 64-bit refcounts, in the
# fourth refcount block): the block-wise comparison falls back to
# cluster-by-cluster reporting, and check -r leaks repairs it.
for w in 1 16 64; do
    fixture mk "leak$w.qcow2" -o refcount_bits=$w
done
leak_off() { # FILE: host offset of the L2 entry that maps guest 10M
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], 'rb')
h = f.read(104)
l1 = struct.unpack('>Q', h[40:48])[0]
f.seek(l1 + 8 * 5)                       # 10M / 2M per table
l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
print(l2 + 8 * ((10 << 20) % (2 << 20) // 4096))
EOF
}
poke_leak() { put64 "$1" "$(leak_off "$1")" 0; }
for w in 1 16 64; do
    fixture poke_leak "leak$w.qcow2"
    fixture cp "leak$w.qcow2" "leak$w-ro.qcow2"
    same "leak refcount_bits=$w: check" -- check "leak$w-ro.qcow2"
    same "leak refcount_bits=$w: map" -- map --output=json "leak$w-ro.qcow2"
    same "leak refcount_bits=$w: check -r leaks" -- check -r leaks "leak$w.qcow2"
    verify "leak refcount_bits=$w: after repair" -- check "leak$w.qcow2"
done

# Refcount table entries past the blocks that cover the file: a read-only
# open reads only the covering prefix; check must still see the rest.
# Entry 3 of the 24M image's table describes clusters 6144..8191 (24M-32M),
# past the end of the file.
rt_off() { python3 -c 'import struct,sys; print(struct.unpack(">Q", open(sys.argv[1],"rb").read(56)[48:56])[0])' "$1"; }
rtcase() { # NAME ENTRY-VALUE
    mk "$1.qcow2" && put64 "$1.qcow2" $(( $(rt_off "$1.qcow2") + 8 * 3 )) "$2"
}
for c in "rt-past-eof:0x10000000" "rt-unaligned:0x2200" "rt-shared:0x2000"; do
    n=${c%%:*}
    fixture rtcase "$n" "${c#*:}"
    same "$n: info" -- info "$n.qcow2"
    same "$n: map" -- map --output=json "$n.qcow2"
    same "$n: measure" -- measure -O qcow2 "$n.qcow2"
    same "$n: check" -- check "$n.qcow2"
done

# Extended L2 entries (subclusters), an external data file (raw or not:
# entries with COPIED and no offset), v2 without zero clusters.
fixture mk extl2.qcow2 -o extended_l2=on,cluster_size=64k
same "extended_l2: map" -- map --output=json extl2.qcow2
same "extended_l2: check" -- check extl2.qcow2
for raw in on off; do
    fixture mk "df-$raw.qcow2" -o "data_file=df-$raw.data,data_file_raw=$raw"
    same "data_file_raw=$raw: map" -- map --output=json "df-$raw.qcow2"
    same "data_file_raw=$raw: map human" -- map "df-$raw.qcow2"
    same "data_file_raw=$raw: check" -- check "df-$raw.qcow2"
done
mkv2() { "$QEMU_IMG" create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 8M &&
         qio -c 'write -P 1 1M 1M' -c 'write -P 2 4M 4k' -c 'write -P 3 3M 1M' v2.qcow2; }
fixture mkv2
same "v2: map" -- map --output=json v2.qcow2
same "v2: check" -- check v2.qcow2

# Metadata preallocation: more clusters referenced than the file holds, so
# block status recurses into the file (qemu's detection heuristic).
fixture "$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k,preallocation=metadata meta.qcow2 24M
same "preallocation=metadata: map" -- map --output=json meta.qcow2
same "preallocation=metadata: measure" -- measure -O qcow2 meta.qcow2
same "preallocation=metadata: check" -- check meta.qcow2

# A table cut short by the end of the file (the lazy read past EOF).
mkshort() { mk short.qcow2 && truncate -s 300k short.qcow2; }
fixture mkshort
same "truncated: info" --filter 'grep -v "^disk size:"' -- info short.qcow2
same "truncated: map" -- map --output=json short.qcow2
same "truncated: check" -- check short.qcow2

