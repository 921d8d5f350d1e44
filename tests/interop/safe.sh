#!/usr/bin/env bash
# tests/interop/safe.sh — qimg's own safety features (docs/safety.md):
#   --safe / QIMG_SAFE=1: references (backing file, qcow2 data file, VMDK
#     extents) outside the image's directory, json:/protocol references and
#     device/FIFO files are refused before they are opened; references
#     inside the directory work as without it, and without --safe qimg
#     behaves as qemu-img;
#   qimg inspect: format, virtual size, findings, exit 0 / 2 / 1.
. "$(dirname "$0")/lib.sh"

cd "$W" || exit 1
mkdir -p d out
qemu-img create -q -f qcow2 out/base.qcow2 1M
"$QEMU_IO" -f qcow2 -c 'write -P 0x44 0 64k' out/base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b ../out/base.qcow2 d/outside.qcow2
qemu-img create -q -f qcow2 d/inbase.qcow2 1M
"$QEMU_IO" -f qcow2 -c 'write -P 0x55 0 64k' d/inbase.qcow2 >/dev/null
qemu-img create -q -f qcow2 -F qcow2 -b inbase.qcow2 d/inside.qcow2
ln -s ../out/base.qcow2 d/link.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b link.qcow2 -u d/symlink.qcow2 1M
qemu-img create -q -f qcow2 -F raw -b /etc/hostname -u d/absolute.qcow2 1M
qemu-img create -q -f qcow2 -F raw -b 'nbd:localhost:1' -u d/nbd.qcow2 1M
qemu-img create -q -f qcow2 -F raw -b 'json:{"driver":"file","filename":"/etc/hostname"}' -u d/json.qcow2 1M
mkfifo d/fifo
qemu-img create -q -f qcow2 -F raw -b fifo -u d/fifo.qcow2 1M
qemu-img create -q -f qcow2 -F raw -b /dev/zero -u d/dev.qcow2 1M
qemu-img create -q -f qcow2 -o data_file="$W/out/data.raw" d/datafile.qcow2 1M
(cd d && qemu-img create -q -f qcow2 -o data_file=in-data.raw indata.qcow2 1M)
qemu-img create -q -f vmdk -o subformat=monolithicFlat d/flat.vmdk 1M
sed 's|"flat-flat.vmdk"|"../out/data.raw"|' d/flat.vmdk >d/evil.vmdk

refused() { # NAME FILE: convert refused in safe mode with the safe-mode message
    local out rc
    out=$(timeout 20 "$QIMG" --safe convert -O raw "$2" "$W/o.raw" 2>&1); rc=$?
    if [ $rc -eq 1 ] && [[ $out == *"Safe mode: refusing"* ]] && [ ! -e "$W/o.raw" ]; then
        pass "$1"
    else
        fail "$1" "exit $rc" "$out"
    fi
    rm -f "$W/o.raw"
}
refused "--safe: backing file outside the folder" d/outside.qcow2
refused "--safe: backing symlink leading outside" d/symlink.qcow2
refused "--safe: absolute backing file" d/absolute.qcow2
refused "--safe: nbd: backing reference" d/nbd.qcow2
refused "--safe: json: backing reference" d/json.qcow2
refused "--safe: FIFO backing file (no hang)" d/fifo.qcow2
refused "--safe: device backing file" d/dev.qcow2
refused "--safe: external data file outside" d/datafile.qcow2
refused "--safe: vmdk extent outside" d/evil.vmdk
out=$(QIMG_SAFE=1 "$QIMG" compare d/outside.qcow2 out/base.qcow2 2>&1)
eq "QIMG_SAFE=1 refuses as --safe (compare: exit 2)" "$?" 2
check_sh "QIMG_SAFE=1 message" "[[ '$out' == *'Safe mode: refusing backing file'* ]]"

check "--safe: backing inside the folder" "$QIMG" --safe convert -O raw d/inside.qcow2 "$W/in.raw"
check "--safe: result equals qemu-img's" "$QEMU_IMG" compare -f qcow2 -F raw d/inside.qcow2 "$W/in.raw"
check "--safe: data file inside the folder" "$QIMG" --safe convert -O raw d/indata.qcow2 "$W/in2.raw"
check "--safe: vmdk extent inside the folder" "$QIMG" --safe convert -O raw d/flat.vmdk "$W/in3.raw"
check "without --safe: outside backing opens" "$QIMG" convert -O raw d/outside.qcow2 "$W/out.raw"
check "without --safe: as qemu-img reads it" "$QEMU_IMG" compare d/outside.qcow2 "$W/out.raw"
check "QIMG_SAFE=0 is off" env QIMG_SAFE=0 "$QIMG" compare d/outside.qcow2 out/base.qcow2
# info does not open the backing file: it works in safe mode, like qemu-img's
fixture cp -r "$W/d" "$W/out" .
same "info of an image with an outside backing file" -- info d/outside.qcow2
check "--safe info does not open backing files" "$QIMG" --safe info d/outside.qcow2

# ---- inspect
insp() { # NAME WANT_RC GREP ARGS...: qimg inspect exit code and a line of its output
    local name=$1 want=$2 pat=$3 out rc
    shift 3
    out=$("$QIMG" inspect "$@" 2>&1); rc=$?
    if [ $rc -eq "$want" ] && grep -q -- "$pat" <<<"$out"; then pass "$name"
    else fail "$name" "exit $rc (want $want), want /$pat/" "$out"; fi
}
qemu-img create -q -f qcow2 q.qcow2 1M
qemu-img create -q -f raw r.raw 1M
qemu-img create -q -f vmdk -o subformat=streamOptimized s.vmdk 2M
insp "inspect: plain qcow2 is safe" 0 '^safe: yes' q.qcow2
insp "inspect: virtual size" 0 '^virtual size: 1048576' q.qcow2
insp "inspect: raw" 0 '^file format: raw' r.raw
insp "inspect: streamOptimized vmdk is safe" 0 '^safe: yes' s.vmdk
insp "inspect: backing file" 2 'unsafe: backing-file:' d/outside.qcow2
insp "inspect: data file" 2 'unsafe: data-file: .*out/data.raw' d/datafile.qcow2
insp "inspect: vmdk createType" 2 'unsafe: vmdk-create-type:' d/flat.vmdk
insp "inspect: vmdk extent outside" 2 'unsafe: vmdk-extent-outside:' d/evil.vmdk
insp "inspect: -f mismatch" 2 'unsafe: format-mismatch:' -f raw q.qcow2
insp "inspect: -f match" 0 '^safe: yes' -f qcow2 q.qcow2
cp q.qcow2 unk.qcow2
printf '\0\0\0\0\0\0\1\0' | dd of=unk.qcow2 bs=1 seek=72 conv=notrunc status=none
insp "inspect: unknown incompatible feature" 2 'unsafe: unknown-features:' unk.qcow2
cp q.qcow2 iso.qcow2
truncate -s 40000 iso.qcow2
printf 'CD001' | dd of=iso.qcow2 bs=1 seek=32769 conv=notrunc status=none
insp "inspect: qcow2 that is also an ISO" 2 'unsafe: multiple-formats:' iso.qcow2
# a raw disk with a GPT whose partition starts with a qcow2 header
python3 - q.qcow2 gpt.raw <<'EOF'
import struct, sys
q = open(sys.argv[1], 'rb').read()
img = bytearray(4 << 20)
img[446 + 4] = 0xEE
struct.pack_into('<II', img, 446 + 8, 1, 8191)
img[510:512] = b'\x55\xaa'
struct.pack_into('<8sIIIIQQQQ16sQII', img, 512, b'EFI PART', 0x10000, 92, 0, 0,
                 1, 8191, 34, 8158, bytes(16), 2, 128, 128)
img[1024:1040] = bytes(range(1, 17))
struct.pack_into('<QQ', img, 1024 + 32, 2048, 6143)
img[2048 * 512:2048 * 512 + len(q)] = q
open(sys.argv[2], 'wb').write(img)
EOF
insp "inspect: GPT partition holding a qcow2 header" 2 'unsafe: embedded-image:' gpt.raw
insp "inspect: GPT signature reported" 2 '^signatures: mbr gpt' gpt.raw
insp "inspect: missing file" 1 "Could not open 'nope'" nope
insp "inspect: bad --output" 1 'output' --output=xml q.qcow2
out=$("$QIMG" inspect --output=json d/outside.qcow2)
eq "inspect --output=json exit" "$?" 2
check_sh "inspect --output=json parses" "python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d[\"format\"]==\"qcow2\" and d[\"safe\"] is False and d[\"virtual-size\"]==1048576 and d[\"findings\"][0][\"check\"]==\"backing-file\"' '$out'"
head -c 100 q.qcow2 >trunc.qcow2
out=$("$QIMG" inspect trunc.qcow2 2>&1); rc=$?
check_sh "inspect: truncated header is a clean error or a finding" "[ $rc -eq 1 ] || [ $rc -eq 2 ]"
