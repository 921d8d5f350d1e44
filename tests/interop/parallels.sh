#!/usr/bin/env bash
# Interop: the parallels format — create, info, reads of qemu-made images,
# writes whose bytes must equal qemu-img's, check with repair (unclean
# images, clusters outside the file, leaked space), and hostile headers.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f parallels "$@" >/dev/null; }
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
le64() { printf '%016x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\8\7\6\5\4\3\2\1/'; }
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }

# ============================================================== create

same "create default" -- create -f parallels c-def.prl 4M
same "create cluster_size=4k" -- create -f parallels -o cluster_size=4k c-4k.prl 1M
same "create odd sizes round up" -- create -f parallels -o cluster_size=1000 c-odd.prl 1000
same "create size 0" -- create -f parallels c-zero.prl 0
same "create many BAT entries" -- create -f parallels -o cluster_size=512 c-bat.prl 8M
for f in c-def c-4k c-odd c-zero c-bat; do
    verify "create $f: info json" -- info --output=json "$f.prl"
    check "create $f: bytes equal qemu-img's" cmp "$A/$f.prl" "$B/$f.prl"
done
same "create cluster_size=0" -- create -f parallels -o cluster_size=0 e1.prl 1M
same "create image too large for cluster size" -- create -f parallels -o cluster_size=512 e2.prl 4T
same "create cluster too large" -- create -f parallels -o cluster_size=4G e3.prl 1M
same "create -b (no backing option)" -- create -f parallels -b c-def.prl e4.prl 1M
same "create -o help" -- create -f parallels -o help

# ============================================================== read

fixture "$QEMU_IMG" create -q -f parallels -o cluster_size=64k q.prl 4M
fixture qio -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 4k' -c 'write -P 0x33 3M 1M' q.prl
same "info q.prl" --filter "sed '/^disk size:/d'" -- info q.prl
same "info --output=json q.prl" --filter "sed '/actual-size/d'" -- info --output=json q.prl
same "check q.prl" -- check q.prl
same "check --output=json q.prl" -- check --output=json q.prl
same "map q.prl" -- map --output=json q.prl
same "convert q.prl to raw" -- convert -O raw q.prl q.raw
same_image "convert q.prl to raw: content" q.raw

# ============================================================== write

fixture mkdata d.raw 4M
same "convert raw to parallels" -- convert -O parallels d.raw d.prl
check "convert raw to parallels: bytes equal qemu-img's" cmp "$A/d.prl" "$B/d.prl"
verify "convert raw to parallels: compare" -- compare d.raw d.prl
verify "convert raw to parallels: check" -- check d.prl
same "convert with cluster_size=4k" -- convert -O parallels -o cluster_size=4k d.raw d4.prl
check "convert cluster_size=4k: bytes equal qemu-img's" cmp "$A/d4.prl" "$B/d4.prl"
verify "convert cluster_size=4k: check" -- check d4.prl
same "convert parallels to qcow2 and back" -- convert -O parallels q.prl q2.prl
verify "convert parallels to parallels: compare" -- compare q.prl q2.prl
same "resize is not supported" -- resize d.prl 8M

# ============================================================== check and repair

fixture cp q.prl unclean.prl
fixture poke unclean.prl 44 "$(le32 $((0x746F6E59)))"
same "info of an unclean image" -- info unclean.prl
same "unclean image cannot be written" -- convert -n -O parallels d.raw unclean.prl
same "check unclean" -- check unclean.prl
same "check -r all unclean" -- check -r all unclean.prl
check "repaired unclean: bytes equal qemu-img's" cmp "$A/unclean.prl" "$B/unclean.prl"

fixture cp q.prl leak.prl
fixture truncate -s +300k leak.prl
same "check leaked space" -- check leak.prl
same "check leaked space json" -- check --output=json leak.prl
same "check -r leaks" -- check -r leaks leak.prl
check "repaired leak: bytes equal qemu-img's" cmp "$A/leak.prl" "$B/leak.prl"

fixture cp q.prl out.prl
fixture poke out.prl 68 "$(le32 5000)"
same "check cluster outside image" -- check out.prl
same "check -r all cluster outside image" -- check -r all out.prl
check "repaired outside: bytes equal qemu-img's" cmp "$A/out.prl" "$B/out.prl"

# ============================================================== hostile headers

hdr() { # NAME OFFSET HEX
    fixture cp c-4k.prl "$1"
    fixture poke "$1" "$2" "$3"
    same "hostile $1: info" -- info -f parallels "$1"
}
hdr h-magic.prl 0 00
hdr h-old.prl 0 "$(printf WithoutFreeSpace | od -An -tx1 | tr -d ' \n')"
hdr h-ver.prl 16 "$(le32 3)"
hdr h-tracks0.prl 28 "$(le32 0)"
hdr h-tracksbig.prl 28 "$(le32 $((0x7fffffff)))"
hdr h-bat.prl 32 "$(le32 $((0x7fffffff)))"
hdr h-bat2.prl 32 "$(le32 1000000)"
hdr h-sectors.prl 36 "$(le64 $((1 << 40)))"
hdr h-dataoff.prl 48 "$(le32 $((0xffffffff)))"
hdr h-entry.prl 64 "$(le32 $((0xffffffff)))"
# sectors past qemu's BDRV_MAX_LENGTH: "Could not refresh total sector count"
hdr h-sectorsmax.prl 36 "$(le64 $((0x6cf6fbba00002000)))"
# a Format Extension offset: read-only opens read the cluster and want its
# magic; a read-write open only warns
hdr h-ext.prl 56 "$(le64 $((8 << 32)))"
hdr h-extdata.prl 56 "$(le64 1)"
fixture cp h-ext.prl h-extrw.prl
same "Format Extension in a read-write open: check -r all" -- check -r all h-extrw.prl
# qemu checks the size after the rest of its open (bdrv_open_driver's
# refresh_total_sectors, in wrapping 64-bit arithmetic): a Format Extension
# error comes first, and a read-write open is closed again (unmarked)
hdr h-sectorsall.prl 36 "$(le64 -1)"
# a sector count whose byte count wraps below the limit opens; the size
# queries then fail (EFBIG)
hdr h-sectorswrap.prl 36 "$(le64 $(((1 << 58) + 8192)))"
same "sectors whose byte count wraps: check" -- check h-sectorswrap.prl
fixture cp h-ext.prl h-extsectors.prl
fixture poke h-extsectors.prl 36 "$(le64 $((0x6cf6fbba00002000)))"
same "sectors past the limit after a Format Extension error: info" -- info h-extsectors.prl
same "sectors past the limit, read-write: the warning first" -- check -r all h-extsectors.prl
fixture cp q.prl h-uncleansectors.prl
fixture poke h-uncleansectors.prl 44 "$(le32 $((0x746F6E59)))"
fixture poke h-uncleansectors.prl 36 "$(le64 $((0x6cf6fbba00002000)))"
same "sectors past the limit, unclean: check -r all" -- check -r all h-uncleansectors.prl
check "sectors past the limit, unclean: bytes equal qemu-img's" \
    cmp "$A/h-uncleansectors.prl" "$B/h-uncleansectors.prl"
fixture truncate -s 40 tiny.prl
same "truncated header" -- info -f parallels tiny.prl

# A read-only parallels node is read by every worker at once: 16 MiB of
# data read with -m 8 -W.
fixture "$QEMU_IMG" create -q -f parallels mw.prl 16M
fixture qio -c 'write -P 0x41 0 5M' -c 'write -P 0x42 6M 10M' mw.prl
same "read with -m 8 -W" -- convert -m 8 -W -O raw mw.prl mw.raw
same_image "read with -m 8 -W: result" mw.raw
