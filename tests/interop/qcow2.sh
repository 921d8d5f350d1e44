#!/usr/bin/env bash
# Interop: the qcow2 format — create (byte-identical to qemu-img for every
# layout option), reads of qemu-made images (data, zero clusters, compressed
# zlib/zstd, extended L2, backing files), writes by convert verified and
# compared byte for byte with qemu-img's, check and repair of leaks and
# corruptions, measure, and hostile headers — each compared with the real
# qemu-img 7.2.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }
# poke FILE OFFSET HEXBYTES: overwrite bytes in place
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# ============================================================== create

i=0
for o in "" compat=0.10 cluster_size=512 cluster_size=4k cluster_size=2M extended_l2=on \
         refcount_bits=1 refcount_bits=8 refcount_bits=64 lazy_refcounts=on compression_type=zstd \
         preallocation=metadata preallocation=metadata,cluster_size=4k; do
    for sz in 0 1M 1G 10G; do
        i=$((i + 1))
        same "create [$o] $sz" -- create -f qcow2 ${o:+-o $o} c$i.qcow2 $sz
        check "create [$o] $sz: bytes equal qemu-img's" cmp "$A/c$i.qcow2" "$B/c$i.qcow2"
    done
done
fixture "$QEMU_IMG" create -q -f qcow2 base.qcow2 64M
same "create with backing" -- create -f qcow2 -b base.qcow2 -F qcow2 cb.qcow2
check "create with backing: bytes equal" cmp "$A/cb.qcow2" "$B/cb.qcow2"
same "create with backing and size" -- create -f qcow2 -b base.qcow2 -F qcow2 cb2.qcow2 1G
check "create with backing and size: bytes equal" cmp "$A/cb2.qcow2" "$B/cb2.qcow2"
for o in compat=2 cluster_size=1000 cluster_size=4M refcount_bits=3 compression_type=lz4 \
         preallocation=foo extended_l2=on,cluster_size=4k lazy_refcounts=on,compat=0.10 \
         backing_fmt=qcow2 data_file_raw=on compat=0.10,refcount_bits=8 \
         compat=0.10,compression_type=zstd compat=0.10,extended_l2=on; do
    same "create error [$o]" -- create -f qcow2 -o $o e.qcow2 1M
done
same "create -o help" -- create -f qcow2 -o help

# ============================================================== read

mkimg() { # NAME OPTS...
    local n=$1; shift
    "$QEMU_IMG" create -q -f qcow2 "$@" "$n.qcow2" 4M
    qio -c 'write -P 0xab 0 64k' -c 'write -P 0x11 100k 3k' -c 'write -z 1M 128k' \
        -c 'write -P 0x22 2047k 10k' -c 'write -P 0x33 3M 1M' -c 'discard 3M 64k' "$n.qcow2"
}
for v in "plain" "v2 -o compat=0.10" "c512 -o cluster_size=512" "c2m -o cluster_size=2M" \
         "ext -o extended_l2=on" "ext16k -o extended_l2=on,cluster_size=16k" \
         "rb1 -o refcount_bits=1" "zstd -o compression_type=zstd"; do
    set -- $v
    fixture mkimg "$@"
    same "read $1: convert to raw" -- convert -O raw "$1.qcow2" "$1.raw"
    same_image "read $1: raw result" "$1.raw"
    same "read $1: info" -- info "$1.qcow2"
    same "read $1: info json" -- info --output=json "$1.qcow2"
    same "read $1: check" -- check "$1.qcow2"
    same "read $1: check json" -- check --output=json "$1.qcow2"
done
fixture mkdata src.raw 4M 7
for ct in zlib zstd; do
    fixture "$QEMU_IMG" convert -c -O qcow2 -o compression_type=$ct src.raw cz-$ct.qcow2
    same "read compressed $ct" -- convert -O raw cz-$ct.qcow2 cz-$ct.raw
    same_image "read compressed $ct: result" cz-$ct.raw
    same "check compressed $ct" -- check cz-$ct.qcow2
done
# Compressed clusters spread over many copy steps, under an overlay: the
# workers of convert and compare read (and inflate) one read-only node at once.
mkmixed() { # FILE: 24 MiB, every MiB a compressible run and a random one
    truncate -s 24M "$1" || return 1
    for i in $(seq 0 23); do
        _put "$1" $((i * 1048576)) 196608 _pattern $((i * 7 + 1)) || return 1
        _put "$1" $((i * 1048576 + 327680)) 131072 randbytes "mixed-$i" 131072 || return 1
    done
}
fixture mkmixed mixed.raw
for ct in zlib zstd; do
    fixture "$QEMU_IMG" convert -c -O qcow2 -o compression_type=$ct mixed.raw mz-$ct.qcow2
    fixture "$QEMU_IMG" create -q -f qcow2 -b mz-$ct.qcow2 -F qcow2 mzt-$ct.qcow2
    fixture qio -c 'write -P 0x5a 3M 70k' -c 'write -P 0x5b 20M 1M' mzt-$ct.qcow2
    same "read compressed $ct under an overlay, -m 8 -W" -- convert -m 8 -W -O raw mzt-$ct.qcow2 mzt-$ct.raw
    same_image "read compressed $ct under an overlay: result" mzt-$ct.raw
    same "compare compressed $ct overlay with its copy" -- compare mzt-$ct.qcow2 mzt-$ct.raw
    same "compare compressed $ct base with the overlay's copy" -- compare mz-$ct.qcow2 mzt-$ct.raw
done
fixture "$QEMU_IMG" create -q -f qcow2 -b plain.qcow2 -F qcow2 top.qcow2
fixture qio -c 'write -P 0xcd 10k 1k' -c 'write -P 0xce 3M 4k' top.qcow2
same "read through backing" -- convert -O raw top.qcow2 top.raw
same_image "read through backing: result" top.raw
same "info of overlay" -- info top.qcow2

# ============================================================== write

for o in "" "-o compat=0.10" "-o cluster_size=512" "-o cluster_size=2M" "-o refcount_bits=1" \
         "-c" "-c -o compression_type=zstd" "-o preallocation=metadata"; do
    same "convert to qcow2 [$o]" -- convert -O qcow2 $o src.raw w.qcow2
    check "convert to qcow2 [$o]: bytes equal qemu-img's" cmp "$A/w.qcow2" "$B/w.qcow2"
    verify "convert to qcow2 [$o]: check" -- check w.qcow2
    verify "convert to qcow2 [$o]: compare" -- compare w.qcow2 src.raw
done
same "convert to qcow2 extended_l2" -- convert -O qcow2 -o extended_l2=on src.raw wx.qcow2
verify "convert extended_l2: check" -- check wx.qcow2
verify "convert extended_l2: compare" -- compare wx.qcow2 src.raw

# ============================================================== check / repair

mkbad() {
    "$QEMU_IMG" create -q -f qcow2 "$1" 64M
    qio -c 'write -P 1 0 1M' -c 'write -P 2 4M 64k' "$1"
}
fixture mkbad leak0.qcow2
fixture poke leak0.qcow2 $((0x20000 + 46)) 0001
fixture truncate -s $((24 * 65536)) leak0.qcow2
fixture mkbad corr0.qcow2
fixture poke corr0.qcow2 $((0x20000)) 0000
for f in leak0 corr0; do
    same "check $f" -- check $f.qcow2
    same "check $f json" --filter 'grep -v filename' -- check --output=json $f.qcow2
    fixture cp $f.qcow2 ${f}l.qcow2
    same "check -r leaks $f" -- check -r leaks ${f}l.qcow2
    fixture cp $f.qcow2 ${f}a.qcow2
    same "check -r all $f" -- check -r all ${f}a.qcow2
    verify "check -r all $f: result" -- check ${f}a.qcow2
done

# ============================================================== measure

same "measure 10G" -- measure -O qcow2 --size 10G
same "measure 1G 2M prealloc full" -- measure -O qcow2 -o cluster_size=2M,preallocation=full --size 1G
same "measure of an image" -- measure -O qcow2 plain.qcow2
same "measure of an image json" -- measure -O qcow2 --output=json cz-zlib.qcow2

# ============================================================== hostile headers

fixture "$QEMU_IMG" create -q -f qcow2 h.qcow2 1M
for p in "20 00000008" "20 00000016" "4 00000004" "96 00000007" "100 00000010" \
         "72 0000000000000100" "72 0000000000000100:feat" "36 00000000" "40 0000000000000001" \
         "56 00000000" "48 0000000000000123" "104 05" "16 00001000" "8 0000000000020000" \
         "24 00000000000001ff" "24 ffffffffffffffff" "32 ffffffff"; do
    set -- $p
    fixture cp h.qcow2 hh.qcow2
    fixture poke hh.qcow2 "$1" "${2%%:*}"
    same "hostile header @$1=$2" -- info hh.qcow2
done

# ============================================================== hostile snapshot tables
# check reads the snapshot table itself (a check open skips its validation):
# an unaligned or oversized table, or an entry with too much extra data, ends
# with "ERROR ..." and "Check failed" (exit 1); a v3 entry whose extra data
# lacks the disk size is a corruption (exit 2).
mkst() { "$QEMU_IMG" create -q -f qcow2 st.qcow2 1M && "$QEMU_IMG" snapshot -c s1 st.qcow2; }
fixture mkst
stoff=$(od -An -tu8 --endian=big -j64 -N8 "$A/st.qcow2" | tr -d ' ')
for p in "68 00000201" "60 00010001" "$((stoff + 36)) 00010000" "$((stoff + 36)) 00000008"; do
    set -- $p
    fixture cp st.qcow2 sth.qcow2
    fixture poke sth.qcow2 "$1" "$2"
    same "check: hostile snapshot table @$1=$2" -- check sth.qcow2
done

# ============================================================== resize
# Shrinking cuts the file after the last used cluster (qemu's file layer
# truncates exactly); growing with preallocation places refcount structures
# and data clusters as qemu does.
mks() { "$QEMU_IMG" create -q -f qcow2 s.qcow2 64M &&
        qio -c 'write -P 1 0 1M' -c 'write -P 2 40M 1M' -c 'discard 40M 1M' s.qcow2; }
fixture mks
same "resize --shrink" -- resize --shrink s.qcow2 8M
check "resize --shrink: bytes equal qemu-img's" cmp "$A/s.qcow2" "$B/s.qcow2"
verify "resize --shrink: check" -- check s.qcow2
for o in "" cluster_size=4k extended_l2=on cluster_size=16k,extended_l2=on,refcount_bits=1; do
    for p in metadata falloc full; do
        g="g-${o//[=,]/_}-$p.qcow2"
        fixture "$QEMU_IMG" create -q -f qcow2 ${o:+-o $o} "$g" 1M
        fixture qio -c 'write -P 3 0 100k' "$g"
        same "resize --preallocation=$p [$o]" -- resize --preallocation=$p "$g" 7M
        check "resize --preallocation=$p [$o]: bytes equal" cmp "$A/$g" "$B/$g"
    done
done
verify "resize --preallocation: check" -- check "g--full.qcow2"
same_map "resize --preallocation: map" "g-extended_l2_on-falloc.qcow2" qcow2

# ============================================ full preallocation, rebase, -t none
# (the fast paths of src/protocols/file.c, rebase_run and O_DIRECT converts:
# same bytes, same allocation, same map as qemu-img's)
for o in "" cluster_size=4k extended_l2=on,cluster_size=16k; do
    f="pf-${o//[=,]/_}.qcow2"
    same "create preallocation=full [$o]" -- create -q -f qcow2 -o preallocation=full${o:+,$o} "$f" 5M
    check "create preallocation=full [$o]: bytes equal" cmp "$A/$f" "$B/$f"
    same_alloc "create preallocation=full [$o]: written blocks, no holes" "$f"
    same_map "create preallocation=full [$o]: map" "$f" qcow2
    verify "create preallocation=full [$o]: check" -- check "$f"
done
same "create -f raw preallocation=full odd size" -- create -q -f raw -o preallocation=full pf.raw 3000001
check "create -f raw preallocation=full: bytes equal" cmp "$A/pf.raw" "$B/pf.raw"
same_alloc "create -f raw preallocation=full: allocation" pf.raw

mkrb() {
    rm -f rb-old.qcow2 rb-new.qcow2 rb.qcow2
    "$QEMU_IMG" create -q -f qcow2 rb-old.qcow2 9M &&
    "$QEMU_IO" -f qcow2 -c 'write -P 0x11 0 3M' -c 'write -z 3M 1M' -c 'write -P 0x12 5M 512' \
        -c 'write -P 0x13 6M 2M' -c 'write -P 0 8M 64k' rb-old.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 rb-new.qcow2 7M &&
    "$QEMU_IO" -f qcow2 -c 'write -P 0x11 0 1M' -c 'write -P 0x21 1M 1536' -c 'write -P 0x13 6M 1M' \
        rb-new.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -b rb-old.qcow2 -F qcow2 rb.qcow2 9M &&
    "$QEMU_IO" -f qcow2 -c 'write -P 0x31 2M 1M' -c 'write -P 0x32 7M 4k' rb.qcow2 >/dev/null &&
    cp rb.qcow2 rb-ref.qcow2 && cp rb-old.qcow2 rb-oldref.qcow2 &&
    "$QEMU_IMG" rebase -u -b rb-oldref.qcow2 -F qcow2 rb-ref.qcow2
}
for nb in "''" "rb-new.qcow2 -F qcow2"; do
    fixture mkrb
    eval "same \"rebase -b $nb\" -- rebase -b $nb rb.qcow2"
    same_map "rebase -b $nb: map" rb.qcow2 qcow2
    verify "rebase -b $nb: check" -- check rb.qcow2
    check "rebase -b $nb: content unchanged" "$QEMU_IMG" compare "$A/rb-ref.qcow2" "$A/rb.qcow2"
done

fixture mkdata nc.raw 13M nocache
for t in "-t none -T none" "-t none" "-T none -m 2"; do
    n="nc-${t//[ -]/}.qcow2"
    eval "same \"convert $t\" -- convert $t -f raw -O qcow2 nc.raw $n"
    same_map "convert $t: map" "$n" qcow2
    same_image "convert $t: content" "$n" qcow2
    verify "convert $t: check" -- check "$n"
done
# O_DIRECT targets: whole unallocated clusters are allocated in turn and
# their data written outside the qcow2 lock (blk_pwrite_map); partial
# clusters, subclusters and 4k clusters mix both paths. Same layout.
mknc2() {
    rm -f nc2.raw
    "$QEMU_IMG" create -q -f raw nc2.raw 24M &&
    "$QEMU_IO" -f raw -c 'write -P 0x41 0 5M' -c 'write -P 0x42 6M 3000k' -c 'write -P 0 10M 1M' \
        -c 'write -P 0x43 12M 65k' -c 'write -P 0x44 15872k 8M' nc2.raw >/dev/null
}
fixture mknc2
for o in "" cluster_size=4k lazy_refcounts=on compat=0.10 extended_l2=on; do
    n="nc2-${o//[=.]/_}.qcow2"
    same "convert -t none -o [$o]" -- convert -t none -T none -m 4 -f raw -O qcow2 ${o:+-o $o} nc2.raw "$n"
    same_map "convert -t none -o [$o]: map" "$n" qcow2
    same_image "convert -t none -o [$o]: content" "$n" qcow2
    verify "convert -t none -o [$o]: check" -- check "$n"
done
