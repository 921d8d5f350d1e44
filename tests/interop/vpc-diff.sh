#!/usr/bin/env bash
# Differencing VHDs, beyond qemu-img 7.2 (which reads them as plain dynamic
# disks, without their parent): qimg follows the parent locators and the
# per-sector bitmaps. The images come from tests/interop/tools/mkdiffvhd.py
# over parents made and filled by the real tools.
MK=$(cd "$(dirname "$0")/tools" && pwd)/mkdiffvhd.py
. "$(dirname "$0")/lib.sh"
q() { "$QIMG" "$@"; }

"$QEMU_IMG" create -q -f vpc -o force_size=on parent.vpc 8M
"$QEMU_IO" -f vpc -c 'write -P 0x11 0 8M' -c 'write -P 0x66 3M 64k' parent.vpc >/dev/null
"$QEMU_IMG" convert -O raw parent.vpc parent.raw
python3 "$MK" parent.vpc child.vhd expect.raw parent.raw

check "read through the parent" q convert -O raw child.vhd out.raw
check "contents: present sectors, then the parent" cmp out.raw expect.raw
check "read through the parent, -m 8 -W" q convert -m 8 -W -O raw child.vhd out8.raw
check "-m 8 -W: the same contents" cmp out8.raw expect.raw
eq "info names the parent" "$(q info child.vhd | grep '^backing file')" \
    "backing file: parent.vpc
backing file format: vpc"
eq "json backing format" "$(q info --output=json child.vhd | grep '"backing-filename-format"')" \
    '    "backing-filename-format": "vpc",'
check "compare with the expected contents" q compare child.vhd expect.raw
out=$("$QEMU_IMG" compare -q child.vhd expect.raw; echo $?)
eq "qemu-img 7.2 reads it without its parent (differs)" "$out" 1
# Own sectors at depth 0; the rest from the parent, split where the
# parent's blocks (non-contiguous in its file) change.
eq "map: own sectors, then the parent's" "$(q map --output=json child.vhd |
    python3 -c 'import json,sys; [print(e["start"], e["length"], e["depth"], e["data"]) for e in json.load(sys.stdin)]')" \
"0 4096 0 True
4096 47104 1 True
51200 51200 0 True
102400 1994752 1 True
2097152 2097152 1 True
4194304 2097152 0 True
6291456 2097152 1 True"

# Locator choice: absolute Windows path (unusable here) falls back to the
# relative one; a MacX URL alone; only the parent's unicode name.
for locs in W2ku,W2ru MacX name; do
    python3 "$MK" parent.vpc "c-$locs.vhd" e.raw parent.raw "$locs"
    check "locators $locs" q compare "c-$locs.vhd" expect.raw
done

# Writes (qimg bench -w writes a pattern at an offset): partial sectors
# merge with the parent, new blocks start with no sector present.
cp child.vhd w.vhd
cp expect.raw w.raw
for off in 1000 $((5 * 1048576 + 77)) $((7 * 1048576)) $((3 * 1048576 + 511)) $((2 * 1048576 + 4000)); do
    check "bench write at $off" q bench -q -w -c 1 -d 1 -o $off -s 9 --pattern=113 -f vpc w.vhd
    printf 'qqqqqqqqq' | dd of=w.raw bs=1 seek=$off conv=notrunc status=none
done
check "written image reads as expected" q compare w.vhd w.raw
check "its sectors outside the writes still come from the parent" \
    q compare -f vpc -F raw w.vhd w.raw
"$QEMU_IMG" convert -O raw parent.vpc parent-after.raw
check "the parent is untouched" cmp parent-after.raw parent.raw

# Hostile locators: a path longer than the cap, data past the end of file,
# no name at all.
python3 "$MK" parent.vpc h.vhd e.raw parent.raw name
python3 - h.vhd <<'PY'
import sys, struct
f = open(sys.argv[1], "r+b")
f.seek(512 + 64); f.write(bytes(512))          # no parent name
f.seek(512 + 576); f.write(b"W2ru" + struct.pack(">IIIQ", 1, 1 << 30, 0, 1 << 40))
f.seek(512); d = bytearray(f.read(1024)); d[36:40] = bytes(4)
struct.pack_into(">I", d, 36, (~sum(d)) & 0xffffffff)
f.seek(512); f.write(d)
PY
out=$(q info h.vhd 2>&1; echo "rc=$?")
eq "no usable parent: clean error" "$out" \
"qimg: Could not open 'h.vhd': Differencing VHD image names no usable parent
rc=1"
