#!/usr/bin/env bash
# Interop: the vdi format — create (dynamic and static), info, reads of
# qemu-made images, writes whose bytes must equal qemu-img's (apart from the
# random UUIDs), check (and -r refused as qemu does), discarded blocks, and
# hostile headers.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f vdi "$@" >/dev/null; }
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
le64() { printf '%016x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)\(..\)/\8\7\6\5\4\3\2\1/'; }
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }
# Byte equality of qimg's and qemu-img's FILE, ignoring the two random
# UUIDs (image and last-snapshot, header bytes 0x188..0x1a7).
same_bytes() {
    local name=$1 f=$2
    cp "$A/$f" "$T/m.a" && cp "$B/$f" "$T/m.b" || { fail "$name" "copy failed"; return; }
    poke "$T/m.a" $((0x188)) "$(printf '%064d' 0)"
    poke "$T/m.b" $((0x188)) "$(printf '%064d' 0)"
    if cmp -s "$T/m.a" "$T/m.b"; then pass "$name"; else
        fail "$name" "$(cmp "$T/m.a" "$T/m.b" 2>&1 | head -1)" \
            "sizes: qimg $(stat -c %s "$A/$f") qemu-img $(stat -c %s "$B/$f")"
    fi
}

nosize="grep -v -e actual-size -e '^disk size'"

# ============================================================== create

same "create dynamic" -- create -f vdi c-dyn.vdi 10M
same "create static=on" -- create -f vdi -o static=on c-st.vdi 10M
same "create all options (qemu's order)" -- create -f vdi -o static=off,size=3000 c-odd.vdi
same "create size 0" -- create -f vdi c-zero.vdi 0
same "create 1000001 bytes" -- create -f vdi c-1m.vdi 1000001
same "create 1T (large block map)" -- create -f vdi c-1t.vdi 1T
for f in c-dyn c-st c-odd c-zero c-1m c-1t; do
    verify "create $f: info json" -- info --output=json "$f.vdi"
    verify "create $f: check" -- check "$f.vdi"
    same_bytes "create $f: bytes equal qemu-img's (but UUIDs)" "$f.vdi"
done
same_alloc "create static: allocated blocks" c-st.vdi
same "create static=maybe" -- create -f vdi -o static=maybe e1.vdi 1M
same "create too large" -- create -f vdi e2.vdi 600T
same "create -o preallocation (unknown)" -- create -f vdi -o preallocation=metadata e3.vdi 1M
same "create -b (no backing option)" -- create -f vdi -b c-dyn.vdi e4.vdi 1M
same "create -o help" -- create -f vdi -o help
same "create -o help with file name" -- create -f vdi -o help x.vdi

# ============================================================== read qemu-made images

fixture "$QEMU_IMG" create -q -f vdi q.vdi 8M
fixture qio -c 'write -P 0x11 0 100k' -c 'write -P 0x22 3M 4k' -c 'write -P 0x33 7M 1M' q.vdi
fixture "$QEMU_IMG" create -q -f vdi -o static=on qs.vdi 4M
fixture qio -c 'write -P 0x44 1M 64k' qs.vdi
for f in q.vdi qs.vdi; do
    # ext4 may allocate a block more or less for the same writes
    same "info $f" --filter "$nosize" -- info "$f"
    same "info --output=json $f" --filter "$nosize" -- info --output=json "$f"
    same "info -f vdi $f" --filter "$nosize" -- info -f vdi "$f"
    same "check $f" -- check "$f"
    same "check --output=json $f" -- check --output=json "$f"
    same "check -r all $f is not supported" -- check -r all "$f"
    same "check -r leaks $f is not supported" -- check -r leaks "$f"
    same "map $f" -- map "$f"
    same "map --output=json $f" -- map --output=json "$f"
    same "convert $f to raw" -- convert -O raw "$f" "$f.raw"
    same_image "convert $f to raw: content" "$f.raw"
done

# ============================================================== write

fixture mkdata d.raw 6M
same "convert raw to vdi" -- convert -O vdi d.raw d.vdi
same_bytes "convert raw to vdi: bytes equal qemu-img's (but UUIDs)" d.vdi
verify "convert raw to vdi: compare" -- compare d.raw d.vdi
verify "convert raw to vdi: check" -- check d.vdi
verify "convert raw to vdi: info" -- info --output=json d.vdi
same "convert raw to static vdi" -- convert -O vdi -o static=on d.raw ds.vdi
same_bytes "convert raw to static vdi: bytes equal qemu-img's (but UUIDs)" ds.vdi
verify "convert raw to static vdi: compare" -- compare d.raw ds.vdi
verify "convert raw to static vdi: check" -- check ds.vdi
same "convert vdi to vdi" -- convert -O vdi q.vdi q2.vdi
verify "convert vdi to vdi: compare" -- compare q.vdi q2.vdi
same "map of a converted image" -- map --output=json d.vdi
# writes into existing images (allocating and not), read back by qemu-io
fixture cp q.vdi w.vdi
fixture "$QEMU_IMG" create -q -f vdi t.vdi 8M
fixture qio -c 'write -P 0x55 2M 1M' -c 'write -P 0x66 6M 8k' t.vdi
same "convert -n into an existing image" -- convert -n -O vdi t.vdi w.vdi
same_bytes "convert -n: bytes equal qemu-img's (but UUIDs)" w.vdi
verify "convert -n: compare with the source" -- compare t.vdi w.vdi
verify "convert -n: check" -- check w.vdi
same "resize is not supported" -- resize d.vdi 8M

# ============================================================== discarded blocks, odd sizes

fixture cp q.vdi disc.vdi
# block 0 discarded (reads zero), block 7 as well
fixture poke disc.vdi 512 "$(le32 $((0xfffffffe)))"
fixture poke disc.vdi $((512 + 28)) "$(le32 $((0xfffffffe)))"
same "discarded: map" -- map --output=json disc.vdi
same "discarded: convert to raw" -- convert -O raw disc.vdi disc.raw
same_image "discarded: content" disc.raw
same "discarded: check (allocation count mismatch)" -- check disc.vdi
same "discarded: check json" -- check --output=json disc.vdi
fixture cp disc.vdi disc-w.vdi
same "discarded: write into a discarded block" -- convert -n -O vdi t.vdi disc-w.vdi
same_bytes "discarded: written bytes equal qemu-img's (but UUIDs)" disc-w.vdi

fixture cp q.vdi odd.vdi
fixture poke odd.vdi $((0x170)) "$(le64 8388000)"
same "odd disk size is rounded up" -- info odd.vdi
same "odd disk size: convert" -- convert -O raw odd.vdi odd.raw
same_image "odd disk size: content" odd.raw

# ============================================================== check findings

fixture cp q.vdi dup.vdi
fixture poke dup.vdi $((512 + 12)) "$(le32 0)"
same "check: block used twice" -- check dup.vdi
same "check json: block used twice" -- check --output=json dup.vdi
fixture cp q.vdi big.vdi
fixture poke big.vdi $((512 + 4)) "$(le32 100)"
same "check: block index too large" -- check big.vdi

# ============================================================== hostile headers

bad() { # NAME OFFSET HEX
    fixture cp q.vdi "h-$1.vdi"
    fixture poke "h-$1.vdi" "$2" "$3"
    same "hostile $1: info" -- info "h-$1.vdi"
    same "hostile $1: info -f vdi" -- info -f vdi "h-$1.vdi"
}
bad signature $((0x40)) 00000000
bad version $((0x44)) "$(le32 $((0x00010002)))"
bad bmap-unaligned $((0x154)) "$(le32 513)"
bad data-unaligned $((0x158)) "$(le32 1025)"
bad sector-size $((0x168)) "$(le32 4096)"
bad block-size $((0x178)) "$(le32 $((2 << 20)))"
bad disk-too-big $((0x170)) "$(le64 $((9 << 20)))"
bad disk-huge $((0x170)) "$(le64 $((1 << 62)))"
bad link-uuid $((0x1a8)) 01
bad parent-uuid $((0x1b8)) 01
bad too-many-blocks $((0x180)) "$(le32 $((0x20000000)))"
fixture "$QEMU_IMG" create -q -f vdi tr.vdi 8M
fixture truncate -s 600 tr.vdi
same "truncated block map" -- convert -O raw tr.vdi tr.raw
same_image "truncated block map: content" tr.raw
fixture truncate -s 100 short.vdi
same "file shorter than a header" -- info -f vdi short.vdi
# A block map cut short by the end of the file: qemu reads the rest as
# zeros (every lost entry names block 0) and opens the image; so does qimg,
# for maps up to 16 MiB.
fixture "$QEMU_IMG" create -q -f vdi tb.vdi 8G
fixture truncate -s 1000 tb.vdi
same "block map past EOF: info" --filter "$nosize" -- info tb.vdi
same "block map past EOF: check" -- check tb.vdi
same "block map past EOF: map" -- map --output=json tb.vdi
fixture cp tb.vdi tbw.vdi
fixture "$QEMU_IMG" create -q -f raw tbs.raw 8G
fixture "$QEMU_IO" -f raw -c 'write -P 9 5M 1M' -c 'write -P 8 7G 64k' tbs.raw
same "block map past EOF: convert -n into it" -- convert -n -O vdi tbs.raw tbw.vdi
same "block map past EOF: check after writes" -- check tbw.vdi
same_bytes "block map past EOF: bytes after writes equal qemu-img's" tbw.vdi
# qemu would allocate a 2 GiB map for this 8 MiB file; qimg refuses cleanly.
fixture cp q.vdi hb.vdi
fixture poke hb.vdi $((0x180)) "$(le32 $((0x1f000000)))"
check_sh "huge block map in a tiny file: clean error" \
    "cd '$A' && out=\$('$QIMG' info hb.vdi 2>&1); rc=\$?; echo \"\$out\";
     [ \$rc -eq 1 ] && [[ \$out == *'block map of'*'exceeds the file size'* ]]"
