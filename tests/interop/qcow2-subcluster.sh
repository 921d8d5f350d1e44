#!/usr/bin/env bash
# Interop: qcow2 extended L2 entries (subclusters, qcow2.txt "Extended L2
# Entries"). Partial-cluster writes allocate per subcluster and copy from the
# backing file only the subclusters a write partly covers (qemu's
# calculate_l2_meta); zero writes set zero bits per subcluster; images qemu
# made with 512-byte writes, write -z and discard read identically. Images
# qimg writes must be byte-identical to qemu-img's for the same requests.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }
secs='sed "s/in [0-9.]* seconds/in N seconds/"'

fixture "$QEMU_IMG" create -q -f qcow2 b.qcow2 4M
fixture qio -c 'write -P 7 0 4M' b.qcow2
fixture sh -c 'head -c 4096 /dev/zero | tr "\0" "\1" > p4k.raw'
fixture sh -c 'head -c 6144 /dev/zero | tr "\0" "\2" > p6k.raw'

# ---------------------------------------------------------------- writes
# qemu-img bench -d 1 issues the same requests in the same order as
# qemu-io would: odd offsets and lengths, over backing data, zero and
# unallocated subclusters, owned and shared (snapshot) clusters.
# Each case: create options | qemu-io preparation | bench runs (off size step count pattern)
cases=(
    "backing|-o extended_l2=on -b b.qcow2 -F qcow2||1536,5120,70144,3,171 9216,1024,4096,3,17 60416,8192,10240,2,5"
    "nobacking|-o extended_l2=on||1536,5120,70144,3,171 9216,1024,4096,3,17 60416,8192,10240,2,5"
    "zero-subclusters|-o extended_l2=on -b b.qcow2 -F qcow2|write -z 0 64k;write -z 128k 8k|1536,5120,70144,3,171 129536,2048,4096,2,9"
    "16k-clusters|-o extended_l2=on,cluster_size=16k -b b.qcow2 -F qcow2||512,1024,17408,20,171 1536,512,4096,10,17"
    "mixed|-o extended_l2=on -b b.qcow2 -F qcow2|write -P 3 0 64k;write -z 4k 8k;discard 128k 64k|1536,7168,8192,3,171"
    "compressed|-o extended_l2=on -b b.qcow2 -F qcow2|write -c -P 3 0 64k;write -c -P 4 64k 64k|1536,5120,70144,3,171"
    "zero-unmap|-o extended_l2=on -b b.qcow2 -F qcow2|write -P 3 0 64k;write -z -u 4k 8k;write -z 32k 2k|2048,12288,70144,3,171"
    "lazy|-o extended_l2=on,lazy_refcounts=on||1536,5120,70144,3,171"
)
for c in "${cases[@]}"; do
    IFS='|' read -r name copts prep runs <<<"$c"
    # shellcheck disable=SC2086
    fixture "$QEMU_IMG" create -q -f qcow2 $copts "w-$name.qcow2" 4M
    if [ -n "$prep" ]; then
        IFS=';' read -r -a preps <<<"$prep"
        args=()
        for p in "${preps[@]}"; do args+=(-c "$p"); done
        fixture qio "${args[@]}" "w-$name.qcow2"
    fi
    for r in $runs; do
        IFS=',' read -r o sz st n pat <<<"$r"
        same "$name: bench -w -o $o -s $sz" --filter "$secs" -- bench -d 1 -w -o "$o" -s "$sz" -S "$st" -c "$n" --pattern="$pat" -f qcow2 "w-$name.qcow2"
    done
    check "$name: image bytes equal qemu-img's" cmp "$A/w-$name.qcow2" "$B/w-$name.qcow2"
    same_map "$name: map" "w-$name.qcow2" qcow2
    verify "$name: check" -- check "w-$name.qcow2"
done

# A shared cluster (internal snapshot) COWs only the allocated subclusters.
fixture "$QEMU_IMG" create -q -f qcow2 -o extended_l2=on -b b.qcow2 -F qcow2 sn.qcow2 4M
fixture qio -c 'write -P 3 2k 100k' sn.qcow2
fixture "$QEMU_IMG" snapshot -c s1 sn.qcow2
same "snapshot: bench write" --filter "$secs" -- bench -d 1 -w -o 1536 -s 5120 -S 70144 -c 3 --pattern=171 -f qcow2 sn.qcow2
same_map "snapshot: map" sn.qcow2 qcow2
verify "snapshot: check" -- check sn.qcow2
same_image "snapshot: content" sn.qcow2 qcow2

# The example of the issue: convert -n of a 5000-byte raw file into an
# extended-L2 overlay (data, then its last subcluster padded from below).
fixture sh -c 'head -c 5000 /dev/zero | tr "\0" "\3" > p5000.raw'
fixture "$QEMU_IMG" create -q -f qcow2 -o extended_l2=on e2.qcow2 4M
same "convert -n partial cluster" -- convert -n -f raw -O qcow2 p5000.raw e2.qcow2
check "convert -n partial cluster: bytes equal" cmp "$A/e2.qcow2" "$B/e2.qcow2"
same_map "convert -n partial cluster: map" e2.qcow2 qcow2

# convert -n into an existing overlay: the partial cluster (or subcluster)
# after the data reads its backing file, as qemu-img opens the target with
# its chain. Plain and extended L2.
fixture "$QEMU_IMG" create -q -f qcow2 bk.qcow2 4M
fixture qio -c 'write -P 7 0 4M' bk.qcow2
for l2 in off on; do
    fixture "$QEMU_IMG" create -q -f qcow2 -o extended_l2=$l2 -b bk.qcow2 -F qcow2 ov-$l2.qcow2
    same "convert -n into an overlay (extended_l2=$l2)" -- convert -n -f raw -O qcow2 p5000.raw ov-$l2.qcow2
    check "convert -n into an overlay (extended_l2=$l2): bytes equal" cmp "$A/ov-$l2.qcow2" "$B/ov-$l2.qcow2"
    same "convert -n into an overlay (extended_l2=$l2): guest view" -- convert -O raw ov-$l2.qcow2 ov-$l2.raw
    same_image "convert -n into an overlay (extended_l2=$l2): content" ov-$l2.raw
done

# Zero detection in convert -n: whole zero subclusters get zero bits.
mkz() { randbytes 5 65536 > z.raw &&
        dd if=/dev/zero of=z.raw bs=1k seek=4 count=8 conv=notrunc status=none &&
        dd if=/dev/zero of=z.raw bs=1k seek=20 count=1 conv=notrunc status=none &&
        truncate -s 256k z.raw; }
fixture mkz
fixture "$QEMU_IMG" create -q -f qcow2 -o extended_l2=on z.qcow2 1M
same "convert -n zero subclusters" -- convert -n -f raw -O qcow2 z.raw z.qcow2
check "convert -n zero subclusters: bytes equal" cmp "$A/z.qcow2" "$B/z.qcow2"
same "convert to new extended-L2 image" -- convert -f raw -O qcow2 -o extended_l2=on z.raw z3.qcow2
check "convert to new extended-L2 image: bytes equal" cmp "$A/z3.qcow2" "$B/z3.qcow2"

# ---------------------------------------------------------------- reads
mkr() { "$QEMU_IMG" create -q -f qcow2 -o extended_l2=on -b b.qcow2 -F qcow2 r.qcow2 4M &&
        qio -c 'write -P 1 512 1k' -c 'write -z 8k 6k' -c 'write -P 2 62k 4k' \
            -c 'write -z 128k 64k' -c 'discard 256k 64k' -c 'write -c -P 5 320k 64k' \
            -c 'write -P 6 330k 1k' -c 'write -P 8 1m 512' -c 'write -z 1m 512' r.qcow2; }
fixture mkr
same "read: convert -O raw" -- convert -O raw r.qcow2 r.raw
same_image "read: content" r.raw
same "read: map json" -- map --output=json r.qcow2
same "read: map" -- map r.qcow2
same "read: check" -- check r.qcow2
same "read: info" -- info --output=json r.qcow2
