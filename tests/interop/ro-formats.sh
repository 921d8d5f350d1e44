#!/usr/bin/env bash
# Interop: the read-only formats bochs, cloop and dmg. qemu-img cannot
# create them, so tests/interop/gen-ro-images.py writes small images of each
# (bochs v1 and v2 with sparse extents, cloop V2.0, dmg with zero, raw,
# ignore, zlib and bzip2 chunks as XML plist or resource fork) together
# with their expected contents, plus hostile variants. Both tools read them:
# contents, info, map, check, compare, refusals to write, and the errors for
# hostile images are compared with the real qemu-img 7.2.
#
# Known differences, asserted as such:
# - Debian's qemu-img has no dmg-bz2 module: it drops bzip2 chunks with a
#   warning and fails to read them; qimg decodes them (libbz2).
# - Where qemu-img crashes (a dmg without chunks: it reads outside its chunk
#   table) or shows stale memory (a raw dmg chunk shorter than its sector
#   count), qimg gives an I/O error / zeros.
# - For a dmg whose size is past INT64_MAX bytes, convert fails with qimg's
#   "Could not get size" rather than qemu-img's block-status error.
# - Where reads fail, qemu-img's convert reports the error once per
#   coroutine: such images are compared on info only.
GEN=$(cd "$(dirname "$0")" && pwd)/gen-ro-images.py
. "$(dirname "$0")/lib.sh"

fixture python3 "$GEN" .

# ================================================================ good images

for f in b2.bochs b1.bochs c.cloop d.dmg drsrc.dmg; do
    e=${f%.*}.expect.raw
    same "$f: info" -- info "$f"
    same "$f: info json" -- info --output=json "$f"
    same "$f: map json" -- map --output=json "$f"
    same "$f: compare with its contents" --rc 0 -- compare "$f" "$e"
    same "$f: convert -O raw" --rc 0 -- convert -O raw "$f" "$f.raw"
    check "$f: raw copy holds the expected contents" cmp "$A/$f.raw" "$A/$e"
done
for f in b0.bochs c512.cloop; do
    same "$f: convert -O raw" --rc 0 -- convert -O raw "$f" "$f.raw"
    check "$f: raw copy holds the expected contents" cmp "$A/$f.raw" "$A/${f%.*}.expect.raw"
done
for f in b2.bochs c.cloop d.dmg; do
    same "$f: map (qemu refuses: no offsets)" --rc 1 -- map "$f"
    same "$f: check (not supported)" --rc 63 -- check "$f"
    same "$f: convert -O qcow2" --rc 0 -- convert -O qcow2 "$f" "$f.qcow2"
    check "$f: qcow2 copy reads back (real qemu-img)" \
        "$QEMU_IMG" compare -f qcow2 -F raw "$A/$f.qcow2" "$A/${f%.*}.expect.raw"
done
same "d.dmg: check json" -- check --output=json d.dmg
same "d.dmg: measure" -- measure -O qcow2 d.dmg

# every other writable output format
for fmt in qcow qed vdi vpc vmdk vhdx parallels; do
    same "d.dmg: convert -O $fmt" --rc 0 -- convert -O "$fmt" d.dmg "d.$fmt"
    check "d.dmg: $fmt copy reads back (real qemu-img)" \
        "$QEMU_IMG" compare -f "$fmt" -F raw "$A/d.$fmt" "$A/d.expect.raw"
done

# probing: a .dmg name alone decides dmg (score 2, before cloop's 2)
same "probe: -f bochs" -- info -f bochs b2.bochs
same "probe: -f cloop" -- info -f cloop c.cloop
same "probe: cloop contents named .dmg (dmg wins the tie)" -- info h-cloop-named.dmg
same "probe: bochs contents named .dmg (bochs scores higher)" -- info h-bochs-named.dmg
same "probe: empty .dmg is raw" -- info h-dmg-empty.dmg
check_sh "--help lists bochs, cloop and dmg" \
    "'$QIMG' --help | grep '^Supported formats:' | grep -w bochs | grep -w cloop | grep -qw dmg"

# read-only: every opening for writing is refused
for f in b2.bochs c.cloop d.dmg; do
    same "$f: resize refused" --rc 1 -- resize "$f" 4M
    same "$f: commit refused" --rc 1 -- commit "$f"
done
same "d.dmg: amend refused" --rc 1 -- amend -o size=1M d.dmg
same "d.dmg: rebase refused" --rc 1 -- rebase -u -b x.raw d.dmg
same "d.dmg: snapshot -c refused" --rc 1 -- snapshot -c s1 d.dmg
same "d.dmg: check -r all refused" -- check -r all d.dmg
same "create -f dmg not supported" -- create -f dmg x.dmg 1M
same "create -f cloop not supported" -- create -f cloop x.cloop 1M
same "convert -O bochs not supported" -- convert -O bochs b2.bochs x.bochs
same "overlay over a bochs image" -- create -f qcow2 -b b2.bochs -F bochs ov.qcow2
same "overlay reads through to bochs" --rc 0 -- compare ov.qcow2 b2.expect.raw
same_files "no output image for refused operations"

# bzip2 chunks: qimg decodes them; Debian's qemu-img lacks the module
check "dbz.dmg: qimg reads bzip2 chunks" "$QIMG" convert -O raw "$A/dbz.dmg" "$A/dbz.raw"
check "dbz.dmg: bzip2 contents as written" cmp "$A/dbz.raw" "$A/dbz.expect.raw"
check_sh "dbz.dmg: qemu-img warns about its missing module" \
    "'$QEMU_IMG' info '$B/dbz.dmg' 2>&1 | grep -q 'dmg-bzip2 module is missing'"

# ================================================================ hostile images

# One check per group: every image's info (with the given options), then
# for those that open a convert to raw and the md5 of what it wrote.
hostile() { # NAME OPTS GLOB...
    local name=$1 opts=$2
    shift 2
    same_sh "hostile $name" -- '
        for f in '"$*"'; do
            echo "== $f"
            qemu-img info '"$opts"' "$f" 2>&1; rc=$?; echo "rc=$rc"
            [ $rc = 0 ] || continue
            qemu-img convert '"$opts"' -O raw "$f" "$f.raw" 2>&1; rc=$?; echo "convert rc=$rc"
            [ $rc = 0 ] && md5sum <"$f.raw"; rm -f "$f.raw"
        done'
}
hostile "bochs images (-f bochs)" "-f bochs" 'h-bochs-*.bochs'
hostile "bochs images (probed)" "" h-bochs-magic.bochs h-bochs-truncated.bochs
hostile "cloop images" "" \
    '$(ls h-cloop-*.cloop | grep -v -e bs-max -e wrap)'
hostile "cloop images (-f cloop)" "-f cloop" h-cloop-magic.cloop h-cloop-empty.cloop
same "hostile h-cloop-bs-max.cloop: info" -- info h-cloop-bs-max.cloop
same "hostile h-cloop-wrap.cloop: size wraps at 2^32 sectors" -- info h-cloop-wrap.cloop
hostile "dmg images" "" \
    '$(ls h-dmg-*.dmg | grep -v -e mish-short -e no-chunks -e xml-garbage -e xml-padding -e raw-short -e sectors-huge -e count-zero-ok -e sectors-big)'

# qemu-img segfaults reading a dmg without chunks; qimg fails cleanly
for f in h-dmg-mish-short.dmg h-dmg-no-chunks.dmg h-dmg-xml-garbage.dmg h-dmg-xml-padding.dmg; do
    same "hostile $f: info" -- info "$f"
    out=$(cd "$A" && "$QBIN/qemu-img" convert -O raw "$f" "$f.raw" 2>&1); rc=$?
    eq "hostile $f: qimg fails cleanly where qemu-img crashes" \
        "$rc|$(printf '%s\n' "$out" | grep -v '^qemu: module')" \
        "1|qemu-img: error while reading at byte 0: Input/output error"
done
# qemu-img shows bytes beyond its buffer; qimg zeros
f=h-dmg-raw-short.dmg
same "hostile $f: info" -- info "$f"
check "hostile $f: qimg reads it" "$QIMG" convert -O raw "$A/$f" "$A/$f.raw"
head -c 4096 "$A/$f" >"$W/want" && truncate -s 8192 "$W/want"
check "hostile $f: its data, then zeros" cmp "$A/$f.raw" "$W/want"
# sizes beyond what a raw target can hold: info and map only
for f in h-dmg-sectors-huge.dmg h-dmg-count-zero-ok.dmg h-dmg-sectors-big.dmg; do
    same "hostile $f: info json" -- info --output=json "$f"
    same "hostile $f: map json" -- map --output=json "$f"
done
same "hostile lzfse chunk: compare" -- compare h-dmg-lzfse.dmg d.expect.raw
