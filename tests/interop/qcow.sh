#!/usr/bin/env bash
# Interop: the qcow (v1) format — create, info, reads of qemu-made images
# (plain, compressed, backing files), writes (plain and convert -c) whose
# bytes must equal qemu-img's, commit (make_empty), and hostile headers.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow "$@" >/dev/null; }
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
be64() { printf '%016x' "$1"; }
be32() { printf '%08x' "$1"; }

# ============================================================== create

same "create default" -- create -f qcow c-def.qcow 4M
same "create unaligned size rounds up" -- create -f qcow c-odd.qcow 1000
same "create size 0" -- create -f qcow c-zero.qcow 0
fixture "$QEMU_IMG" create -q -f raw base.raw 2M
same "create with backing" -- create -f qcow -b base.raw -F raw c-back.qcow 2M
same "create with all options" -- create -f qcow -o backing_file=base.raw,backing_fmt=raw,size=3M,encryption=off c-all.qcow
same "create -b fat:" -- create -f qcow -u -b fat: -F raw c-fat.qcow 1M
for f in c-def c-odd c-back c-all c-fat; do
    verify "create $f: info json" -- info --output=json "$f.qcow"
    check "create $f: bytes equal qemu-img's" cmp "$A/$f.qcow" "$B/$f.qcow"
done
same "create unknown backing format" -- create -f qcow -u -b base.raw -F foo e1.qcow 1M
same "create encryption without secret" -- create -f qcow -o encryption=on e2.qcow 1M
same "create encrypt.format=luks" -- create -f qcow -o encrypt.format=luks e3.qcow 1M
same "create encrypt.format=foo" -- create -f qcow -o encrypt.format=foo e4.qcow 1M
same "create encryption and encrypt.format" -- create -f qcow -o encryption=on,encrypt.format=aes e5.qcow 1M
same "create -o help" -- create -f qcow -o help

# ============================================================== read

fixture "$QEMU_IMG" create -q -f qcow base.qcow 2M
fixture qio -c 'write -P 0x11 0 1M' -c 'write -P 0x12 1536k 64k' base.qcow
fixture "$QEMU_IMG" create -q -f qcow -b base.qcow -F qcow top.qcow 2M
fixture qio -c 'write -P 0x22 64k 64k' -c 'write -P 0x33 1000k 3k' -c 'write -P 0x44 1900k 5000' top.qcow
fixture mkdata d.raw 4M
# qemu-img 7.2 `convert -c -O qcow` writes every cluster, then fails with
# exit code 1 and no message: its final zero-length "EOF" compressed write
# is refused by the qcow driver. The image itself is complete.
fixture sh -c '"$QEMU_IMG" convert -c -O qcow d.raw comp.qcow; true'
convert_c() { # SRC DST: qimg in $A, qemu-img in $B, then the bytes must match
    (cd "$A" && "$QIMG" convert -c -O qcow "$1" "$2") >/dev/null 2>&1
    (cd "$B" && "$QEMU_IMG" convert -c -O qcow "$1" "$2") >/dev/null 2>&1
    check "convert -c $1: bytes equal qemu-img's" cmp "$A/$2" "$B/$2"
    verify "convert -c $1: compare" -- compare "$1" "$2"
}
for f in base.qcow top.qcow comp.qcow; do
    # disk size of qemu-io-made fixtures varies with the file system
    same "info $f" --filter "sed '/^disk size:/d; /actual-size/d'" -- info "$f"
    same "info --output=json $f" --filter "sed '/^disk size:/d; /actual-size/d'" -- info --output=json "$f"
    same "check $f (not supported)" -- check "$f"
    same "convert $f to raw" -- convert -O raw "$f" "$f.raw"
    same_image "convert $f to raw: content" "$f.raw"
done
same "info --backing-chain top.qcow" --filter "sed '/^disk size:/d; /actual-size/d'" -- info --backing-chain top.qcow
same "map json comp.qcow" -- map --output=json comp.qcow
same "map json top.qcow" -- map --output=json top.qcow

# ============================================================== write

same "convert raw to qcow" -- convert -O qcow d.raw d.qcow
check "convert raw to qcow: bytes equal qemu-img's" cmp "$A/d.qcow" "$B/d.qcow"
verify "convert raw to qcow: compare" -- compare d.raw d.qcow
convert_c d.raw dc.qcow
fixture mkdata odd.raw 1000001
convert_c odd.raw odd.qcow
same "convert top.qcow with -B" -- convert -O qcow -B base.qcow -F qcow top.qcow top2.qcow
check "convert -B: bytes equal qemu-img's" cmp "$A/top2.qcow" "$B/top2.qcow"
verify "convert -B: compare" -- compare top.qcow top2.qcow
same "convert comp.qcow to qcow2" -- convert -O qcow2 comp.qcow comp.qcow2
verify "convert comp.qcow to qcow2: compare" -- compare d.raw comp.qcow2

# ============================================================== commit

fixture cp base.qcow cb.qcow
fixture "$QEMU_IMG" create -q -f qcow -b cb.qcow -F qcow ct.qcow 2M
fixture qio -c 'write -P 0x55 128k 64k' ct.qcow
same "commit into qcow base" -- commit ct.qcow
check "commit: base bytes equal qemu-img's" cmp "$A/cb.qcow" "$B/cb.qcow"
check "commit: emptied top bytes equal qemu-img's" cmp "$A/ct.qcow" "$B/ct.qcow"
same "resize is not supported" -- resize d.qcow 8M
same "rebase -u is not supported" -- rebase -u -b base.raw -F raw d.qcow

# ============================================================== hostile headers

hdr() { # NAME OFFSET HEX
    fixture cp c-def.qcow "$1"
    fixture poke "$1" "$2" "$3"
    same "hostile $1: info" -- info -f qcow "$1"
}
hdr h-magic.qcow 0 00000000
hdr h-v2.qcow 4 "$(be32 2)"
hdr h-v9.qcow 4 "$(be32 9)"
hdr h-size.qcow 24 "$(be64 1)"
hdr h-huge.qcow 24 "$(be64 $((0x7fffffffffffffff)))"
hdr h-cb.qcow 32 08
hdr h-cb2.qcow 32 11
hdr h-l2.qcow 33 05
hdr h-l2b.qcow 33 0e
hdr h-crypt.qcow 36 "$(be32 7)"
hdr h-aes.qcow 36 "$(be32 1)"
hdr h-back.qcow 8 "$(be64 48)$(be32 2000)"
hdr h-back2.qcow 8 "$(be64 $((1 << 40)))$(be32 10)"
hdr h-l1.qcow 40 "$(be64 $((1 << 40)))"
# offsets past qemu's request limit (INT64_MAX aligned down to 1 GiB): the
# read fails with EIO and qcow_open adds no message of its own, even for an
# empty backing file name
hdr h-l1max.qcow 40 "$(be64 $((0x8200 << 48)))"
hdr h-backmax.qcow 8 "$(be64 $((0x8000 << 48)))$(be32 0)"
fixture cp d.qcow h-l2off.qcow
fixture poke h-l2off.qcow 48 "$(be64 $((1 << 50)))"
same "hostile L2 offset: convert" -- convert -O raw h-l2off.qcow h-l2off.raw
fixture cp dc.qcow h-comp.qcow
fixture poke h-comp.qcow 4096 "$(be64 $(( (1 << 63) | (4000 << 51) | 5000 )))"
same "hostile compressed entry: convert" -- convert -O raw h-comp.qcow h-comp.raw
fixture truncate -s 30 tiny.qcow
same "truncated header" -- info -f qcow tiny.qcow
