#!/usr/bin/env bash
# Interop: the vpc (VHD) format — create (dynamic, fixed, force_size and
# qemu's CHS rounding), info, reads of qemu-made images, the size rules by
# creator application, writes verified by the real tool, and hostile
# footers / dynamic headers.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f vpc "$@" >/dev/null; }
poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
be32() { printf '%08x' "$1"; }
be64() { printf '%016x' "$1"; }
# vhdset FILE [footer|dyn|at:OFF] FIELD-OFF HEX ...: patch big-endian bytes in
# the footer copies (both, when the file starts with one), the dynamic header
# (at 512) or at an absolute offset, then fix the checksums of what changed.
# One python process per call keeps the scenario fast.
vhdset() {
    python3 - "$@" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
def patch(off, val):
    os.pwrite(fd, val, off)
def fix(off, n, ck):
    patch(off + ck, bytes(4))
    total = sum(os.pread(fd, n, off))
    patch(off + ck, ((~total) & 0xffffffff).to_bytes(4, 'big'))
args = sys.argv[2:]
while args:
    where, field, val = args[0], int(args[1], 0), bytes.fromhex(args[2])
    args = args[3:]
    if where == 'footer':
        offs = [size - 512] + ([0] if os.pread(fd, 8, 0) == b'conectix' else [])
        for o in offs:
            patch(o + field, val)
            fix(o, 512, 64)
    elif where == 'dyn':
        patch(512 + field, val)
        fix(512, 1024, 36)
    else:
        patch(int(where[3:], 0) + field, val)
os.close(fd)
PY
}
# Bytes of qimg's and qemu-img's FILE equal but for the footers' timestamp,
# checksum and UUID.
same_bytes() {
    local name=$1 f=$2
    python3 - "$A/$f" "$B/$f" "$T/m.a" "$T/m.b" <<'PY'
import sys
for src, dst in ((sys.argv[1], sys.argv[3]), (sys.argv[2], sys.argv[4])):
    b = bytearray(open(src, 'rb').read())
    for o in {0, max(len(b) - 512, 0)}:
        b[o + 24:o + 28] = bytes(4)
        b[o + 64:o + 84] = bytes(20)
    open(dst, 'wb').write(b)
PY
    if cmp -s "$T/m.a" "$T/m.b"; then pass "$name"; else
        fail "$name" "$(cmp "$T/m.a" "$T/m.b" 2>&1 | head -1)" \
            "sizes: qimg $(stat -c %s "$A/$f") qemu-img $(stat -c %s "$B/$f")"
    fi
}

nosize="grep -v -e actual-size -e '^disk size'"

# ============================================================== create

same "create dynamic 10M (CHS rounding)" -- create -f vpc c-dyn.vpc 10M
same "create fixed" -- create -f vpc -o subformat=fixed c-fix.vpc 10M
same "create force_size dynamic" -- create -f vpc -o force_size=on c-fs.vpc 10M
same "create all options (qemu's order)" -- create -f vpc -o force_size=on,subformat=fixed,size=5M c-all.vpc
same "create size 0" -- create -f vpc c-zero.vpc 0
same "create odd size" -- create -f vpc c-odd.vpc 3000
same "create 127G" -- create -f vpc c-127g.vpc 127G
same "create 200G (255 sectors/track)" -- create -f vpc c-200g.vpc 200G
same "create force_size 2040G" -- create -f vpc -o force_size=on c-max.vpc 2040G
for f in c-dyn c-fix c-fs c-all c-zero c-odd c-200g c-max; do
    verify "create $f: info json" -- info -f vpc --output=json "$f.vpc"
    same_bytes "create $f: bytes equal qemu-img's (but time, checksum, UUID)" "$f.vpc"
done
same "create subformat=foo" -- create -f vpc -o subformat=foo e1.vpc 1M
same "create force_size=maybe" -- create -f vpc -o force_size=maybe e2.vpc 1M
same "create 3T is too large" -- create -f vpc e3.vpc 3T
same "create force_size 2041G is too large" -- create -f vpc -o force_size=on e4.vpc 2041G
same "create -o preallocation=metadata" -- create -f vpc -o preallocation=metadata e5.vpc 1M
same "create -b (no backing option)" -- create -f vpc -b c-dyn.vpc e7.vpc 1M
same "create -o help" -- create -f vpc -o help
no_leftovers "create: failed creates leave no file" e1.vpc e2.vpc e3.vpc e4.vpc e5.vpc
same_files "create: files made"

# ============================================================== read qemu-made images

fixture "$QEMU_IMG" create -q -f vpc q.vpc 12M
fixture qio -c 'write -P 0x11 100k 3M' -c 'write -P 0x22 8M 4k' q.vpc
fixture "$QEMU_IMG" create -q -f vpc full.vpc 8M
fixture qio -c 'write -P 0x33 0 2M' -c 'write -P 0x44 4M 2M' full.vpc
fixture "$QEMU_IMG" create -q -f vpc -o subformat=fixed qf.vpc 4M
fixture qio -c 'write -P 0x55 1M 64k' qf.vpc
for f in q.vpc full.vpc; do
    # ext4 may allocate a block more or less for the same writes: sizes on
    # the host are not compared for images written with holes
    same "info $f" --filter "$nosize" -- info "$f"
    same "info --output=json $f" --filter "$nosize" -- info --output=json "$f"
    same "convert $f to raw" -- convert -O raw "$f" "$f.raw"
    same_image "convert $f to raw: content" "$f.raw"
done
same "check full.vpc (not supported)" -- check full.vpc
same "map full.vpc" -- map full.vpc
same "map --output=json full.vpc" -- map --output=json full.vpc
# qemu does not look for holes inside a dynamic image's blocks
same "map --output=json q.vpc (holes inside allocated blocks)" -- map --output=json q.vpc
same "info of a fixed image probes as raw" -- info qf.vpc
same "info -f vpc fixed" -- info -f vpc qf.vpc
same "info -f vpc --output=json fixed" -- info -f vpc --output=json qf.vpc
same "map -f vpc fixed" -- map -f vpc --output=json qf.vpc
same "convert -f vpc fixed to raw" -- convert -f vpc -O raw qf.vpc qf.raw
same_image "convert fixed: content" qf.raw

# ============================================================== size rules

for app in 'win ' qem2 vpc; do
    hex=$(printf '%s' "$app" | od -An -tx1 | tr -d ' \n')
    fixture cp q.vpc "app-$app.vpc"
    fixture vhdset "app-$app.vpc" footer 28 "$hex" footer 48 "$(be64 $((10 << 20)))"
    same "creator '$app': size" -- info --output=json "app-$app.vpc"
done
fixture cp q.vpc app-tap.vpc
fixture vhdset app-tap.vpc footer 28 74617000 footer 48 "$(be64 $((10 << 20)))"
same "creator 'tap\\0': size" -- info --output=json app-tap.vpc
fixture cp q.vpc maxchs.vpc
fixture vhdset maxchs.vpc footer 56 ffff10ff
same "maximum CHS uses current_size" -- info --output=json maxchs.vpc
same "force_size_calc=current_size" --filter 'grep -v ^image:' -- info --image-opts driver=vpc,force_size_calc=current_size,file.filename=app-vpc.vpc
same "force_size_calc=chs" --filter 'grep -v ^image:' -- info --image-opts driver=vpc,force_size_calc=chs,file.filename=app-win\ .vpc
same "force_size_calc=bogus" --filter 'grep -v ^image:' -- info --image-opts driver=vpc,force_size_calc=bogus,file.filename=q.vpc

# ============================================================== write

fixture mkdata d.raw 6M
same "convert raw to vpc" -- convert -O vpc d.raw d.vpc
verify "convert raw to vpc: compare" -- compare d.raw d.vpc
verify "convert raw to vpc: info" -- info --output=json d.vpc
same_bytes "convert raw to vpc: bytes equal qemu-img's (but time, checksum, UUID)" d.vpc
same "convert raw to fixed vpc" -- convert -O vpc -o subformat=fixed d.raw df.vpc
verify "convert raw to fixed vpc: compare" -- compare d.raw -f vpc df.vpc
same_bytes "convert raw to fixed vpc: bytes equal qemu-img's (but time, checksum, UUID)" df.vpc
same "convert raw to vpc force_size" -- convert -O vpc -o force_size=on d.raw dz.vpc
verify "convert raw to vpc force_size: compare" -- compare -s d.raw dz.vpc
verify "convert raw to vpc force_size: info" -- info --output=json dz.vpc
same "convert vpc to vpc" -- convert -O vpc q.vpc q2.vpc
verify "convert vpc to vpc: compare" -- compare q.vpc q2.vpc
fixture cp q.vpc w.vpc
fixture "$QEMU_IMG" create -q -f vpc t.vpc 12M
fixture qio -c 'write -P 0x66 2M 1M' -c 'write -P 0x77 11M 8k' -c 'write -P 0x78 150k 4k' t.vpc
same "convert -n into an existing image" -- convert -n -O vpc t.vpc w.vpc
verify "convert -n: compare with the source" -- compare t.vpc w.vpc
verify "convert -n: info" --filter "$nosize" -- info --output=json w.vpc
same "resize is not supported" -- resize d.vpc 8M

# ============================================================== hostile

bad() { # NAME WHERE FIELD HEX ... (see vhdset)
    local n=$1
    shift
    fixture cp --sparse=always q.vpc "h-$n.vpc"
    fixture vhdset "h-$n.vpc" "$@"
    same "hostile $n: info" -- info "h-$n.vpc"
}
bad checksum at:0 64 12345678
bad cookie at:0 0 00
bad dyn-magic at:512 0 00
bad block-size dyn 32 "$(be32 1000)"
bad table-small dyn 28 "$(be32 2)"
bad table-negative dyn 28 80000000
bad bat-offset dyn 16 "$(be64 $((1 << 40)))"
bad bat-offset-wrap dyn 16 ffffffffffffff00
bad bat-entry at:1536 0 7fffffff
bad data-offset footer 16 "$(be64 $((1 << 40)))"
bad too-big footer 56 ffff10ff footer 48 "$(be64 $((3 << 40)))"
bad fixed-type-at-0 footer 60 00000002
same "hostile cookie: info -f vpc" -- info -f vpc h-cookie.vpc
fixture cp q.vpc trunc.vpc
fixture truncate -s 2M trunc.vpc
same "truncated dynamic image" -- info trunc.vpc
fixture truncate -s 100 tiny.vpc
same "file too small" -- info -f vpc tiny.vpc
fixture cp qf.vpc qf-bad.vpc
fixture truncate -s -1 qf-bad.vpc
same "fixed image without its footer" -- info -f vpc qf-bad.vpc
