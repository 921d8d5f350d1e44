#!/usr/bin/env bash
# Interop: qcow2 internal snapshots — snapshot -l/-c/-a/-d and convert -l,
# made by one tool and used by the other, each compared with the real
# qemu-img 7.2 (outputs, `qemu-img check`, image bytes up to the creation
# dates); plus block status of images with metadata preallocation (qemu's
# BDRV_BLOCK_RECURSE heuristic).
. "$(dirname "$0")/lib.sh"

# Dates are listed in local time: pin a zone with a non-zero offset.
export TZ=Asia/Kolkata

# ============================================== metadata preallocation map

mk_prealloc() {
    "$QEMU_IMG" create -q -f qcow2 -o preallocation=metadata pm.qcow2 4M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 128k' pm.qcow2 >/dev/null
}
fixture mk_prealloc
same "map json of a preallocation=metadata image" -- map --output=json pm.qcow2
same "map human of a preallocation=metadata image" -- map pm.qcow2
same "convert -O raw of a preallocation=metadata image" -- convert -O raw pm.qcow2 pm.raw
same_image "preallocation=metadata: converted raw" pm.raw

# ================================================================ helpers

# Creation dates differ between the two sides (and the VM clock never does).
filter_date='sed -E -e "s/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}/DATE/" -e "s/\"date-(n?sec)\": [0-9]+/\"date-\1\": N/"'

# snap_bytes NAME FILE NSNAP: $A/FILE and $B/FILE are the same bytes except
# for at most the 8 date bytes of each of the NSNAP snapshot table entries —
# qimg lays out and writes everything exactly as qemu-img does.
snap_bytes() {
    local name=$1 f=$2 n=$3 sa sb diffs
    sa=$(stat -c %s "$A/$f") sb=$(stat -c %s "$B/$f")
    if [ "$sa" != "$sb" ]; then
        fail "$name" "sizes differ: qimg $sa, qemu-img $sb"
        return
    fi
    diffs=$(cmp -l "$A/$f" "$B/$f" | wc -l)
    if [ "$diffs" -le $((8 * n)) ]; then pass "$name"; else
        fail "$name" "$diffs bytes differ (at most $((8 * n)) date bytes may)" \
            "$(cmp -l "$A/$f" "$B/$f" | head -20)"
    fi
}

# clean NAME FILE: the real qemu-img check finds nothing wrong in $A/FILE.
clean() {
    local out rc
    out=$("$QEMU_IMG" check "$A/$2" 2>&1); rc=$?
    if [ $rc -eq 0 ] && [[ $out == *"No errors were found on the image."* ]] &&
       [[ $out != *eak* ]]; then pass "$1"; else
        fail "$1" "exit code: $rc" "$out"
    fi
}

# both_list NAME FILE: both tools list the snapshots of the same file alike.
both_list() {
    local a b
    a=$("$QIMG" snapshot -l "$A/$2" 2>&1; echo "rc=$?")
    b=$("$QEMU_IMG" snapshot -l "$A/$2" 2>&1; echo "rc=$?")
    eq "$1" "$a" "$b"
}

# raw_is NAME FILE REF: $A/FILE and $B/FILE both hold the bytes of $A/REF.
raw_is() {
    if cmp -s "$A/$2" "$A/$3" && cmp -s "$B/$2" "$A/$3"; then pass "$1"; else
        fail "$1" "$2 differs from $3"
    fi
}

# ========================================== snapshots made by each tool

# mk_base FILE SIZE [CREATE-OPTS]: a qemu-io written image with normal,
# compressed and zero clusters (and FILE-0.raw, its data), made once and
# copied alike to both sides so they start from the same bytes and the same
# allocation (qemu-io compresses clusters in parallel, in no fixed order).
mk_base() {
    local f=$1
    ( cd "$W" && "$QEMU_IMG" create -q -f qcow2 "$@" &&
      "$QEMU_IO" -c 'write -P 0xaa 0 64k' -c 'write -P 0xcc 512k 64k' \
          -c 'write -c -P 0x11 256k 64k' -c 'write -z 128k 64k' \
          -c 'write -P 0x33 900k 100k' "$f" >/dev/null &&
      "$QEMU_IMG" convert -O raw "$f" "${f%.qcow2}-0.raw" ) &&
    cp "$W/$f" "$W/${f%.qcow2}-0.raw" "$A/" &&
    cp "$W/$f" "$W/${f%.qcow2}-0.raw" "$B/" &&
    rm -f "$W/$f" "$W/${f%.qcow2}-0.raw" ||
        _bail "could not make $f"
}
mk_base base.qcow2 2M

same "snapshot -c on a qemu-io written image" -- snapshot -c s1 base.qcow2
clean "snapshot -c: qemu-img check is clean" base.qcow2
same "check after snapshot -c" -- check base.qcow2
snap_bytes "snapshot -c: image bytes equal qemu-img's" base.qcow2 1
both_list "snapshot -l of qimg's snapshot: both tools agree" base.qcow2
same "snapshot -l after snapshot -c" --filter "$filter_date" -- snapshot -l base.qcow2
same "info json after snapshot -c" --filter "$filter_date" -- info --output=json base.qcow2

# Writes after the snapshot copy shared clusters and leave it alone.
w1() { "$QEMU_IO" -c 'write -P 0xbb 0 4k' -c 'write -P 0xdd 300k 4k' -c 'discard 512k 64k' \
                  -c 'write -P 0xee 1500k 8k' base.qcow2 >/dev/null &&
       "$QEMU_IMG" convert -O raw base.qcow2 base-1.raw; }
fixture w1
clean "writes after snapshot: check clean" base.qcow2
snap_bytes "writes after snapshot: image bytes equal" base.qcow2 1
same "convert -l s1" -- convert -l s1 -O raw base.qcow2 l-s1.raw
raw_is "convert -l s1 gives the data at snapshot time" l-s1.raw base-0.raw
same "convert -l snapshot.id=1,snapshot.name=s1" -- \
    convert -l snapshot.id=1,snapshot.name=s1 -O raw base.qcow2 l-in.raw
raw_is "convert -l snapshot.id=1,snapshot.name=s1 data" l-in.raw base-0.raw
check_sh "qemu-img convert -l reads qimg's snapshot the same" \
    "'$QEMU_IMG' convert -l s1 -O raw '$A/base.qcow2' '$W/q-s1.raw' && cmp '$W/q-s1.raw' '$A/base-0.raw'"

same "second snapshot -c" -- snapshot -c s2 base.qcow2
clean "second snapshot: check clean" base.qcow2
snap_bytes "second snapshot: image bytes equal" base.qcow2 2
same "convert -l s2" -- convert -l s2 -O raw base.qcow2 l-s2.raw
raw_is "convert -l s2 data" l-s2.raw base-1.raw

w2() { "$QEMU_IO" -c 'write -P 0x77 0 1M' base.qcow2 >/dev/null; }
fixture w2
same "snapshot -a s1" -- snapshot -a s1 base.qcow2
clean "snapshot -a: check clean" base.qcow2
same "check after snapshot -a" -- check base.qcow2
snap_bytes "snapshot -a: image bytes equal" base.qcow2 2
same "convert after snapshot -a" -- convert -O raw base.qcow2 a-s1.raw
raw_is "snapshot -a restores the data" a-s1.raw base-0.raw
same "snapshot -a 2 (by id)" -- snapshot -a 2 base.qcow2
same "convert after snapshot -a 2" -- convert -O raw base.qcow2 a-s2.raw
raw_is "snapshot -a 2 restores the data" a-s2.raw base-1.raw
clean "snapshot -a 2: check clean" base.qcow2

same "snapshot -d s1" -- snapshot -d s1 base.qcow2
clean "snapshot -d: check clean (space freed)" base.qcow2
snap_bytes "snapshot -d: image bytes equal" base.qcow2 2
both_list "snapshot -l after -d: both tools agree" base.qcow2
same "snapshot -c after -d takes the next id" -- snapshot -c s3 base.qcow2
same "snapshot -l: ids after -d" --filter "$filter_date" -- snapshot -l base.qcow2
same_sh "snapshot -d s2, s3 (the last one)" -- 'qemu-img snapshot -d s2 base.qcow2 && qemu-img snapshot -d s3 base.qcow2'
clean "all deleted: check clean" base.qcow2
same "check with all snapshots deleted" -- check base.qcow2
same "snapshot -l with none left" -- snapshot -l base.qcow2
same "convert after all deleted" -- convert -O raw base.qcow2 d-all.raw
raw_is "data after all deleted" d-all.raw base-1.raw

# ============================================ across tools, both ways

mk_base x.qcow2 1M
mk_q() { "$QEMU_IMG" snapshot -c qa x.qcow2 &&
         "$QEMU_IO" -c 'write -P 0x44 0 128k' x.qcow2 >/dev/null &&
         "$QEMU_IMG" snapshot -c qb x.qcow2 &&
         "$QEMU_IO" -c 'write -P 0x45 64k 128k' x.qcow2 >/dev/null; }
fixture mk_q
both_list "qemu-img's snapshots listed alike" x.qcow2
same "convert -l of qemu-img's snapshot" -- convert -l qa -O raw x.qcow2 x-qa.raw
raw_is "convert -l of qemu-img's snapshot data" x-qa.raw x-0.raw
same "snapshot -a of qemu-img's snapshot" -- snapshot -a qa x.qcow2
clean "apply of qemu-img's snapshot: check clean" x.qcow2
snap_bytes "apply of qemu-img's snapshot: bytes equal" x.qcow2 2
same "snapshot -d of qemu-img's snapshot" -- snapshot -d qb x.qcow2
clean "delete of qemu-img's snapshot: check clean" x.qcow2
snap_bytes "delete of qemu-img's snapshot: bytes equal" x.qcow2 2

# qimg's snapshot used by the real qemu-img (in both dirs: A holds qimg's).
mk_base y.qcow2 1M
same "snapshot -c for qemu-img to use" -- snapshot -c ya y.qcow2
fixture "$QEMU_IO" -c 'write -P 0x66 0 256k' y.qcow2
verify "qemu-img snapshot -a of qimg's snapshot" -- snapshot -a ya y.qcow2
verify "qemu-img check after applying qimg's snapshot" -- check y.qcow2
verify "qemu-img convert after applying qimg's snapshot" -- convert -O raw y.qcow2 y-a.raw
raw_is "qemu-img applied qimg's snapshot: data" y-a.raw y-0.raw
same "snapshot -c again" -- snapshot -c yb y.qcow2
verify "qemu-img snapshot -d of qimg's snapshot" -- snapshot -d yb y.qcow2
verify "qemu-img check after deleting qimg's snapshot" -- check y.qcow2
snap_bytes "qemu-img on qimg's snapshots: bytes equal" y.qcow2 1

# ===================================================== image variants

variant() { # NAME CLUSTER-SIZE CREATE-OPTS...
    local v=$1 cs=$2
    shift 2
    mk_base "$v.qcow2" 1M "$@"
    same "$v: snapshot -c" -- snapshot -c s "$v.qcow2"
    snap_bytes "$v: bytes equal after snapshot -c" "$v.qcow2" 1
    # one compressed cluster: qemu-io orders several arbitrarily
    fixture "$QEMU_IO" -c 'write -P 0x99 0 192k' -c "write -c -P 0x98 768k $cs" "$v.qcow2"
    clean "$v: check clean after snapshot and writes" "$v.qcow2"
    snap_bytes "$v: bytes equal" "$v.qcow2" 1
    same "$v: convert -l" -- convert -l s -O raw "$v.qcow2" "$v-l.raw"
    raw_is "$v: snapshot data" "$v-l.raw" "$v-0.raw"
    same "$v: snapshot -a" -- snapshot -a s "$v.qcow2"
    same "$v: convert after -a" -- convert -O raw "$v.qcow2" "$v-a.raw"
    raw_is "$v: applied data" "$v-a.raw" "$v-0.raw"
    same "$v: snapshot -d" -- snapshot -d s "$v.qcow2"
    clean "$v: check clean after -d" "$v.qcow2"
    snap_bytes "$v: bytes equal after -d" "$v.qcow2" 1
}
variant v2 64k -o compat=0.10
variant extl2 64k -o extended_l2=on
variant c4k 4k -o cluster_size=4k,refcount_bits=64,lazy_refcounts=on

# refcount_bits=1 cannot count a second reference: qemu fails and leaks the
# L1 copy; so do we.
mk_base r.qcow2 1M -o refcount_bits=1
same "refcount_bits=1: snapshot -c fails" -- snapshot -c s r.qcow2
same "refcount_bits=1: check after the failure" -- check r.qcow2

# A snapshot keeps the disk size; applying it resizes the image back.
mk_base rs.qcow2 1M
same "resize: snapshot -c" -- snapshot -c small rs.qcow2
fixture "$QEMU_IMG" resize -q rs.qcow2 3M
fixture "$QEMU_IO" -c 'write -P 0x21 2M 64k' rs.qcow2
same "resize: snapshot -c at 3M" -- snapshot -c big rs.qcow2
same "resize: snapshot -a to a smaller disk" -- snapshot -a small rs.qcow2
# (disk usage is left out: shrinking does not punch holes as qemu does yet)
filter_du='sed -E -e "s/^disk size: .*/disk size: N/" -e "s/\"actual-size\": [0-9]+/\"actual-size\": N/"'
same "resize: info after -a" --filter "$filter_date | $filter_du" -- info rs.qcow2
clean "resize: check clean after shrinking -a" rs.qcow2
same "resize: snapshot -a to a bigger disk" -- snapshot -a big rs.qcow2
same "resize: info after growing -a" --filter "$filter_date | $filter_du" -- info --output=json rs.qcow2
clean "resize: check clean after growing -a" rs.qcow2
same "resize: convert after growing -a" -- convert -O raw rs.qcow2 rs-big.raw
same_image "resize: data after growing -a" rs-big.raw
same "resize: convert -l of the small one" -- convert -l small -O raw rs.qcow2 rs-small.raw
same_image "resize: convert -l keeps the current size" rs-small.raw
fixture "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 rv2.qcow2 1M
fixture "$QEMU_IMG" snapshot -c s rv2.qcow2
same "v2 image with snapshots cannot resize" -- resize rv2.qcow2 2M

# Many snapshots: 20 entries of ~270 bytes outgrow a 4k cluster; names are
# cut to 255 characters as qemu-img does.
mk_many() { "$QEMU_IMG" create -q -f qcow2 -o cluster_size=4k m.qcow2 1M &&
            "$QEMU_IO" -c 'write -P 0x12 0 64k' m.qcow2 >/dev/null; }
fixture mk_many
long=$(printf 'long-name-%.0s' $(seq 30))
same_sh "20 snapshots" -- 'for i in $(seq 20); do qemu-img snapshot -c "$i-'$long'" m.qcow2 || exit; done'
clean "20 snapshots: check clean" m.qcow2
snap_bytes "20 snapshots: bytes equal" m.qcow2 20
same "20 snapshots: list" --filter "$filter_date" -- snapshot -l m.qcow2
both_list "20 snapshots: both tools list alike" m.qcow2
same_sh "delete a few" -- 'for i in 1 7 20; do qemu-img snapshot -d "$i-'${long:0:253}'" m.qcow2 || exit; done'
clean "3 deleted: check clean" m.qcow2
snap_bytes "3 deleted: bytes equal" m.qcow2 20
same "17 left: list" --filter "$filter_date" -- snapshot -l m.qcow2
same "17 left: convert -l of one" -- convert -l 15 -O raw m.qcow2 m15.raw
same_image "17 left: snapshot data" m15.raw

# ============================================================== errors

mk_base e.qcow2 1M
same "snapshot -c e1" -- snapshot -c e1 e.qcow2
same "duplicate name is allowed (new id)" -- snapshot -c e1 e.qcow2
same "list with a duplicate name" --filter "$filter_date" -- snapshot -l e.qcow2
same "snapshot -d of a duplicate name deletes the first" -- snapshot -d e1 e.qcow2
same "list after deleting a duplicate" --filter "$filter_date" -- snapshot -l e.qcow2
same "snapshot -a of a missing snapshot" -- snapshot -a nope e.qcow2
same "snapshot -d of a missing snapshot" -- snapshot -d nope e.qcow2
same "snapshot -d by id is by name only" -- snapshot -d 2 e.qcow2
same "convert -l of a missing snapshot" -- convert -l nope -O raw e.qcow2 e-x.raw
same "convert -l snapshot.id of a missing id" -- convert -l snapshot.id=9 -O raw e.qcow2 e-x.raw
same "convert -l snapshot.id,name mismatch" -- convert -l snapshot.id=2,snapshot.name=zz -O raw e.qcow2 e-x.raw
same "convert -l bad snapshot param" -- convert -l snapshot.foo=1 -O raw e.qcow2 e-x.raw
same "convert -l short-form snapshot param" -- convert -l snapshot.id -O raw e.qcow2 e-x.raw
same "convert -l snapshot param help" -- convert -l snapshot.id=2,help -O raw e.qcow2 e-x.raw
same "convert -l snapshot param bad id" -- convert -l snapshot.id=2,id=9x -O raw e.qcow2 e-x.raw
same "convert -l with two sources" -- convert -l e1 -O raw e.qcow2 e.qcow2 e-x.raw
same "snapshot -c read-only (image-opts)" -- \
    snapshot -c ro --image-opts driver=qcow2,file.filename=e.qcow2,read-only=on
same "snapshot -c with -U" -- snapshot -c ro -U e.qcow2
same "snapshot -l with -U" --filter "$filter_date" -- snapshot -l -U e.qcow2
same "snapshot -a and -c mixed" -- snapshot -a e1 -c x e.qcow2
same "snapshot without image" -- snapshot -c x
same "snapshot of a missing file" -- snapshot -c x missing.qcow2
fixture "$QEMU_IMG" bitmap --add e.qcow2 bm
same "snapshot -a with a persistent bitmap" -- snapshot -a e1 e.qcow2
fixture "$QEMU_IMG" create -q -f raw e.raw 1M
same "snapshot -c on raw" -- snapshot -c x -f raw e.raw
same "snapshot -d on raw" -- snapshot -d x e.raw
same "snapshot -l on raw" -- snapshot -l e.raw
same "convert -l on raw" -- convert -l x -O raw e.raw e-x.raw
fixture "$QEMU_IMG" create -q -f qcow2 -o data_file=df.raw df.qcow2 1M
same "snapshot -c with a data file" -- snapshot -c x df.qcow2
same "snapshot -a with a data file" -- snapshot -a x df.qcow2
same "snapshot -d with a data file" -- snapshot -d x df.qcow2
same "snapshot -l with a data file" -- snapshot -l df.qcow2

# Hostile: a snapshot whose L1 table offset is not cluster aligned.
mk_base h.qcow2 1M
mk_bad() {
    "$QEMU_IMG" snapshot -c hs h.qcow2 || return 1
    local t
    t=$(od -An -tu8 --endian=big -j64 -N8 h.qcow2 | tr -d ' ')
    printf '\x00\x00\x00\x00\x00\x01\x02\x00' |
        dd of=h.qcow2 bs=1 seek="$t" conv=notrunc status=none
}
fixture mk_bad
same "hostile: snapshot -a with an unaligned L1" -- snapshot -a hs h.qcow2
same "hostile: snapshot -d with an unaligned L1" -- snapshot -d hs h.qcow2
same "hostile: convert -l with an unaligned L1" -- convert -l hs -O raw h.qcow2 h.raw
same "hostile: check" -- check h.qcow2
