#!/usr/bin/env bash
# Interop: hostile images (scripts/hostile-images.sh --quick). qemu-img makes
# valid images of every format, python patches them into truncated ones,
# oversized tables and counts, out-of-range offsets, bad checksums, backing
# loops and chains, VMDK extents escaping their folder; qimg info --output=json,
# check, map and convert -O raw must end each with a clean error or success:
# no crash (signal, sanitizer report), no hang (10 s), no stray files.
. "$(dirname "$0")/lib.sh"

out=$("$_repo_dir/scripts/hostile-images.sh" --quick "$QIMG" 2>&1)
rc=$?
summary=$(printf '%s\n' "$out" | grep '^hostile images:' | tail -1)
count() { printf '%s\n' "$summary" | grep -oE "[0-9]+ $1" | grep -oE '^[0-9]+'; }
if [ -z "$summary" ]; then
    fail "hostile images: the script ran" "exit $rc" "$(printf '%s\n' "$out" | tail -20)"
else
    runs=$(count runs)
    eq "hostile images: no crashes ($runs runs)" "$(count crashes)" 0
    eq "hostile images: no hangs" "$(count hangs)" 0
    eq "hostile images: no leftover files" "$(count 'leftover files')" 0
    [ "$rc" -eq 0 ] && pass "hostile images: script exit status 0" ||
        fail "hostile images: script exit status 0" "$(printf '%s\n' "$out" | grep -vE '^hostile images:' | head -60)"
fi
