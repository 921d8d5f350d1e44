#!/usr/bin/env bash
# Differencing VHDX, beyond qemu-img 7.2 (which cannot open them): qimg
# reads them through the parent locator and the sector bitmaps, read-only.
# The images are qemu-made dynamic VHDX turned into differencing ones by
# tests/interop/tools/mkdiffvhdx.py.
MK=$(cd "$(dirname "$0")/tools" && pwd)/mkdiffvhdx.py
. "$(dirname "$0")/lib.sh"

q() { "$QIMG" "$@"; }
mkchild() { # NAME [KEY]
    "$QEMU_IMG" create -q -f vhdx -o block_size=1M "$1" 8M
    python3 "$MK" "$1" parent.vhdx parent.raw expect.raw "${2:-relative_path}"
}

"$QEMU_IMG" create -q -f vhdx -o block_size=1M parent.vhdx 8M
"$QEMU_IO" -f vhdx -c 'write -P 0x11 0 8M' parent.vhdx >/dev/null
"$QEMU_IMG" convert -O raw parent.vhdx parent.raw
mkchild child.vhdx

out=$("$QEMU_IMG" info child.vhdx >/dev/null 2>&1; echo $?)
eq "qemu-img 7.2 cannot open it" "$out" 1
check "read through the parent" q convert -O raw child.vhdx out.raw
check "contents: present sectors, zero block, then the parent" cmp out.raw expect.raw
check "read through the parent, -m 8 -W" q convert -m 8 -W -O raw child.vhdx out8.raw
check "-m 8 -W: the same contents" cmp out8.raw expect.raw
eq "info names the parent" "$(q info child.vhdx | grep '^backing file')" \
    "backing file: parent.vhdx
backing file format: vhdx"
check "compare" q compare child.vhdx expect.raw
# (the parent, a vhdx, reports data without host offsets: runs merge)
eq "map: own sectors, zeros, the parent's" "$(q map --output=json child.vhdx |
    python3 -c 'import json,sys; [print(e["start"], e["length"], e["depth"], e["zero"], e["data"]) for e in json.load(sys.stdin)]')" \
"0 4096 0 False True
4096 47104 1 False True
51200 51200 0 False True
102400 1994752 1 False True
2097152 1048576 0 False True
3145728 1048576 1 False True
4194304 1048576 0 True False
5242880 3145728 1 False True"
for k in volume_path absolute_win32_path; do
    mkchild "c-$k.vhdx" $k
    check "locator key $k" q compare "c-$k.vhdx" expect.raw
done
out=$(q resize child.vhdx 16M 2>&1; echo "rc=$?")
eq "read-only: no writes" "$out" "qimg: Could not open 'child.vhdx': Differencing VHDX images can only be opened read-only
rc=1"
check "convert into qcow2 keeps the contents" q convert -O qcow2 child.vhdx c.qcow2
check "... as the real qemu-img reads it" "$QEMU_IMG" compare c.qcow2 expect.raw

# Hostile: locator without a usable path, sector bitmap entry missing.
mkchild h1.vhdx
python3 - h1.vhdx <<'PY'
import sys
f = open(sys.argv[1], "r+b"); data = f.read()
i = data.find("relative_path".encode("utf-16-le"))
f.seek(i); f.write("xxxxxxxx_path".encode("utf-16-le"))
PY
check_fail "no usable parent path" q info h1.vhdx
