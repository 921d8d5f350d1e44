#!/usr/bin/env bash
# scripts/demo.sh [BUILD_DIR] — qimg's main job on a built-in example.
#
# Makes a 64 MiB raw disk with known content (random and pattern data at a few
# offsets, an explicitly written zero run, holes elsewhere), converts it with
# qimg to qcow2 (or raw, if qimg has no qcow2 yet) and back to raw, prints
# `qimg info` of each image, checks the round trip with `qimg compare` (or
# `cmp`), and, when the real qemu-img is installed, verifies qimg's images
# with it too. The last line says DEMO PASSED or DEMO FAILED; the exit status
# is non-zero on failure.
#
# Environment: QIMG (default BUILD_DIR/qimg), QEMU_IMG (default qemu-img),
# KEEP=1 keeps the work directory.

set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
QIMG=${QIMG:-$build/qimg}
QEMU_IMG=${QEMU_IMG:-qemu-img}

failures=()
step() { printf '\n== %s\n' "$*"; }
run() { # echo and run a command
    printf '$ %s\n' "$*"
    "$@"
}
failed() { failures+=("$1"); echo "FAILED: $1"; }

if [ ! -x "$QIMG" ]; then
    echo "qimg not found at '$QIMG' (build it, or pass BUILD_DIR / QIMG=...)"
    echo "DEMO FAILED: no qimg binary"
    exit 1
fi
QIMG=$(realpath -s "$QIMG")

work=$(mktemp -d "${TMPDIR:-/tmp}/qimg-demo.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then echo "(work directory kept: $work)"; else rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work" || exit 1

# ---- deterministic content
randbytes() { # SEED N
    local key
    key=$(printf '%s' "$1" | md5sum | cut -c1-32)
    head -c "$2" /dev/zero |
        openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -nosalt
}
fillbyte() { # OCTAL N
    if [ "$1" = 000 ]; then head -c "$2" /dev/zero; else head -c "$2" /dev/zero | tr '\000' "\\$1"; fi
}
put() { # FILE OFFSET SOURCE-CMD...
    local f=$1 off=$2
    shift 2
    "$@" | dd of="$f" bs=64k seek="$off" oflag=seek_bytes conv=notrunc iflag=fullblock status=none
}

MiB=$((1024 * 1024))
step "1. make a 64 MiB raw disk with known content"
run "$QIMG" create -f raw disk.raw 64M || failed "qimg create -f raw"
put disk.raw 0 randbytes boot 65536                       # "boot sector" area
put disk.raw $((1 * MiB)) fillbyte 252 $((1 * MiB))       # 1 MiB of 0xaa
put disk.raw $((10 * MiB + 4096)) randbytes mid 300000    # unaligned random run
put disk.raw $((20 * MiB)) fillbyte 000 $((2 * MiB))      # written zeros (allocated)
put disk.raw $((33 * MiB)) fillbyte 125 512               # one sector of 0x55
put disk.raw $((64 * MiB - 65536)) randbytes tail 65536   # the last 64 KiB
echo "content: random 0-64K, 0xaa at 1M (1M), random at 10M+4K (300000 B),"
echo "         zeros written at 20M (2M), 0x55 at 33M (512 B), random in the last 64K; holes elsewhere"
echo "allocated on the host: $(du -k disk.raw | cut -f1) KiB of $(stat -c %s disk.raw) bytes"

step "2. pick the target format"
if "$QIMG" create -f qcow2 -o help >/dev/null 2>&1; then
    fmt=qcow2
    echo "qimg supports qcow2: converting raw -> qcow2 -> raw"
else
    fmt=raw
    echo "NOTE: 'qimg create -f qcow2 -o help' failed: qcow2 is not available in this build;"
    echo "      falling back to a raw -> raw -> raw round trip"
fi
mid=disk.$fmt
[ "$fmt" = raw ] && mid=disk-copy.raw

step "3. convert raw -> $fmt with qimg"
run "$QIMG" convert -p -f raw -O "$fmt" disk.raw "$mid" || failed "qimg convert raw -> $fmt"

step "4. convert $fmt -> raw with qimg"
run "$QIMG" convert -p -f "$fmt" -O raw "$mid" back.raw || failed "qimg convert $fmt -> raw"

step "5. qimg info of each image"
for f in disk.raw "$mid" back.raw; do
    run "$QIMG" info "$f" || failed "qimg info $f"
    echo
done

step "6. check the round trip"
# Is qimg's compare there? An image compared with itself must be identical.
if "$QIMG" compare -f raw -F raw disk.raw disk.raw 2>/dev/null | grep -qx 'Images are identical.'; then
    run "$QIMG" compare -f raw -F raw disk.raw back.raw || failed "qimg compare disk.raw back.raw"
    if [ "$fmt" != raw ]; then
        run "$QIMG" compare -f raw -F "$fmt" disk.raw "$mid" || failed "qimg compare disk.raw $mid"
    fi
else
    echo "(qimg compare is not available yet; using cmp)"
    if run cmp disk.raw back.raw; then echo "cmp: identical"; else failed "cmp: disk.raw and back.raw differ"; fi
fi
echo "host allocation: disk.raw $(du -k disk.raw | cut -f1) KiB, $mid $(du -k "$mid" | cut -f1) KiB," \
    "back.raw $(du -k back.raw | cut -f1) KiB"

step "7. verify with the real qemu-img"
if command -v "$QEMU_IMG" >/dev/null 2>&1; then
    echo "oracle: $("$QEMU_IMG" --version | head -1)"
    run "$QEMU_IMG" compare -f raw -F "$fmt" disk.raw "$mid" || failed "qemu-img compare disk.raw $mid"
    run "$QEMU_IMG" compare -f raw -F raw disk.raw back.raw || failed "qemu-img compare disk.raw back.raw"
    if [ "$fmt" = qcow2 ]; then
        run "$QEMU_IMG" check "$mid" || failed "qemu-img check $mid"
    fi
    run "$QEMU_IMG" info -f "$fmt" "$mid" || failed "qemu-img info $mid"
else
    echo "(qemu-img is not installed: skipping the independent verification)"
fi

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "DEMO PASSED: 64 MiB raw -> $fmt -> raw round trip is identical"
    exit 0
fi
echo "DEMO FAILED: ${#failures[@]} problem(s): $(IFS=';'; echo "${failures[*]}")"
exit 1
