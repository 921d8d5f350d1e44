#!/usr/bin/env bash
# fuzz/make-corpus.sh [OUTDIR] — seed corpora for the fuzz targets, made by
# the real qemu-img/qemu-io (the oracle), so fuzzing starts from images that
# reach deep into every driver: data, snapshots, compression, backing files,
# external data files, encryption, bitmaps, every subformat.
#
# Writes OUTDIR/<target>/<seed> (default fuzz/corpus, not committed).
# Multi-file seeds use the container of fuzz/fuzz.h: the image, then
# "\n#QIMG-FILE <name>\n" and each file it names (backing file, extents).
# Images are small (tiny virtual sizes, small clusters) so that fuzzing
# stays fast. The LUKS passphrase is "qimg-fuzz", as the targets expect.
set -eu
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus}
QEMU_IMG=${QEMU_IMG:-qemu-img}
QEMU_IO=${QEMU_IO:-qemu-io}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qimg-corpus.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

SECRET=(--object secret,id=sec0,data=qimg-fuzz)
# strip_zeros FILE: drop the zeros a file ends with (the mem protocol of the
# fuzz targets reads zeros past the end)
strip_zeros() { python3 -c 'import sys; d=open(sys.argv[1],"rb").read().rstrip(b"\0"); open(sys.argv[1],"wb").write(d)' "$1"; }

img() {
    # Encrypted images use iter-time=1: PBKDF2 iterations at qemu's floor of
    # 1000 for the key digest and a few thousand per key slot, instead of
    # hundreds of thousands, so unlocking costs milliseconds, not seconds, of
    # a fuzz input (fuzz/README.md). qemu's PBKDF benchmark fails
    # now and then on a busy machine ("Unable to get accurate CPU usage"):
    # encrypted creates and amends are retried.
    if [[ "$*" == *iter-time=1* ]]; then
        local t
        for t in 1 2 3 4 5; do
            "$QEMU_IMG" "$@" >/dev/null 2>&1 && return 0
        done
    fi
    "$QEMU_IMG" "$@" >/dev/null
}
# fill IMG FMT: a few recognisable writes, one of them zeros
fill() {
    "$QEMU_IO" -f "$2" -c 'write -P 0x11 0 4k' -c 'write -P 0x22 12k 8k' \
        -c 'write -z 40k 4k' -c 'write -P 0x33 60k 1k' "$1" >/dev/null
}
fill_secret() {
    "$QEMU_IO" "${SECRET[@]}" --image-opts -c 'write -P 0x11 0 4k' -c 'write -P 0x22 12k 8k' \
        "$1" >/dev/null
}
# put TARGET NAME FILE [PARTNAME PARTFILE]...: one seed (multi-file container)
put() {
    local t=$1 name=$2 f=$3
    shift 3
    mkdir -p "$out/$t"
    {
        cat "$f"
        while [ $# -ge 2 ]; do
            printf '\n#QIMG-FILE %s\n' "$1"
            cat "$2"
            shift 2
        done
    } >"$out/$t/$name"
}
# seed TARGET NAME FILE [...]: also into the probe target
seed() {
    put "$@"
    put probe "$1-$2" "${@:3}"
}

# ---- qcow2
img create -f qcow2 -o cluster_size=4k q2-v3.qcow2 256k && fill q2-v3.qcow2 qcow2
seed qcow2 v3 q2-v3.qcow2
img create -f qcow2 -o compat=0.10,cluster_size=4k q2-v2.qcow2 256k && fill q2-v2.qcow2 qcow2
seed qcow2 v2 q2-v2.qcow2
img create -f qcow2 q2-64k.qcow2 1M && fill q2-64k.qcow2 qcow2
put qcow2 64k q2-64k.qcow2
img create -f qcow2 -o cluster_size=512,refcount_bits=1 q2-512.qcow2 64k && fill q2-512.qcow2 qcow2
put qcow2 c512-rc1 q2-512.qcow2
img create -f qcow2 -o cluster_size=4k,refcount_bits=64,lazy_refcounts=on q2-lazy.qcow2 256k
fill q2-lazy.qcow2 qcow2
put qcow2 lazy-rc64 q2-lazy.qcow2
img create -f qcow2 -o cluster_size=16k,extended_l2=on q2-ext.qcow2 256k && fill q2-ext.qcow2 qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x44 2k 1k' q2-ext.qcow2 >/dev/null
put qcow2 extended-l2 q2-ext.qcow2
# snapshots
cp q2-v3.qcow2 q2-snap.qcow2
img snapshot -c snap1 q2-snap.qcow2
"$QEMU_IO" -f qcow2 -c 'write -P 0x55 0 8k' q2-snap.qcow2 >/dev/null
img snapshot -c snap2 q2-snap.qcow2
put qcow2 snapshots q2-snap.qcow2
# compression (zlib and zstd)
img create -f raw raw-data.img 256k
"$QEMU_IO" -f raw -c 'write -P 0x66 0 32k' -c 'write -P 0x67 96k 16k' raw-data.img >/dev/null
img convert -c -O qcow2 -o cluster_size=4k raw-data.img q2-zlib.qcow2
put qcow2 compressed-zlib q2-zlib.qcow2
img convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd raw-data.img q2-zstd.qcow2
put qcow2 compressed-zstd q2-zstd.qcow2
# backing file (relative name, resolved inside the container)
cp q2-v3.qcow2 base
img create -f qcow2 -o cluster_size=4k -b base -F qcow2 q2-top.qcow2 256k
"$QEMU_IO" -f qcow2 -c 'write -P 0x77 8k 4k' q2-top.qcow2 >/dev/null
seed qcow2 backing q2-top.qcow2 base q2-v3.qcow2
cp raw-data.img base
img create -f qcow2 -o cluster_size=4k -b base -F raw q2-top-raw.qcow2 256k
put qcow2 backing-raw q2-top-raw.qcow2 base raw-data.img
# external data file
img create -f qcow2 -o cluster_size=4k,data_file=data.raw q2-df.qcow2 256k && fill q2-df.qcow2 qcow2
put qcow2 data-file q2-df.qcow2 data.raw data.raw
# persistent bitmaps
cp q2-v3.qcow2 q2-bm.qcow2
img bitmap --add q2-bm.qcow2 bm0
img bitmap --add -g 64k q2-bm.qcow2 bm1
img bitmap --disable q2-bm.qcow2 bm1
put qcow2 bitmaps q2-bm.qcow2
# metadata preallocation
img create -f qcow2 -o cluster_size=4k,preallocation=metadata q2-pre.qcow2 64k
put qcow2 prealloc q2-pre.qcow2
# encryption: luks inside qcow2 (aes-128-cbc keeps the LUKS header at
# 0.5 MiB; libFuzzer cuts seeds at 1 MiB) and legacy aes
img create "${SECRET[@]}" -f qcow2 -o cluster_size=4k,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=1,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv q2-luks.qcow2 64k
fill_secret "driver=qcow2,encrypt.key-secret=sec0,file.filename=q2-luks.qcow2"
put qcow2 luks q2-luks.qcow2
img create "${SECRET[@]}" -f qcow2 -o cluster_size=4k,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=1 q2-luks-xts.qcow2 64k
strip_zeros q2-luks-xts.qcow2
put qcow2 luks-xts-empty q2-luks-xts.qcow2
img create "${SECRET[@]}" -f qcow2 -o cluster_size=4k,encrypt.format=aes,encrypt.key-secret=sec0 q2-aes.qcow2 64k 2>/dev/null && \
    put qcow2 aes q2-aes.qcow2 || true

# ---- qcow (v1)
img create -f qcow q1.qcow 256k && fill q1.qcow qcow
seed qcow plain q1.qcow
img convert -c -O qcow raw-data.img q1-c.qcow 2>/dev/null || true   # exits 1, image written
put qcow compressed q1-c.qcow
cp q1.qcow base
img create -f qcow -b base -F qcow q1-top.qcow 256k
"$QEMU_IO" -f qcow -c 'write -P 0x77 8k 4k' q1-top.qcow >/dev/null
put qcow backing q1-top.qcow base q1.qcow
img create "${SECRET[@]}" -f qcow -o encrypt.format=aes,encrypt.key-secret=sec0 q1-aes.qcow 64k 2>/dev/null && \
    put qcow aes q1-aes.qcow || true

# ---- qed
img create -f qed -o cluster_size=4k,table_size=4 qed.qed 256k && fill qed.qed qed
seed qed plain qed.qed
img create -f qed qed-64k.qed 1M && fill qed-64k.qed qed
put qed 64k qed-64k.qed
cp qed.qed base
img create -f qed -o cluster_size=4k,table_size=4 -b base -F qed qed-top.qed 256k
"$QEMU_IO" -f qed -c 'write -P 0x77 8k 4k' qed-top.qed >/dev/null
put qed backing qed-top.qed base qed.qed

# ---- vmdk
img create -f vmdk vm-sparse.vmdk 256k && fill vm-sparse.vmdk vmdk
seed vmdk sparse vm-sparse.vmdk
img convert -O vmdk -o subformat=streamOptimized raw-data.img vm-stream.vmdk
seed vmdk stream vm-stream.vmdk
img create -f vmdk -o zeroed_grain=on vm-zg.vmdk 256k && fill vm-zg.vmdk vmdk
put vmdk zeroed-grain vm-zg.vmdk
img create -f vmdk -o compat6=on,hwversion=6 vm-c6.vmdk 128k 2>/dev/null || img create -f vmdk -o compat6=on vm-c6.vmdk 128k
put vmdk compat6 vm-c6.vmdk
cp vm-sparse.vmdk base
img create -f vmdk -b base -F vmdk vm-top.vmdk 256k
put vmdk backing vm-top.vmdk base vm-sparse.vmdk
# descriptor files with their extents
mkdir -p d && cd d
img create -f vmdk -o subformat=monolithicFlat flat.vmdk 64k
"$QEMU_IO" -f vmdk -c 'write -P 0x12 0 4k' flat.vmdk >/dev/null
put vmdk_desc monolithicFlat flat.vmdk flat-flat.vmdk flat-flat.vmdk
put vmdk desc-monolithicFlat flat.vmdk flat-flat.vmdk flat-flat.vmdk
img create -f vmdk -o subformat=twoGbMaxExtentSparse tgs.vmdk 128k && fill tgs.vmdk vmdk
put vmdk_desc twoGbMaxExtentSparse tgs.vmdk tgs-s001.vmdk tgs-s001.vmdk
img create -f vmdk -o subformat=twoGbMaxExtentFlat tgf.vmdk 64k
put vmdk_desc twoGbMaxExtentFlat tgf.vmdk tgf-f001.vmdk tgf-f001.vmdk
# hand-written descriptors: several extents, VMFS, an absent extent, ZERO
cat >multi.vmdk <<'EOF'
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 64 FLAT "a.raw" 0
RW 64 FLAT "b.raw" 8
RDONLY 32 ZERO
RW 64 SPARSE "s.vmdk"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "0"
ddb.geometry.heads = "16"
ddb.geometry.sectors = "63"
ddb.adapterType = "ide"
EOF
head -c 32768 /dev/urandom >a.raw
cp a.raw b.raw
img create -f vmdk s.vmdk 32k
put vmdk_desc multi multi.vmdk a.raw a.raw b.raw b.raw s.vmdk s.vmdk
sed -e 's/monolithicFlat/vmfs/' -e '/^RW/d' -e '/^RDONLY/d' -e 's/^# Extent description$/# Extent description\nRW 64 VMFS "a.raw"/' multi.vmdk >vmfs.vmdk
put vmdk_desc vmfs vmfs.vmdk a.raw a.raw
sed -e 's/parentCID=ffffffff/parentCID=fffffffe\nparentFileNameHint="base.vmdk"/' flat.vmdk >child.vmdk
put vmdk_desc parent child.vmdk flat-flat.vmdk flat-flat.vmdk base.vmdk ../vm-sparse.vmdk
cd ..

# ---- vhdx (the tail of an image is zeros: drop it, the mem protocol reads
# zeros past the end)
img create -f vhdx -o block_size=1M,log_size=1M vhdx.vhdx 2M && fill vhdx.vhdx vhdx
strip_zeros vhdx.vhdx
seed vhdx dynamic vhdx.vhdx
img create -f vhdx -o subformat=fixed,block_size=1M,log_size=1M vhdx-f.vhdx 1M
strip_zeros vhdx-f.vhdx
put vhdx fixed vhdx-f.vhdx

# ---- vdi
img create -f vdi vdi.vdi 4M && fill vdi.vdi vdi
seed vdi dynamic vdi.vdi
img create -f vdi -o static=on vdi-s.vdi 1M
put vdi static vdi-s.vdi

# ---- vpc
img create -f vpc vpc.vhd 4M && fill vpc.vhd vpc
seed vpc dynamic vpc.vhd
img create -f vpc -o subformat=fixed vpc-f.vhd 256k && fill vpc-f.vhd vpc
put vpc fixed vpc-f.vhd
img create -f vpc -o force_size=on vpc-fs.vhd 1M
put vpc force-size vpc-fs.vhd

# ---- parallels: a few clusters each; qemu-img writes the
# "WithouFreSpacExt" magic (BAT in clusters) and no Format Extension, the
# variants are derived from its images (par_variant)
img create -f parallels -o cluster_size=4k par.img 256k && fill par.img parallels
seed parallels plain par.img
img create -f parallels -o cluster_size=1k par-1k.img 64k && fill par-1k.img parallels
put parallels c1k par-1k.img
img create -f parallels -o cluster_size=64k par-64k.img 256k
"$QEMU_IO" -f parallels -c 'write -P 0x11 0 4k' -c 'write -P 0x22 130k 8k' par-64k.img >/dev/null
put parallels c64k par-64k.img
img create -f parallels -o cluster_size=4k par-empty.img 64k
put parallels empty par-empty.img
# par_variant IN OUT KIND: "old" = the "WithoutFreeSpace" magic (BAT in
# sectors); "ext" = a Format Extension cluster with no features;
# "ext-bitmap" = one with a dirty bitmap feature whose L1 entries are
# all-ones or a data cluster; "dirty" = marked in use. The extension cluster
# is appended; its checksum is the MD5 of the cluster after its 24-byte
# header.
par_variant() {
    python3 - "$@" <<'PYEOF'
import hashlib, struct, sys
src, dst, kind = sys.argv[1:4]
d = bytearray(open(src, "rb").read())
tracks, nbat = struct.unpack_from("<II", d, 28)
nb_sectors = struct.unpack_from("<Q", d, 36)[0]
cs = tracks * 512
if kind == "old":
    d[0:16] = b"WithoutFreeSpace"
    for i in range(nbat):
        e = struct.unpack_from("<I", d, 64 + 4 * i)[0]
        struct.pack_into("<I", d, 64 + 4 * i, e * tracks)
elif kind == "dirty":
    struct.pack_into("<I", d, 44, 0x746F6E59)
else:
    d += bytes(-len(d) % cs)
    feats = b""
    if kind == "ext-bitmap":
        data_sector = (len(d) + cs) // 512       # the cluster after the extension
        gran = 8                                  # sectors (4 KiB)
        bits = -(-nb_sectors // gran)
        ser = -(-bits // 64) * 8                  # serialized in 64-bit words
        l1 = [1 if i % 2 == 0 else data_sector for i in range(-(-ser // cs))]
        if len(l1) == 1:
            l1 = [data_sector]
        body = struct.pack("<Q16sII", nb_sectors, bytes(range(16)), gran, len(l1))
        body += b"".join(struct.pack("<Q", e) for e in l1)
        feats += struct.pack("<QQII", 0x20385FAE252CB34A, 0, len(body), 0) + body
        feats += bytes(-len(feats) % 8)
    feats += struct.pack("<QQII", 0, 0, 0, 0)
    rest = feats + bytes(cs - 24 - len(feats))
    ext_sector = len(d) // 512
    d += struct.pack("<Q", 0xAB234CEF23DCEA87) + hashlib.md5(rest).digest() + rest
    if kind == "ext-bitmap":
        d += bytes([0x5A, 0xC3]) * (cs // 2)
    struct.pack_into("<Q", d, 56, ext_sector)
open(dst, "wb").write(d)
PYEOF
}
par_variant par.img par-old.img old
put parallels old-magic par-old.img
par_variant par-1k.img par-1k-old.img old
put probe parallels-old-magic par-1k-old.img
par_variant par.img par-ext.img ext
put parallels ext par-ext.img
par_variant par.img par-ext-bm.img ext-bitmap
put parallels ext-bitmap par-ext-bm.img
par_variant par-old.img par-old-ext.img ext
put parallels old-magic-ext par-old-ext.img
par_variant par-1k.img par-dirty.img dirty
put parallels dirty par-dirty.img

# ---- luks (passphrase qimg-fuzz, iter-time=1: 1000 to a few thousand
# PBKDF2 iterations). The payload starts after the 8 key slots' material
# (key length * 4000 bytes each): past 1 MiB, where libFuzzer cuts seeds
# without -max_len, for 32- and 64-byte keys (XTS), so most seeds use 16-byte
# keys (XTS is seeded through qcow2's luks-xts-empty, where the payload is
# not behind the header).
img create "${SECRET[@]}" -f luks -o key-secret=sec0,iter-time=1 luks.img 64k
fill_secret "driver=luks,key-secret=sec0,file.filename=luks.img"
seed luks aes-xts luks.img
img create "${SECRET[@]}" -f luks -o key-secret=sec0,iter-time=1,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256 luks-cbc.img 64k
fill_secret "driver=luks,key-secret=sec0,file.filename=luks-cbc.img"
put luks aes-cbc-essiv luks-cbc.img
img create "${SECRET[@]}" -f luks -o key-secret=sec0,iter-time=1,cipher-alg=aes-128,cipher-mode=ctr,ivgen-alg=plain,hash-alg=sha1 luks-ctr.img 64k
fill_secret "driver=luks,key-secret=sec0,file.filename=luks-ctr.img"
put luks aes-ctr-plain-sha1 luks-ctr.img
if img create "${SECRET[@]}" -f luks -o key-secret=sec0,iter-time=1,cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=plain64,hash-alg=sha512 luks-tf.img 64k; then
    fill_secret "driver=luks,key-secret=sec0,file.filename=luks-tf.img"
    put luks twofish-cbc-sha512 luks-tf.img
fi
# the passphrase in key slot 3 only: slot 0 (another passphrase) is tried first
img create --object secret,id=sec1,data=other-pass -f luks -o key-secret=sec1,iter-time=1,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=plain64 luks-2slot.img 64k
img amend "${SECRET[@]}" --object secret,id=sec1,data=other-pass \
    -o state=active,new-secret=sec0,keyslot=3,iter-time=1 \
    --image-opts "driver=luks,key-secret=sec1,file.filename=luks-2slot.img"
fill_secret "driver=luks,key-secret=sec0,file.filename=luks-2slot.img"
put luks slot3 luks-2slot.img

# ---- read-only formats qemu-img cannot create (bochs, cloop, dmg): the
# deterministic images of the interop tests, hostile variants included
mkdir -p ro
python3 "$here/../tests/interop/gen-ro-images.py" ro >/dev/null
for f in ro/*.bochs ro/*.cloop ro/*.dmg; do
    [ -f "$f" ] || continue
    b=${f##*/}
    put "${b##*.}" "${b%.*}" "$f"
done

# ---- raw (probe only)
put probe raw raw-data.img

# ---- text parsers
mkdir -p "$out/size" "$out/kvopts" "$out/json_filename"
i=0
for s in 0 1 512 1k 1K 1.5G 64k 0x10 0x10k 1e3 -1 '  12M' 16E 17E 1.25T 123456789012345678901 \
         1b 1.b 0.5 .5k 1P 8E 18446744073709551615 18446744073709551616 '1 k' 1kB 0X1f 1.1e2M; do
    printf '%s' "$s" >"$out/size/s$i"; i=$((i + 1))
done
i=0
for s in 'size=1G,cluster_size=64k,lazy_refcounts=on' 'a=1,b=x,,y' 'help' '?' 'nofoo,bar' \
         'backing_file=a,,b,backing_fmt=qcow2' 'compat=1.1,refcount_bits=16,size=0x100000' \
         'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=1' ',' 'a=,b=' \
         'file.filename=x,driver=qcow2' 'size=-1' 'cluster_size=1.5k' 'lazy_refcounts=maybe' \
         'subformat=streamOptimized,zeroed_grain=on,adapter_type=lsilogic,hwversion=undefined'; do
    printf '%s' "$s" >"$out/kvopts/k$i"; i=$((i + 1))
done
i=0
for s in '{"driver":"qcow2","file.filename":"/fuzz/img"}' \
         '{"driver":"raw","file":{"filename":"/fuzz/base"},"offset":512,"size":1024}' \
         '{"driver":"qcow2","file":{"filename":"/fuzz/img"},"backing":{"driver":"raw","file":{"filename":"/fuzz/base"}}}' \
         '{"filename":"/fuzz/base"}' '{"driver":"vmdk","filename":"/fuzz/img"}' '[1,2]' '{"driver":1.5}' \
         '{"driver":"qcow2","file.filename":"/fuzz/img","encrypt.key-secret":"x"}' '{"file":{"filename":{}}}'; do
    printf '%s' "$s" >"$out/json_filename/j$i"; i=$((i + 1))
done

for d in "$out"/*/; do
    printf '%-16s %3d seeds %8d bytes\n' "$(basename "$d")" "$(ls "$d" | wc -l)" "$(cat "$d"* | wc -c)"
done
