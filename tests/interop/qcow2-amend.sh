#!/usr/bin/env bash
# Interop: qemu-img amend on qcow2 (compat up/downgrade, refcount width,
# lazy refcounts, size, backing/data file options, LUKS key slots, option
# errors, -p progress). Each amendment runs with qimg on one copy and the
# real qemu-img 7.2 on a twin: stdout (progress with \r), stderr and exit
# code must be equal, the real tool must find qimg's result clean and equal
# to its own (byte for byte: qemu's amend is deterministic on a file
# system), and qimg must read images amended by the real tool.
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------ inputs

mk_inputs() {
    "$QEMU_IMG" create -q -f qcow2 base.qcow2 4M &&
    "$QEMU_IO" -c 'write -P 0x55 0 4M' base.qcow2 >/dev/null &&
    # v3 with data, an allocated zero cluster and plain zero clusters
    "$QEMU_IMG" create -q -f qcow2 v3.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -z 128k 64k' \
        -c 'write -P 0x22 192k 64k' -c 'write -z 192k 64k' v3.qcow2 >/dev/null &&
    # v2
    "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 v2.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -P 0x33 512k 4k' v2.qcow2 >/dev/null &&
    # backed v3 with zero clusters over backing data
    "$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -z 128k 64k' -c 'write -z 512k 128k' \
        ov.qcow2 >/dev/null &&
    # 512-byte clusters: many refcount blocks, a snapshot (refcounts of 2)
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=512 sm.qcow2 4M &&
    "$QEMU_IO" -c 'write -P 0x11 0 512k' -c 'write -z 1M 64k' -c 'write -P 0x22 3M 512k' \
        sm.qcow2 >/dev/null &&
    "$QEMU_IMG" snapshot -c s1 sm.qcow2 &&
    "$QEMU_IO" -c 'write -P 0x44 0 64k' -c 'write -z 3M 4k' sm.qcow2 >/dev/null &&
    # 512-byte clusters without snapshot, 64-bit refcounts
    "$QEMU_IMG" create -q -f qcow2 -o cluster_size=512,refcount_bits=64 r64.qcow2 4M &&
    "$QEMU_IO" -c 'write -P 0x11 0 2M' -c 'write -z 3M 64k' r64.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -o extended_l2=on xl2.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -z 64k 64k' xl2.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -o compression_type=zstd zstd.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' zstd.qcow2 >/dev/null &&
    cp zstd.qcow2 zstdc.qcow2 &&
    "$QEMU_IO" -c 'write -c -P 0x11 128k 64k' zstdc.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -o data_file=df.data df.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' df.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -o data_file=dr.data,data_file_raw=on dr.qcow2 1M &&
    "$QEMU_IMG" create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' lazy.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f raw plain.raw 1M
}
# Made once (snapshot dates must be equal on both sides), then copied.
(cd "$W" && mk_inputs) || _bail "could not make the input images"
for d in "$A" "$B"; do cp -p "$W"/* "$d"/ || _bail "could not copy the inputs"; done

n=0
# amend_ok NAME INPUT OPTS [EXTRA ARGS]: amend a fresh copy of INPUT with
# both tools; outputs equal, qimg's result clean, equal to qemu's.
# NO_ALLOC=1: skip the file allocation comparison; NO_COMPARE=1: skip
# `qemu-img compare` (the image no longer opens on its own).
amend_ok() {
    local name=$1 in=$2 o=$3 f
    shift 3
    n=$((n + 1))
    f=am$n.qcow2
    fixture cp "$in" "$f"
    same "amend $name" -- amend -p "$@" -o "$o" "$f"
    verify "amend $name: check" -- check "$f"
    # actual-size depends on where the file system placed the blocks.
    verify "amend $name: info" --filter "grep -v actual-size" -- info --output=json "$f"
    [ -n "${NO_ALLOC:-}" ] || same_alloc "amend $name: same allocated ranges as qemu-img's" "$f"
    check_sh "amend $name: same bytes as qemu-img's" "cmp '$A/$f' '$B/$f'"
    [ -n "${NO_COMPARE:-}" ] || check_sh "amend $name: same content as qemu-img's" \
        "'$QEMU_IMG' compare -q '$A/$f' '$B/$f'"
    rm -f "$A/$f" "$B/$f"   # fewer files for the harness to sync
}
# amend_same NAME INPUT OPTS: a cheaper amend_ok for trivial variants.
amend_same() {
    local name=$1 in=$2 o=$3 f
    n=$((n + 1))
    f=am$n.qcow2
    fixture cp "$in" "$f"
    same "amend $name" -- amend -p -o "$o" "$f"
    check_sh "amend $name: same bytes as qemu-img's" "cmp '$A/$f' '$B/$f'"
    rm -f "$A/$f" "$B/$f"
}
# amend_err NAME INPUT OPTS [EXTRA ARGS]: an amendment qemu-img refuses.
amend_err() {
    local name=$1 in=$2 o=$3 f
    shift 3
    n=$((n + 1))
    f=am$n.qcow2
    fixture cp "$in" "$f"
    same "amend $name (error)" --rc 1 -- amend -p "$@" -o "$o" "$f"
    check_sh "amend $name (error): image as qemu-img leaves it" "cmp '$A/$f' '$B/$f'"
    rm -f "$A/$f" "$B/$f"
}

# ------------------------------------------------------------ compat

amend_ok "v3 -> compat=0.10" v3.qcow2 compat=0.10
amend_same "v3 -> compat=v2" v3.qcow2 compat=v2
amend_same "v3 -> compat=1.1 (no change)" v3.qcow2 compat=1.1
amend_ok "v2 -> compat=1.1" v2.qcow2 compat=1.1
amend_ok "v2 -> compat=v3 with lazy refcounts" v2.qcow2 compat=v3,lazy_refcounts=on
amend_same "v2 -> compat=1.1 with refcount_bits=8" v2.qcow2 compat=1.1,refcount_bits=8
amend_ok "backed v3 -> compat=0.10 (zero clusters allocated)" ov.qcow2 compat=0.10
amend_ok "snapshotted 512-byte clusters -> compat=0.10" sm.qcow2 compat=0.10
amend_ok "zstd without compressed clusters -> compat=0.10" zstd.qcow2 compat=0.10
amend_err "zstd with compressed clusters -> compat=0.10" zstdc.qcow2 compat=0.10
amend_err "extended L2 -> compat=0.10" xl2.qcow2 compat=0.10
amend_err "data file -> compat=0.10" df.qcow2 compat=0.10
amend_err "refcount_bits=64 -> compat=0.10" r64.qcow2 compat=0.10
amend_ok "refcount_bits=64 -> compat=0.10,refcount_bits=16" r64.qcow2 compat=0.10,refcount_bits=16
amend_err "unknown compat" v3.qcow2 compat=1.2
amend_err "empty compat" v3.qcow2 compat=

# ------------------------------------------------------------ refcount width

for w in 1 4 64; do
    amend_ok "refcount_bits=$w" v3.qcow2 refcount_bits=$w
done
amend_ok "512-byte clusters refcount_bits=64 (table grows)" sm.qcow2 refcount_bits=64
amend_ok "512-byte clusters refcount_bits=2" sm.qcow2 refcount_bits=2
amend_ok "64-bit refcounts -> refcount_bits=1" r64.qcow2 refcount_bits=1
amend_err "refcount_bits=1 with shared clusters" sm.qcow2 refcount_bits=1
amend_err "v2 refcount_bits=8" v2.qcow2 refcount_bits=8
amend_err "refcount_bits=32 with compat=0.10" v3.qcow2 refcount_bits=32,compat=0.10
for w in 3 -1; do
    amend_err "refcount_bits=$w" v3.qcow2 refcount_bits=$w
done

# ------------------------------------------------------------ lazy refcounts

amend_ok "lazy_refcounts=on" v3.qcow2 lazy_refcounts=on
amend_ok "lazy_refcounts=off" lazy.qcow2 lazy_refcounts=off
amend_same "lazy_refcounts=on unchanged" lazy.qcow2 lazy_refcounts=on
amend_err "v2 lazy_refcounts=on" v2.qcow2 lazy_refcounts=on
amend_err "lazy_refcounts=on with compat=0.10" v3.qcow2 lazy_refcounts=on,compat=0.10

# A dirty image (lazy refcounts, killed writer): both tools repair it when
# opening; the results are clean and hold the same data.
mk_dirty() {
    "$QEMU_IMG" create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 1M &&
    { "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'sigraise 9' dirty.qcow2 >/dev/null 2>&1; true; }
}
fixture mk_dirty
for o in lazy_refcounts=off compat=0.10; do
    fixture cp dirty.qcow2 "d-$o.qcow2"
    check "dirty image: qimg amend -o $o" "$QIMG" amend -o "$o" "$A/d-$o.qcow2"
    check "dirty image: qemu-img amend -o $o" "$QEMU_IMG" amend -o "$o" "$B/d-$o.qcow2"
    verify "dirty image, $o: check" -- check "d-$o.qcow2"
    check_sh "dirty image, $o: same content as qemu-img's" \
        "'$QEMU_IMG' compare -q '$A/d-$o.qcow2' '$B/d-$o.qcow2'"
done

# ------------------------------------------------------------ size

amend_ok "size=2M" v3.qcow2 size=2M
# qimg's shrink does not rewrite the refcount table as qemu's does (same
# bytes, but qemu's write allocates the table cluster's tail in the file).
NO_ALLOC=1 amend_ok "size=512k (shrink)" v3.qcow2 size=512k
amend_same "size=0 (no change)" v3.qcow2 size=0
amend_ok "backed: size=3M (backing shows through: zeroed)" ov.qcow2 size=3M
amend_same "backed: size=8M" ov.qcow2 size=8M
amend_ok "size with compat=0.10" v3.qcow2 size=2M,compat=0.10
amend_err "size=1000" v3.qcow2 size=1000
amend_err "size=8E" v3.qcow2 size=8E
amend_err "size beyond the block layer's maximum" v3.qcow2 size=9223372036854775296
mk_v2b() {
    "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 v2b.qcow2 1M
}
fixture mk_v2b
amend_err "v2 backed: size=2M (no zero clusters)" v2b.qcow2 size=2M

# ------------------------------------------------------------ backing / data file

amend_same "backing_file and backing_fmt unchanged" ov.qcow2 backing_file=base.qcow2,backing_fmt=qcow2
amend_err "backing_file changed" ov.qcow2 backing_file=other.qcow2
amend_err "backing_file without backing_fmt" ov.qcow2 backing_file=base.qcow2
amend_err "backing_fmt=raw" ov.qcow2 backing_fmt=raw
amend_err "backing_file on an image without one" v3.qcow2 backing_file=base.qcow2
NO_COMPARE=1 amend_ok "data_file renamed" df.qcow2 data_file=other.data
NO_COMPARE=1 amend_ok "data_file cleared" df.qcow2 data_file=
amend_ok "data_file_raw=off" df.qcow2 data_file_raw=off
amend_ok "data_file_raw=off on a raw data file" dr.qcow2 data_file_raw=off
amend_same "data_file_raw=on kept" dr.qcow2 data_file_raw=on
amend_err "data_file without a data file" v3.qcow2 data_file=x.data
amend_err "data_file_raw=on on a non-raw data file" df.qcow2 data_file_raw=on
amend_ok "refcount_bits=8 with a data file" df.qcow2 refcount_bits=8

# ------------------------------------------------------------ creation-only and bad options

for o in cluster_size=4k extended_l2=off compression_type=zlib encrypt.format=luks foo=bar \
         lazy_refcounts=maybe size=abc; do
    same "amend -o $o (error)" --rc 1 -- amend -o "$o" v3.qcow2
done
amend_err "encrypt.state on an unencrypted image" v3.qcow2 encrypt.state=inactive
amend_err "encrypt.keyslot before a bad compat" v3.qcow2 encrypt.keyslot=1,compat=9

# ------------------------------------------------------------ LUKS key slots

mk_luks() {
    "$QEMU_IMG" create -q -f qcow2 --object secret,id=s0,data=abc \
        -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 lk.qcow2 1M
}
fixture mk_luks
sec='--object secret,id=s0,data=abc --object secret,id=s1,data=def'
same "luks: add a key slot" -- amend $sec --image-opts \
    -o encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10 \
    driver=qcow2,file.filename=lk.qcow2,encrypt.key-secret=s0
same "luks: erase slot 0" -- amend $sec --image-opts -o encrypt.state=inactive,encrypt.keyslot=0 \
    driver=qcow2,file.filename=lk.qcow2,encrypt.key-secret=s1
same "luks: erasing the last slot needs --force" -- amend $sec --image-opts \
    -o encrypt.state=inactive,encrypt.keyslot=1 driver=qcow2,file.filename=lk.qcow2,encrypt.key-secret=s1
verify "luks: check after key slot changes" -- check $sec --image-opts \
    driver=qcow2,file.filename=lk.qcow2,encrypt.key-secret=s1

# ------------------------------------------------------------ command line

same "amend -f qcow2 -o help" -- amend -f qcow2 -o help
same "amend -o help (probed)" -- amend -o help v3.qcow2
same "amend -o ? (probed)" -- amend -o '?' v3.qcow2
same "amend -o help,compat=1.1" -- amend -o help,compat=1.1 v3.qcow2
same "amend -f raw -o help" -- amend -f raw -o help
same "amend -f foo -o help" -- amend -f foo -o help
same "amend of a raw image" -- amend -o compat=1.1 plain.raw
same "amend -f vmdk of a qcow2 image" -- amend -f vmdk -o compat=1.1 v3.qcow2
same "amend without -o" -- amend v3.qcow2
same "amend without file name" -- amend -o compat=1.1
same "amend with two file names" -- amend -o compat=1.1 v3.qcow2 v2.qcow2
same "amend -o ," -- amend -o , v3.qcow2
same "amend -p -o compat=1.1," -- amend -p -o compat=1.1, v3.qcow2
same "amend -t foo" -- amend -p -t foo -o compat=1.1 v3.qcow2
same "amend of a missing file with -p" -- amend -p -o compat=1.1 missing.qcow2
same "amend -x" -- amend -x -o compat=1.1 v3.qcow2
same "amend -o (no argument)" -- amend -o
same "amend --object without id" -- amend --object foo -o compat=1.1 v3.qcow2
fixture cp v3.qcow2 cl.qcow2
same "amend -q -p -t none -f qcow2" -- amend -q -p -t none -f qcow2 -o lazy_refcounts=on cl.qcow2
same "amend --image-opts" -- amend --image-opts -o refcount_bits=8 driver=qcow2,file.filename=cl.qcow2
check_sh "amend -q/-t/--image-opts: same bytes as qemu-img's" "cmp '$A/cl.qcow2' '$B/cl.qcow2'"

# ------------------------------------------------------------ qimg reads qemu-amended images

for c in "ov.qcow2 compat=0.10" "sm.qcow2 refcount_bits=64" "v2.qcow2 compat=1.1,lazy_refcounts=on"; do
    set -- $c
    n=$((n + 1))
    f=qa$n.qcow2
    fixture cp "$1" "$f"
    fixture "$QEMU_IMG" amend -o "$2" "$f"
    same "qemu-amended $1 ($2): info" --filter "grep -v actual-size" -- info --output=json "$f"
    same "qemu-amended $1 ($2): check" -- check "$f"
    same "qemu-amended $1 ($2): map" -- map --output=json "$f"
    same "qemu-amended $1 ($2): convert -O raw" -- convert -O raw "$f" "$f.raw"
    same_image "qemu-amended $1 ($2): converted raw" "$f.raw"
done
