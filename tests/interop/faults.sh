#!/usr/bin/env bash
# tests/interop/faults.sh — writes and flushes that fail with EIO / ENOSPC.
#
# tests/crash/libfailshim.so (LD_PRELOAD) makes pwrite/write (and fsync/
# fdatasync, fallocate) on the target file fail, for qimg and for the real
# qemu-img alike. For each write-heavy command qimg must
#   - exit 1 with qemu-img's message: byte-identical where qemu-img prints one
#     message ("exact" cases), else qemu-img's shape — "qemu-img: ...: <strerror>"
#     on the last line (qemu adds cache-flush lines of its own at close);
#   - leave no file it created (convert, create, dd: "new" targets);
#   - leave an image it modified ("mod" targets) that the real `qemu-img check`
#     accepts (0, or 3 for leaked clusters) — or, where qemu-img itself leaves
#     a worse image under the same fault, no worse than qemu-img's.
# Under an ASan build the sanitizer runtime must come first in LD_PRELOAD:
# the shim goes after the libasan that qimg is linked against.
. "$(dirname "$0")/lib.sh"

SHIM=${QIMG_BUILD:+$QIMG_BUILD/tests/crash/libfailshim.so}
[ -n "$SHIM" ] && [ -f "$SHIM" ] || SHIM=$(dirname "$QIMG")/tests/crash/libfailshim.so
[ -f "$SHIM" ] || _bail "libfailshim.so not found (QIMG_BUILD=${QIMG_BUILD:-unset})"
asan=$(ldd "$QIMG" 2>/dev/null | awk '/libasan/ { print $3; exit }')
QPRE=${asan:+$asan:}$SHIM
RPRE=$SHIM

mkfix() {
    qemu-img create -q -f raw src.raw 4M &&
    "$QEMU_IO" -f raw -c 'write -P 0x11 0 1536k' -c 'write -P 0x12 3M 512k' src.raw >/dev/null &&
    qemu-img create -q -f qcow2 base.qcow2 4M &&
    "$QEMU_IO" -f qcow2 -c 'write -P 0x22 0 1M' base.qcow2 >/dev/null &&
    qemu-img create -q -f qcow2 -F qcow2 -b base.qcow2 top.qcow2 &&
    "$QEMU_IO" -f qcow2 -c 'write -P 0x33 1M 1M' top.qcow2 >/dev/null &&
    qemu-img rebase -u -F qcow2 -b m-base.qcow2 top.qcow2
}
fixture mkfix

# run_side DIR BIN PRELOAD OP ERRNO TARGET OUT ARGS...
run_side() {
    local dir=$1 bin=$2 pre=$3 op=$4 en=$5 tgt=$6 out=$7
    shift 7
    (cd "$dir" && LD_PRELOAD=$pre FAILSHIM_PATH=$dir/$tgt FAILSHIM_OP=$op FAILSHIM_ERRNO=$en \
        "$bin/qemu-img" "$@" >"$out.out" 2>"$out.err" </dev/null; echo $? >"$out.rc")
}

# fault NAME MODE(new|mod) MATCH(exact|shape) OP ERRNO TARGET -- ARGS...
# The inputs are fresh copies of the fixture: the modified image is TARGET.
fault() {
    local name=$1 mode=$2 match=$3 op=$4 en=$5 tgt=$6 side dir msg qrc rrc ck rck
    shift 7
    for dir in "$A" "$B"; do
        (cd "$dir" && rm -f o.* && cp base.qcow2 m-base.qcow2 && cp top.qcow2 m-top.qcow2)
    done
    # the two sides touch different files: run them side by side
    run_side "$A" "$QBIN" "$QPRE" "$op" "$en" "$tgt" "$T/fa" "$@" &
    run_side "$B" "$RBIN" "$RPRE" "$op" "$en" "$tgt" "$T/fb" "$@"
    wait
    qrc=$(cat "$T/fa.rc") rrc=$(cat "$T/fb.rc")
    eq "$name: exit code 1" "$qrc" 1
    if [ "$match" = exact ]; then
        eq "$name: qemu-img's message" "$(cat "$T/fa.err")" "$(cat "$T/fb.err")"
    else
        case $en in EIO) msg='Input/output error' ;; ENOSPC) msg='No space left on device' ;; esac
        # qemu-img's lines, or some of them (qemu adds cache-flush lines at
        # close), or failing that a "qemu-img: ...: <strerror>" last line
        side=$(tail -n 1 "$T/fa.err")
        if [ -s "$T/fa.err" ] && grep -qvxFf "$T/fb.err" "$T/fa.err"; then
            case $side in
                "qemu-img: "*"$msg"*) pass "$name: message shape" ;;
                *) fail "$name: message shape" "qimg: $(cat "$T/fa.err")" "qemu-img: $(cat "$T/fb.err")" ;;
            esac
        elif [ -s "$T/fa.err" ]; then
            pass "$name: message among qemu-img's"
        else
            fail "$name: message shape" "qimg printed nothing" "qemu-img: $(cat "$T/fb.err")"
        fi
    fi
    if [ "$mode" = new ]; then
        if [ -e "$A/$tgt" ]; then fail "$name: no file left" "$(ls -l "$A/$tgt")"
        else pass "$name: no file left"; fi
    else
        (cd "$B" && "$QEMU_IMG" check "$tgt" >/dev/null 2>&1; echo $? >"$T/fb.ck") &
        ck=$(cd "$A" && "$QEMU_IMG" check "$tgt" 2>&1); rc=$?
        wait
        rck=$(cat "$T/fb.ck")
        if [ $rc -eq 0 ] || [ $rc -eq 3 ] || [ $rc -le "$rck" ]; then
            pass "$name: qemu-img check (qimg $rc, qemu-img $rck)"
        else
            fail "$name: qemu-img check (qimg $rc, qemu-img $rck)" "$ck"
        fi
    fi
}

for en in EIO ENOSPC; do
    # writes fail from the first one on (ENOSPC: the commands that make files)
    fault "convert -O qcow2 write $en" new exact write $en o.qcow2 -- convert -O qcow2 src.raw o.qcow2
    fault "convert -O raw write $en" new exact write $en o.raw -- convert -O raw src.raw o.raw
    fault "create prealloc=full write $en" new exact write $en o.qcow2 -- \
        create -q -f qcow2 -o preallocation=full o.qcow2 4M
    [ $en = EIO ] &&
    fault "resize write $en" mod exact write $en m-base.qcow2 -- resize m-base.qcow2 +8M
    [ $en = EIO ] &&
    fault "commit write $en" mod shape write $en m-base.qcow2 -- commit m-top.qcow2
    [ $en = EIO ] &&
    fault "snapshot -c write $en" mod shape write $en m-base.qcow2 -- snapshot -c s1 m-base.qcow2
    fault "dd write $en" new exact write $en o.raw -- dd if=src.raw of=o.raw bs=64k
    [ $en = EIO ] &&
    fault "amend write $en" mod exact write $en m-base.qcow2 -- amend -f qcow2 -o compat=0.10 m-base.qcow2
done
# flushes fail (writes land in the page cache, the sync does not); ENOSPC
# takes the same paths as EIO here
for en in EIO; do
    fault "create prealloc=full flush $en" new shape flush $en o.qcow2 -- \
        create -q -f qcow2 -o preallocation=full o.qcow2 4M
    fault "create -f qcow2 flush $en" new shape flush $en o.qcow2 -- create -q -f qcow2 o.qcow2 4M
    fault "convert -O qcow2 flush $en" new shape flush $en o.qcow2 -- convert -O qcow2 src.raw o.qcow2
    fault "resize flush $en" mod shape flush $en m-base.qcow2 -- resize m-base.qcow2 +8M
    fault "commit flush $en" mod shape flush $en m-base.qcow2 -- commit m-top.qcow2
    fault "snapshot -c flush $en" mod shape flush $en m-base.qcow2 -- snapshot -c s1 m-base.qcow2
    fault "amend flush $en" mod shape flush $en m-base.qcow2 -- amend -f qcow2 -o compat=0.10 m-base.qcow2
done
# formats whose create qemu flushes only at close, dropping the error
for f in vdi vpc qcow parallels qed vmdk; do
    for dir in "$A" "$B"; do rm -f "$dir/o.img"; done
    run_side "$A" "$QBIN" "$QPRE" flush EIO o.img "$T/fa" create -q -f $f o.img 4M &
    run_side "$B" "$RBIN" "$RPRE" flush EIO o.img "$T/fb" create -q -f $f o.img 4M
    wait
    eq "create -f $f, failing flush: exit code as qemu-img's" "$(cat "$T/fa.rc")" "$(cat "$T/fb.rc")"
    eq "create -f $f, failing flush: stderr as qemu-img's" "$(cat "$T/fa.err")" "$(cat "$T/fb.err")"
    check "create -f $f, failing flush: image made" test -s "$A/o.img"
done

# a disk that fills up part-way through the copy
export FAILSHIM_AFTER=4
fault "convert -O qcow2 write ENOSPC after 4" new shape write ENOSPC o.qcow2 -- convert -O qcow2 src.raw o.qcow2
export FAILSHIM_AFTER=1
fault "convert -O raw write ENOSPC after 1" new shape write ENOSPC o.raw -- convert -O raw src.raw o.raw
fault "dd write EIO after 1" new shape write EIO o.raw -- dd if=src.raw of=o.raw bs=64k
unset FAILSHIM_AFTER
