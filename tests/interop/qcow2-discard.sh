#!/usr/bin/env bash
# Interop: freed qcow2 clusters are handed to the file as discards (hole
# punches) exactly where qemu-img 7.2 does it — pass-discard-snapshot
# (snapshot delete/apply, emptying a non-trivial top after commit),
# pass-discard-request (zero writes that may unmap: convert, commit), the
# always-passed frees (check repairs, bitmap data, shrunk L2 tables) — and
# not for old metadata tables (pass-discard-other is off). A commit into the
# backing file resets a plain v3 top to four clusters (qemu's
# make_completely_empty). Judged by `info` (disk size), the files' allocated
# block ranges and the real `qemu-img check`.
. "$(dirname "$0")/lib.sh"

qio() { "$QEMU_IO" -f qcow2 "$@" >/dev/null; }

# -- snapshot delete: the snapshot's clusters go, in one punch per run
mksnap() { "$QEMU_IMG" create -q -f qcow2 sn.qcow2 4M && qio -c 'write -P 1 0 4M' sn.qcow2 &&
           "$QEMU_IMG" snapshot -c s1 sn.qcow2 && qio -c 'write -P 2 0 2M' sn.qcow2 &&
           cp --sparse=never sn.qcow2 sa.qcow2; }
# "disk size" also counts ext4's extent-tree blocks, which vary by a block
# with the file's fragmentation on a busy machine: info is compared without
# it, and the allocated block ranges (same_alloc) are compared exactly.
fixture mksnap
same "snapshot -d" -- snapshot -d s1 sn.qcow2
same "snapshot -d: info" --filter 'grep -v "disk size"' -- info sn.qcow2
same_alloc "snapshot -d: allocation" sn.qcow2
verify "snapshot -d: check" -- check sn.qcow2
check_sh "snapshot -d: bytes as qemu's" "cmp '$A/sn.qcow2' '$B/sn.qcow2'"
same "snapshot -a" -- snapshot -a s1 sa.qcow2
same_alloc "snapshot -a: allocation" sa.qcow2
verify "snapshot -a: check" -- check sa.qcow2

# -- v2: the same without a dirty bit
mksnap2() { "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 s2.qcow2 4M &&
            qio -c 'write -P 1 0 4M' s2.qcow2 && "$QEMU_IMG" snapshot -c s1 s2.qcow2 &&
            qio -c 'write -P 2 1M 1M' s2.qcow2; }
fixture mksnap2
same "v2 snapshot -d" -- snapshot -d s1 s2.qcow2
same "v2 snapshot -d: info json" --filter 'grep -v actual-size' -- info --output=json s2.qcow2
same_alloc "v2 snapshot -d: allocation" s2.qcow2
check_sh "v2 snapshot -d: bytes as qemu's" "cmp '$A/s2.qcow2' '$B/s2.qcow2'"

# -- commit: a plain v3 top is reset to header, reftable, refblock, L1
mkcommit() { "$QEMU_IMG" create -q -f qcow2 cb.qcow2 4M &&
             "$QEMU_IMG" create -q -f qcow2 -b cb.qcow2 -F qcow2 ct.qcow2 &&
             qio -c 'write -P 3 0 3M' -c 'write -z 3M 512k' ct.qcow2; }
fixture mkcommit
same "commit" -- commit ct.qcow2
same "commit: top info" --filter 'grep -v "disk size"' -- info ct.qcow2
same_files "commit: file sizes"
same_alloc "commit: top allocation" ct.qcow2
same_alloc "commit: base allocation" cb.qcow2
check_sh "commit: emptied top as qemu's" "cmp '$A/ct.qcow2' '$B/ct.qcow2'"
verify "commit: top check" -- check ct.qcow2
# (qemu's commit job writes its chunks in no fixed order, so the base's
# fragmentation varies from run to run: only check's verdict is compared)
check "commit: base check" "$QEMU_IMG" check -q "$A/cb.qcow2"
same_image "commit: base data" cb.qcow2 qcow2

# -- commit of a top with a snapshot: every active cluster is discarded
mkcommit2() { "$QEMU_IMG" create -q -f qcow2 db.qcow2 4M &&
              "$QEMU_IMG" create -q -f qcow2 -b db.qcow2 -F qcow2 dt.qcow2 &&
              qio -c 'write -P 3 0 2M' dt.qcow2 && "$QEMU_IMG" snapshot -c x dt.qcow2 &&
              qio -c 'write -P 4 1M 2M' dt.qcow2; }
fixture mkcommit2
same "commit (top with a snapshot)" -- commit dt.qcow2
same "commit (top with a snapshot): info" --filter 'grep -v -e "disk size" -e "^1  "' -- info dt.qcow2
same_alloc "commit (top with a snapshot): allocation" dt.qcow2
verify "commit (top with a snapshot): check" -- check dt.qcow2
# commit -d leaves the top alone
fixture mkcommit
same "commit -d" -- commit -d ct.qcow2
same_alloc "commit -d: top allocation" ct.qcow2

# -- convert -n: zeroes over data unmap and punch; -S 0 writes them
mkconv() { "$QEMU_IMG" create -q -f qcow2 cv.qcow2 4M && qio -c 'write -P 4 0 4M' cv.qcow2 &&
           cp --sparse=never cv.qcow2 cv0.qcow2 &&
           "$QEMU_IMG" create -q -f qcow2 src.qcow2 4M && qio -c 'write -P 9 1M 1M' src.qcow2; }
fixture mkconv
same "convert -n zeroes over data" -- convert -n -O qcow2 src.qcow2 cv.qcow2
# (disk size counts ext4's extent-tree blocks, which depend on how the
# punched file fragments: the allocation check below is the exact one)
same "convert -n: info" --filter 'grep -v "disk size"' -- info cv.qcow2
same_alloc "convert -n: allocation" cv.qcow2
verify "convert -n: check" -- check cv.qcow2
same "convert -n -S 0" -- convert -n -S 0 -O qcow2 src.qcow2 cv0.qcow2
same_alloc "convert -n -S 0: allocation" cv0.qcow2

# -- check -r leaks: repaired leaks are punched
mkleak() { "$QEMU_IMG" create -q -f qcow2 lk.qcow2 1M && qio -c 'write -P 5 0 512k' lk.qcow2 &&
           put64 lk.qcow2 0x40008 0; }
fixture mkleak
same "check -r leaks" -- check -r leaks lk.qcow2
same_alloc "check -r leaks: allocation" lk.qcow2

# -- bitmaps: the removed bitmap's data clusters are punched
mkbm() { "$QEMU_IMG" create -q -f qcow2 bm.qcow2 64M && "$QEMU_IMG" bitmap --add -g 512 bm.qcow2 b0 &&
         qio -c 'write -P 7 0 8M' bm.qcow2; }
fixture mkbm
same "bitmap --remove" -- bitmap --remove bm.qcow2 b0
same_alloc "bitmap --remove: allocation" bm.qcow2

# -- resize --shrink
mkshrink() { "$QEMU_IMG" create -q -f qcow2 sh.qcow2 64M &&
             qio -c 'write -P 4 0 8M' -c 'write -P 5 60M 4M' sh.qcow2; }
fixture mkshrink
same "resize --shrink" -- resize --shrink sh.qcow2 6M
same "resize --shrink: info" --filter 'grep -v "disk size"' -- info sh.qcow2
same_alloc "resize --shrink: allocation" sh.qcow2

# -- amend's zero-cluster expansion uses the data-write overlap check: a
# preallocated zero cluster pointing at the L1 table is refused with
# qemu's corruption event
mkamend() { "$QEMU_IMG" create -q -f qcow2 am.qcow2 1M && qio -c 'write -P 5 0 128k' am.qcow2 &&
            put64 am.qcow2 0x40008 0x30001; }
fixture mkamend
same "amend: zero cluster over the L1 table" -- amend -o compat=0.10 am.qcow2
check_sh "amend: image as qemu's after the refusal" "cmp '$A/am.qcow2' '$B/am.qcow2'"

# -- the node's options: pass-discard-snapshot=off keeps a deleted
# snapshot's clusters allocated in the file, =on (the default) punches them
mkpd() { "$QEMU_IMG" create -q -f qcow2 pd.qcow2 4M && qio -c 'write -P 1 0 4M' pd.qcow2 &&
         "$QEMU_IMG" snapshot -c s1 pd.qcow2 && qio -c 'write -P 2 0 2M' pd.qcow2 &&
         cp --sparse=never pd.qcow2 pe.qcow2; }
fixture mkpd
same "snapshot -d, pass-discard-snapshot=off" -- snapshot -d s1 \
    --image-opts driver=qcow2,file.filename=pd.qcow2,pass-discard-snapshot=off
same_alloc "pass-discard-snapshot=off: allocation" pd.qcow2
verify "pass-discard-snapshot=off: check" -- check pd.qcow2
same "snapshot -d, pass-discard-snapshot=on" -- snapshot -d s1 \
    --image-opts driver=qcow2,file.filename=pe.qcow2,pass-discard-snapshot=on
same_alloc "pass-discard-snapshot=on: allocation" pe.qcow2

# ...and are validated as qemu validates them at open (type, then the cache
# size rules, lazy-refcounts on a v2 image, overlap-check templates)
mkopt() { "$QEMU_IMG" create -q -f qcow2 op.qcow2 8M &&
          "$QEMU_IMG" create -q -f qcow2 -o compat=0.10 op2.qcow2 8M; }
fixture mkopt
for o in pass-discard-other=foo pass-discard-request=maybe lazy-refcounts=foo \
         overlap-check.active-l2=x cache-size=foo cache-clean-interval=x \
         cache-clean-interval=99999999999 overlap-check=bogus overlap-check=all \
         overlap-check=all,overlap-check.template=none overlap-check.template=constant \
         cache-size=1M,l2-cache-size=2M cache-size=1M,l2-cache-size=512k,refcount-cache-size=256k \
         refcount-cache-size=2M,cache-size=1M l2-cache-entry-size=1000 l2-cache-entry-size=128k \
         l2-cache-entry-size=4k cache-size=256k pass-discard-other=on lazy-refcounts=off; do
    same "info, option $o" -- info --image-opts "driver=qcow2,file.filename=op.qcow2,$o"
done
same "lazy-refcounts=on on a v2 image" -- info --image-opts driver=qcow2,file.filename=op2.qcow2,lazy-refcounts=on
same "lazy-refcounts=on on a v3 image" -- info --image-opts driver=qcow2,file.filename=op.qcow2,lazy-refcounts=on

# -- snapshot delete and create on a copy whose header cluster has holes
# (cp --sparse=always): qemu rewrites no whole header there, so neither
# the dirty bit qimg sets around the refcount updates nor its clearing may
# fill them
mksparse() { "$QEMU_IMG" create -q -f qcow2 sq0.qcow2 4M && qio -c 'write -P 1 0 4M' sq0.qcow2 &&
             "$QEMU_IMG" snapshot -c s1 sq0.qcow2 && qio -c 'write -P 2 0 2M' sq0.qcow2 &&
             cp --sparse=always sq0.qcow2 sq.qcow2 && cp --sparse=always sq0.qcow2 sc.qcow2; }
fixture mksparse
same "sparse copy: snapshot -d" -- snapshot -d s1 sq.qcow2
same_alloc "sparse copy: snapshot -d allocation" sq.qcow2
same "sparse copy: snapshot -c" -- snapshot -c s2 sc.qcow2
same_alloc "sparse copy: snapshot -c allocation" sc.qcow2
verify "sparse copy: snapshot -c check" -- check sc.qcow2
