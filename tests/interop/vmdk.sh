#!/usr/bin/env bash
# Interop: the vmdk format — every subformat qemu-img 7.2 creates, read by
# qimg (data, info, check) from images qemu-img made, and created/converted by
# qimg then read, checked and compared by the real qemu-img; backing chains
# (parentFileNameHint + CIDs), zeroed grains, hostile headers.
. "$(dirname "$0")/lib.sh"

SUBS="monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat streamOptimized"
# CIDs are random per image: compare everything else.
NOCID="grep -v -E '^    cid: |\"cid\": |^CID='"

# ============================================================== create
same "create -f vmdk -o help" -- create -f vmdk -o help
same "create all options (Formatting line order)" -- create -f vmdk \
    -o zeroed_grain=on,subformat=monolithicSparse,toolsversion=9,hwversion=7,adapter_type=lsilogic \
    c-all.vmdk 10M
verify "create all options: info" --filter "$NOCID" -- info c-all.vmdk
same_sh "create all options: descriptor" --filter "$NOCID" -- "strings c-all.vmdk | sed -n '/^# Disk/,/toolsVersion/p'"
for s in $SUBS; do
    same "create subformat=$s" -- create -f vmdk -o subformat=$s c-$s.vmdk 5G
    verify "create subformat=$s: info" --filter "$NOCID" -- info c-$s.vmdk
    verify "create subformat=$s: info json" --filter "$NOCID" -- info --output=json c-$s.vmdk
    verify "create subformat=$s: check" -- check c-$s.vmdk
done
same "create compat6 + adapter buslogic" -- create -f vmdk -o compat6=on,adapter_type=buslogic c-c6.vmdk 100M
same_sh "create compat6: descriptor" --filter "$NOCID" -- "strings c-c6.vmdk | grep ddb"
same "create odd size rounds up to a sector" -- create -f vmdk c-odd.vmdk 1000
verify "create odd size: info" --filter "$NOCID" -- info c-odd.vmdk
# (descriptor files: the random CID has no fixed width, so no fixed size)
same_files "create: files made" --filter 's/^\(c-[A-Za-z]*\.vmdk f\) [34][0-9][0-9]$/\1 DESC/'

same "create bad adapter_type" -- create -f vmdk -o adapter_type=foo e1.vmdk 1M
same "create bad subformat" -- create -f vmdk -o subformat=foo e2.vmdk 1M
same "create compat6 with hwversion" -- create -f vmdk -o compat6=on,hwversion=7 e3.vmdk 1M
same "create flat with zeroed_grain" -- create -f vmdk -o subformat=monolithicFlat,zeroed_grain=on e4.vmdk 1M
same "create backing_fmt=raw" -- create -f vmdk -b c-odd.vmdk -F raw e5.vmdk 1M
same "create flat with backing" -- create -f vmdk -o subformat=monolithicFlat -b c-odd.vmdk -F vmdk e6.vmdk 1M

# ================================================ images made by qemu-img
mkdata "$W/d.raw" 3M 7
for s in $SUBS; do
    (cd "$W" && mkdir -p "$s" && "$QEMU_IMG" convert -O vmdk -o subformat=$s d.raw "$s/q.vmdk") ||
        _bail "qemu-img convert to $s failed"
    fixture cp -r "$W/$s" .
    same "qemu $s: info" -- info $s/q.vmdk
    same "qemu $s: info json" -- info --output=json $s/q.vmdk
    same "qemu $s: check" -- check $s/q.vmdk
    same "qemu $s: check json" -- check --output=json $s/q.vmdk
    same "qemu $s: convert to raw" -- convert -O raw $s/q.vmdk $s/out.raw
    same_image "qemu $s: converted data" $s/out.raw
    check "qemu $s: data equals the source" cmp "$W/d.raw" "$A/$s/out.raw"
done

# ===================================================== qimg writes vmdk
fixture cp "$W/d.raw" .
for s in $SUBS; do
    same "convert -O vmdk subformat=$s" -- convert -O vmdk -o subformat=$s d.raw w-$s.vmdk
    check "convert $s: qemu-img compare with the source" "$QEMU_IMG" compare "$A/d.raw" "$A/w-$s.vmdk"
    verify "convert $s: qemu-img check" -- check w-$s.vmdk
    verify "convert $s: info" --filter "$NOCID" -- info w-$s.vmdk
done
same "convert -c to streamOptimized" -- convert -c -O vmdk -o subformat=streamOptimized d.raw w-c.vmdk
check "convert -c: qemu-img compare" "$QEMU_IMG" compare "$A/d.raw" "$A/w-c.vmdk"
same "convert -c to monolithicSparse is refused" -- convert -c -O vmdk d.raw w-c2.vmdk
same "convert vmdk->vmdk (sparse from stream)" -- convert -O vmdk w-streamOptimized.vmdk w-back.vmdk
check "convert vmdk->vmdk: qemu-img compare" "$QEMU_IMG" compare "$A/d.raw" "$A/w-back.vmdk"
check_sh "qemu-io reads a qimg stream grain" \
    "'$QEMU_IO' -c 'read -v 0 16' '$A/w-streamOptimized.vmdk' >/dev/null"

# ===================================================== backing chains
(cd "$W" && "$QEMU_IMG" create -q -f vmdk base.vmdk 2M &&
    "$QEMU_IO" -c 'write -P 0x11 0 2M' base.vmdk >/dev/null) || _bail "base image"
fixture cp "$W/base.vmdk" .
same "create -b base.vmdk -F vmdk" -- create -f vmdk -b base.vmdk -F vmdk top.vmdk
same_sh "overlay descriptor" --filter "$NOCID" -- "strings top.vmdk | sed -n '/^# Disk/,/toolsVersion/p'"
fixture "$QEMU_IO" -c 'write -P 0x22 70000 50000' -c 'write -P 0x33 1M 4096' top.vmdk
# (disk size left out: delayed allocation makes it vary between two files)
same "overlay: info --backing-chain" --filter "$NOCID | grep -v '^disk size'" -- info --backing-chain top.vmdk
same "overlay: check" -- check top.vmdk
same "overlay: convert to raw" -- convert -O raw top.vmdk top.raw
same_image "overlay: converted data" top.raw
same "overlay: convert -B keeps the chain" -- convert -O vmdk -B base.vmdk -F vmdk top.vmdk top2.vmdk
check "overlay -B: qemu-img compare" "$QEMU_IMG" compare "$A/top.vmdk" "$A/top2.vmdk"
verify "overlay -B: info" --filter "$NOCID" -- info top2.vmdk

# ===================================================== zeroed grains
(cd "$W" && "$QEMU_IMG" create -q -f vmdk -o zeroed_grain=on z.vmdk 1M &&
    "$QEMU_IO" -c 'write -P 0x44 0 1M' -c 'write -z 128k 128k' z.vmdk >/dev/null) || _bail "z image"
fixture cp "$W/z.vmdk" .
same "zeroed grains: info" -- info z.vmdk
same "zeroed grains: convert" -- convert -O raw z.vmdk z.raw
same_image "zeroed grains: data" z.raw

# ===================================================== hostile headers
_corrupt() { # NAME OFFSET PRINTF-BYTES
    cp "$W/base.vmdk" "$W/$1.vmdk" &&
        printf "$3" | dd of="$W/$1.vmdk" bs=1 seek=$(($2)) conv=notrunc status=none
}
_corrupt h-gtes 44 '\x01\x02\x00\x00'
_corrupt h-gran0 20 '\x00'
_corrupt h-ver 4 '\x04'
_corrupt h-gdend 56 '\xff\xff\xff\xff\xff\xff\xff\xff'
_corrupt h-grainoff 64 '\x00\x00\x01'
_corrupt h-granbig 20 '\x00\x00\x40'
_corrupt h-cap 12 '\xff\xff\xff\xff\xff\xff\xff\x0f'
_corrupt h-gd0 0x2a00 '\xff\xff\xff\x7f'
_corrupt h-gte $((27 * 512 + 8)) '\x00\x00\x00\x10'
# a redundant directory past the end of the file reads as zeros; one past
# qemu's request limit fails with EIO; sectors per L1 entry are 32-bit
_corrupt h-rgdfar 51 '\x7f'
_corrupt h-rgdmax 48 '\xff\xff\xff\xff\xff\xff\xff\x7f'
_corrupt h-gran32 20 '\x00\x00\x00\x80'
printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 100 FLAT "x.img"\n' > "$W/h-line.vmdk"
printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 100 FLAT "nothere.img" 0\n' > "$W/h-missing.vmdk"
printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="foo"\n' > "$W/h-ctype.vmdk"
printf '# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n' > "$W/h-noctype.vmdk"
printf '# Disk DescriptorFile\nversion=1\ncreateType="monolithicFlat"\n' > "$W/h-nocid.vmdk"
for h in gtes gran0 ver gdend grainoff granbig cap gd0 gte rgdfar rgdmax gran32 line missing ctype noctype nocid; do
    fixture cp "$W/h-$h.vmdk" .
    same "hostile $h: info" -- info h-$h.vmdk
    same "hostile $h: convert" -- convert -O raw h-$h.vmdk h-$h.raw
done
same "hostile gd0: check" -- check h-gd0.vmdk
same "hostile gte past EOF: check" -- check h-gte.vmdk
same "hostile gte past EOF: check json" -- check --output=json h-gte.vmdk
same "check -r all (not supported)" -- check -r all base.vmdk
same "check -r leaks --output=json" -- check -r leaks --output=json base.vmdk
