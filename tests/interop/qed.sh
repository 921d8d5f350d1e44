#!/usr/bin/env bash
# Interop: the qed format — create, info, reads of qemu-made images (data,
# zero clusters, backing files), writes verified by the real tool, check
# and repair, resize, rebase, and hostile headers — each compared with the
# real qemu-img 7.2.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qed "$@" >/dev/null; }
# poke FILE OFFSET HEXBYTES: overwrite bytes in place
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
le64() { printf '%016x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\8\7\6\5\4\3\2\1/'; }
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }

# ============================================================== create

same "create default" -- create -f qed c-def.qed 4M
same "create cluster_size=4k table_size=2" -- create -f qed -o cluster_size=4k,table_size=2 c-small.qed 1M
same "create unaligned size rounds up" -- create -f qed c-odd.qed 1000
same "create size 0" -- create -f qed c-zero.qed 0
fixture "$QEMU_IMG" create -q -f raw base.raw 2M
same "create with raw backing" -- create -f qed -b base.raw -F raw c-back.qed 2M
same "create with all options" -- create -f qed -o backing_file=base.raw,backing_fmt=raw,cluster_size=8k,table_size=8,size=3M c-all.qed
same "create -u with qed backing" -- create -f qed -u -b nowhere.qed -F qed c-back2.qed 2M
for f in c-def c-small c-odd c-zero c-back c-all c-back2; do
    verify "create $f: info json" -- info --output=json -U "$f.qed"
    check "create $f: bytes equal qemu-img's" cmp "$A/$f.qed" "$B/$f.qed"
done
same "create table_size=3" -- create -f qed -o table_size=3 e1.qed 1M
same "create cluster_size=1000" -- create -f qed -o cluster_size=1000 e2.qed 1M
same "create image too large" -- create -f qed -o cluster_size=4k,table_size=1 e3.qed 8G
same "create largest geometry (limit wraps to 0)" -- create -f qed -o cluster_size=64M,table_size=16 e4.qed 1M
same "create -o help" -- create -f qed -o help
same "info of a table_size=1 image" -- create -q -f qed -o table_size=1 t1.qed 1M
same "table_size=1 image cannot be opened" -- info t1.qed

# ============================================================== read

fixture "$QEMU_IMG" create -q -f qed base.qed 2M
fixture qio -c 'write -P 0x11 0 1M' -c 'write -P 0x12 1536k 64k' base.qed
fixture "$QEMU_IMG" create -q -f qed -b base.qed -F qed top.qed 2M
fixture qio -c 'write -P 0x22 64k 64k' -c 'write -z 256k 128k' -c 'write -P 0x33 1000k 3k' \
    -c 'write -z 1536k 64k' -c 'write -P 0x44 1900k 4k' top.qed
for f in base.qed top.qed; do
    # disk size of qemu-io-made fixtures varies with the file system
    same "info $f" --filter "sed '/^disk size:/d; /actual-size/d'" -- info "$f"
    same "info --output=json $f" --filter "sed '/^disk size:/d; /actual-size/d'" -- info --output=json "$f"

    same "check $f" -- check "$f"
    same "check --output=json $f" -- check --output=json "$f"
    same "convert $f to raw" -- convert -O raw "$f" "$f.raw"
    same_image "convert $f to raw: content" "$f.raw"
done
same "compare top.qed with its raw copy" -- compare top.qed top.qed.raw

# ============================================================== write

fixture mkdata d.raw 8M
same "convert raw to qed" -- convert -O qed d.raw d.qed
check "convert raw to qed: bytes equal qemu-img's" cmp "$A/d.qed" "$B/d.qed"
verify "convert raw to qed: compare with source" -- compare d.raw d.qed
verify "convert raw to qed: check" -- check d.qed
same "convert raw to qed cluster_size=4k,table_size=2" -- convert -O qed -o cluster_size=4k,table_size=2 d.raw d4.qed
check "convert cluster_size=4k: bytes equal qemu-img's" cmp "$A/d4.qed" "$B/d4.qed"
verify "convert cluster_size=4k: compare" -- compare d.raw d4.qed
verify "convert cluster_size=4k: check" -- check d4.qed
same "convert top.qed to qed with -B backing" -- convert -O qed -B base.qed -F qed top.qed top2.qed
check "convert -B: bytes equal qemu-img's" cmp "$A/top2.qed" "$B/top2.qed"
verify "convert -B: compare" -- compare top.qed top2.qed
same "convert qed to qed" -- convert -O qed top.qed flat.qed
verify "convert qed to qed: compare" -- compare top.qed flat.qed
verify "convert qed to qed: check" -- check flat.qed
same "dd into qed" -- dd if=d.raw of=dd.qed -O qed bs=64k count=10
verify "dd into qed: info" -- info --output=json dd.qed

# ============================================================== resize

fixture cp d.qed r.qed
same "resize grow" -- resize r.qed +4M
verify "resize grow: info" -- info --output=json r.qed
same "resize shrink with --shrink" -- resize --shrink r.qed 1M
same "resize to an invalid size" -- resize r.qed 100T
same "resize with preallocation" -- resize --preallocation=full r.qed 16M
verify "resize: compare" -- compare -s r.qed r.qed

# ============================================================== rebase

fixture cp top.qed rb.qed
fixture "$QEMU_IMG" convert -O raw base.qed base2.raw
same "rebase -u to raw" -- rebase -u -b base2.raw -F raw rb.qed
verify "rebase -u: info" -- info --output=json rb.qed
same "rebase -u to no backing" -- rebase -u -b '' rb.qed
verify "rebase -u none: info" -- info --output=json rb.qed
fixture cp top.qed rb2.qed
same "rebase (safe) onto raw" -- rebase -b base2.raw -F raw rb2.qed
verify "rebase safe: content unchanged" -- compare top.qed rb2.qed
verify "rebase safe: check" -- check rb2.qed

# ============================================================== check and repair

fixture cp d.qed leak.qed
fixture truncate -s +128k leak.qed
same "check leaked clusters" -- check leak.qed
same "check leaked clusters json" -- check --output=json leak.qed
same "check -r leaks" -- check -r leaks leak.qed
same "check -r all" -- check -r all leak.qed

fixture cp d.qed bad.qed
fixture poke bad.qed $((0x40000)) "$(le64 $((0x7000000)))"
same "check invalid L2 offset" -- check bad.qed
same "check invalid L2 offset json" -- check --output=json bad.qed
same "read with invalid L2 offset" -- convert -O raw bad.qed bad.raw
same "check -r all invalid L2 offset" -- check -r all bad.qed
verify "repaired image: check" -- check bad.qed
check "repaired image: bytes equal qemu-img's" cmp "$A/bad.qed" "$B/bad.qed"

fixture cp d.qed dirty.qed
fixture poke dirty.qed 16 "$(le64 2)"
same "info of an image needing a check" -- info dirty.qed
same "info json of an image needing a check" -- info --output=json dirty.qed
same "write to an image needing a check repairs it" -- resize dirty.qed +1M
verify "needs-check image after open: info" -- info --output=json dirty.qed

# ============================================================== hostile headers

hdr() { # NAME OFFSET HEX
    fixture cp c-def.qed "$1"
    fixture poke "$1" "$2" "$3"
    same "hostile $1: info" -- info -f qed "$1"
}
hdr h-magic.qed 0 00000000
hdr h-feat.qed 16 "$(le64 $((0x18)))"
hdr h-cs0.qed 4 "$(le32 0)"
hdr h-cs3.qed 4 "$(le32 3000)"
hdr h-ts.qed 8 "$(le32 5)"
hdr h-ts0.qed 8 "$(le32 0)"
hdr h-size.qed 48 "$(le64 513)"
hdr h-size2.qed 48 "$(le64 $((1 << 62)))"
hdr h-l1.qed 40 "$(le64 $((1 << 62)))"
hdr h-l1b.qed 40 "$(le64 4096)"
hdr h-hsize.qed 12 "$(le32 $((0xffffffff)))"
hdr h-back.qed 16 "$(le64 1)$(le64 0)$(le64 0)$(le64 65536)$(le64 4194304)$(le32 65530)$(le32 100)"
hdr h-backok.qed 16 "$(le64 5)"
hdr h-auto.qed 32 "$(le64 $((1 << 40)))"
same "resize clears unknown autoclear bits" -- resize h-auto.qed 8M
check "autoclear: bytes equal qemu-img's" cmp "$A/h-auto.qed" "$B/h-auto.qed"
fixture truncate -s 100 tiny.qed
same "truncated header" -- info -f qed tiny.qed
fixture cp c-def.qed trunc.qed
fixture truncate -s 70000 trunc.qed
same "file ends inside the L1 table" -- info -f qed trunc.qed
same "hostile: read through an image whose backing name is cut" -- convert -f qed -O raw h-back.qed h-back.raw
same "hostile: read with raw-backing bit but no backing file" -- convert -f qed -O raw h-backok.qed h-backok.raw

# A read-only qed node is read by every worker at once (the L2 lookup under
# the node lock): an overlay over 16 MiB of data, read with -m 8 -W.
fixture "$QEMU_IMG" create -q -f qed mw-base.qed 16M
fixture qio -c 'write -P 0x31 0 6M' -c 'write -P 0x32 7M 9M' mw-base.qed
fixture "$QEMU_IMG" create -q -f qed -b mw-base.qed -F qed mw-top.qed
fixture qio -c 'write -P 0x33 3M 5M' mw-top.qed
same "read an overlay with -m 8 -W" -- convert -m 8 -W -O raw mw-top.qed mw-top.raw
same_image "read an overlay with -m 8 -W: result" mw-top.raw
