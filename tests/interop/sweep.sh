#!/usr/bin/env bash
# Interop: a differential sweep of the command layer — a broad matrix of
# command lines (global options, info, check, map, measure, compare, resize,
# rebase, commit, dd, bench, create, --object) run through qimg and the real
# qemu-img 7.2 on tiny images of every format, comparing stdout, stderr and the
# exit code byte for byte. Images are made by the real qemu-img (and filled
# with qemu-io) once in $A and copied to $B. Budget: < 90 s under ASan.
. "$(dirname "$0")/lib.sh"

FMTS="raw qcow2 qcow qed vdi vpc vmdk vhdx parallels"
SEC=(--object secret,id=s0,data=pw)

# --- filters, each for a legitimate difference
# the version banner and the format list name qimg, not QEMU
HELPF="grep -v -e '^qemu-img version' -e '^Copyright' -e '^Supported formats'"
# disk usage depends on the file system's allocation, not on the tool
DU="sed -e '/^disk size:/d' -e '/\"actual-size\"/d'"
# qemu's job loop prints the same progress value once per event-loop turn:
# how many times depends on timing, so repeated values are collapsed
UNIQ_PROGRESS="tr '\\r' '\\n' | uniq"
# bench prints its own run time
BENCHF="sed 's/Run completed in [0-9.]* seconds/Run completed in N seconds/'"

mkimgs() { # every format, 1 MiB, two written ranges (qemu-io where it can)
    local f
    for f in $FMTS; do
        "$QEMU_IMG" create -q -f "$f" "i.$f" 1M || return 1
        "$QEMU_IO" -f "$f" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 512k 4k' "i.$f" >/dev/null || return 1
    done
    # retried: qemu-img's PBKDF benchmark sometimes measures 0 ms and fails
    local made=0
    for i in 1 2 3 4; do
        "$QEMU_IMG" create -q "${SEC[@]}" -f luks -o key-secret=s0,iter-time=10 i.luks 1M 2>/dev/null &&
            { made=1; break; }
    done
    [ "$made" = 1 ] || return 1
    "$QEMU_IO" "${SEC[@]}" --image-opts -c 'write -P 0x33 0 4k' \
        driver=luks,key-secret=s0,file.filename=i.luks >/dev/null || return 1
    # a qcow2 chain: base <- mid <- top, and a second base of another size
    "$QEMU_IMG" create -q -f qcow2 base.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x44 0 128k' base.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x55 64k 64k' mid.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0x66 192k 4k' top.qcow2 >/dev/null &&
    "$QEMU_IMG" create -q -f qcow2 big.qcow2 2M &&
    "$QEMU_IMG" create -q -f raw d.raw 1M &&
    "$QEMU_IO" -f raw -c 'write -P 0x11 0 64k' -c 'write -P 0x23 512k 4k' d.raw >/dev/null || return 1
}
# made in both dirs (not copied): qcow2's block status depends on the host
# file's real allocation (qemu's metadata-preallocation heuristic)
fixture mkimgs
# vmdk descriptors carry a random CID and luks headers a random UUID and
# timed iteration counts: both sides use the same bytes for these two
cp -a "$A/i.vmdk" "$A/i.luks" "$B/" || _bail "copy fixtures"

# ============================================================== global
same "no arguments" --
same "unknown command" -- foo
same "-V" --filter "$HELPF" -- -V
same "-h" --filter "$HELPF" -- -h
same "--bogus" -- --bogus
same "-T without argument" -- -T
same "-T unknown event, no command" -- -T foo
same "-T pattern and event" -- -T 'bdrv_*' -T -bdrv_open_common
same "-T help lists the events" -- -T help
same "-T bad key" -- -T enable=foo,x
same "-T events= missing file" -- -T foo,events=/nonexistent
same "-T before a command" --filter "$DU" -- -T foo info i.raw
same "help as a command" -- help
same "info --help" --filter "$HELPF" -- info --help
same "map -h" --filter "$HELPF" -- map -h
for c in check commit resize rebase bench dd measure; do
    same "$c with no argument" -- "$c"
done

# ============================================================== info
for f in $FMTS luks; do
    same "info $f" --filter "$DU" -- info "${SEC[@]}" "i.$f"
    same "info json $f" --filter "$DU" -- info "${SEC[@]}" --output=json "i.$f"
done
same "info -f vdi on qcow2" -- info -f vdi i.qcow2
same "info -f raw on qcow2" --filter "$DU" -- info -f raw i.qcow2
same "info -f bogus" -- info -f bogus i.raw
same "info -U --image-opts" --filter "$DU" -- info -U --image-opts driver=qcow2,file.filename=i.qcow2
same "info --image-opts -f" -- info --image-opts -f qcow2 driver=qcow2,file.filename=i.qcow2
same "info --image-opts implied file=" -- info --image-opts i.raw
same "info --image-opts empty" -- info --image-opts ''
same "info --image-opts driver=file,file.filename" -- info --image-opts driver=file,file.filename=i.raw
same "info --image-opts format with filename=" -- info --image-opts driver=qcow2,filename=i.qcow2
same "info --image-opts file= and file.filename" -- info --image-opts file=i.raw,file.filename=i.raw
same "info --image-opts -U force-share=off" -- info -U --image-opts driver=raw,file.filename=i.raw,force-share=off
same "info --backing-chain" --filter "$DU" -- info --backing-chain top.qcow2
same "info --backing-chain json" --filter "$DU" -- info --backing-chain --output=json top.qcow2
same "info --output=xml" -- info --output=xml i.qed
same "info two files" -- info i.raw i.qcow2
same "info missing file" -- info nosuch.img
same "info luks without secret" --filter "$DU" -- info i.luks

# ============================================================== check
for f in $FMTS luks; do
    same "check $f" -- check "${SEC[@]}" "i.$f"
done
for f in qcow2 qed vdi vhdx parallels; do
    same "check json $f" -- check --output=json "i.$f"
done
same "check -q qcow2" -- check -q i.qcow2
same "check -q raw (unsupported)" -- check -q i.raw
fixture sh -c 'for f in $0; do cp "i.$f" "r.$f"; done' "$FMTS"
r=leaks
for f in $FMTS; do
    same "check -r $r $f" -- check -r "$r" "r.$f"
    [ $r = leaks ] && r=all || r=leaks
done
same "check -r bogus" -- check -r bogus i.qcow2
same "check -r all -U" -- check -r all -U r.qcow2
same "check -T bogus" -- check -T bogus i.qcow2
same "check chain top" -- check top.qcow2

# ============================================================== map
for f in $FMTS; do
    same "map json $f" -- map --output=json "i.$f"
done
for f in qcow2 vmdk vhdx; do
    same "map $f" -- map "i.$f"
done
same "map chain" -- map top.qcow2
same "map luks" -- map "${SEC[@]}" --output=json i.luks
for v in 0 511 2M 9223372036854775807 9223372036854775808 -1 x ''; do
    same "map --start-offset=$v" -- map --output=json "--start-offset=$v" i.qcow2
done
for v in 0 4097 9223372036854775807 -1 1k5; do
    same "map --max-length=$v" -- map --output=json "--max-length=$v" i.qcow2
done
same "map -s and -l unaligned, human" -- map -s 1000 -l 70000 i.qcow2

# ============================================================== measure
for o in $FMTS luks; do
    same "measure -O $o --size 1M" -- measure "${SEC[@]}" -O "$o" -o key-secret=s0 --size 1M
done
for o in qcow2 vmdk vhdx; do
    same "measure -O $o from qcow2 json" -- measure -O "$o" --output=json i.qcow2
done
for sz in 0 1 1.5M 1T 16E -1 x; do
    same "measure --size '$sz'" -- measure -O qcow2 --size "$sz"
done
same "measure -o help vdi" -- measure -O vdi -o help
same "measure -o bad key" -- measure -O qcow2 -o bogus=1 --size 1M
same "measure -o ,, escaped" -- measure -O qcow2 -o backing_file=a,,b --size 1M
same "measure -o prealloc qed" -- measure -O qed -o preallocation=full --size 1M
same "measure -o static vdi" -- measure -O vdi -o static=on --size 1M
same "measure -o subformat vmdk" -- measure -O vmdk -o subformat=monolithicFlat --size 1M
same "measure -o subformat vpc" -- measure -O vpc -o subformat=fixed --size 1M
same "measure -l with --size" -- measure -O qcow2 -l sn --size 1M
same "measure --size and file" -- measure -O qcow2 --size 1M i.qcow2
same "measure chain" -- measure -O qcow2 top.qcow2

# ============================================================== compare
same "compare qcow2 vs vdi" -- compare i.qcow2 i.vdi
same "compare -f -F" -- compare -f qcow2 -F vpc i.qcow2 i.vpc
same "compare -F wrong" -- compare -F qcow2 i.qcow2 i.vpc
same "compare -s equal content" -- compare -s i.qed i.vhdx
same "compare -q different" -- compare -q i.raw d.raw
same "compare -p different" -- compare -p i.raw d.raw
same "compare -s different sizes" -- compare -s big.qcow2 i.qcow2
same "compare missing second" -- compare i.qcow2 nosuch
same "compare chain vs base" -- compare top.qcow2 base.qcow2

# ============================================================== resize
rs() { # NAME FMT [--verify] ARGS... : resize a fresh copy of i.FMT as z.FMT
    local n=$1 f=$2 v=
    shift 2
    [ "$1" = --verify ] && { v=1; shift; }
    fixture cp "i.$f" "z.$f"
    same "resize $n" -- resize "$@"
    [ -n "$v" ] && verify "resize $n: info" --filter "$DU" -- info --output=json "z.$f"
}
for f in $FMTS; do
    rs "$f +1M" "$f" --verify "z.$f" +1M
done
for f in qcow2 vdi vmdk parallels; do
    rs "$f -512k (no --shrink)" "$f" "z.$f" -- -512k
done
for f in raw qcow2 qed vhdx vpc; do
    rs "$f --shrink 512k" "$f" --shrink "z.$f" 512k
done
rs "raw -f raw -q 1000001" raw --verify -f raw -q z.raw 1000001
rs "qcow2 unaligned" qcow2 z.qcow2 1000001
rs "qcow2 prealloc metadata" qcow2 --verify --preallocation=metadata z.qcow2 2M
rs "raw prealloc falloc" raw --verify --preallocation=falloc z.raw 2M
rs "raw prealloc bogus" raw --preallocation=bogus z.raw 2M
rs "vdi prealloc full" vdi --preallocation=full z.vdi 2M
rs "qcow2 size 0 --shrink" qcow2 --shrink z.qcow2 0
rs "qcow2 bad size" qcow2 z.qcow2 12x
rs "qcow2 huge" qcow2 z.qcow2 8E
rs "qcow2 -f raw" qcow2 -f raw z.qcow2 2M
rs "luks +1M" luks --verify "${SEC[@]}" --image-opts driver=luks,key-secret=s0,file.filename=z.luks +1M
same "resize three args" -- resize i.raw 1M 2M

# ============================================================== rebase
rb() { # NAME [--verify] ARGS... : rebase a fresh copy of top.qcow2 as rt.qcow2
    local n=$1 v=
    shift
    [ "$1" = --verify ] && { v=1; shift; }
    fixture cp top.qcow2 rt.qcow2
    same "rebase $n" -- rebase "$@"
    [ -n "$v" ] && verify "rebase $n: info" --filter "$DU" -- info rt.qcow2
}
rb "-u -b base" --verify -u -b base.qcow2 -F qcow2 rt.qcow2
rb "-b ''" --verify -b '' rt.qcow2
rb "-b base -F qcow2" --verify -b base.qcow2 -F qcow2 rt.qcow2
rb "-b base (probed)" -b base.qcow2 rt.qcow2
rb "-b missing" -b nosuch -F qcow2 rt.qcow2
rb "-u -b missing no -F" -u -b nosuch rt.qcow2
rb "-F without -b" -F qcow2 rt.qcow2
rb "-p -q -b big" --verify -p -q -b big.qcow2 -F qcow2 rt.qcow2
rb "-t bogus" -t bogus -b base.qcow2 -F qcow2 rt.qcow2
rb "-U" -U -b base.qcow2 -F qcow2 rt.qcow2
same "rebase vdi (no backing support)" -- rebase -u -b base.qcow2 -F qcow2 i.vdi

# ============================================================== commit
mkcommit() {
    cp base.qcow2 cb.qcow2 && cp mid.qcow2 cm.qcow2 && cp top.qcow2 ct.qcow2 &&
    "$QEMU_IMG" rebase -u -b cb.qcow2 -F qcow2 cm.qcow2 &&
    "$QEMU_IMG" rebase -u -b cm.qcow2 -F qcow2 ct.qcow2
}
cm() { # NAME ARGS... : commit in a fresh copy of the chain
    local n=$1
    shift
    fixture mkcommit
    same "commit $n" --filter "$UNIQ_PROGRESS" -- commit "$@"
    verify "commit $n: map" -- map --output=json ct.qcow2
}
cm "plain -p" -p ct.qcow2
cm "-b base" -b cb.qcow2 ct.qcow2
cm "-b mid -d -q" -q -d -b cm.qcow2 ct.qcow2
cm "-r 1M" -r 1M ct.qcow2
cm "-r x" -r x ct.qcow2
cm "-b not in chain" -b i.qcow2 ct.qcow2
for f in raw vhdx luks; do
    same "commit $f without backing" -- commit "${SEC[@]}" "i.$f"
done

# ============================================================== dd
for f in $FMTS; do
    same "dd from $f" -- dd if="i.$f" of="dd-$f.raw" bs=64k
done
same_image "dd from vhdx: content" dd-vhdx.raw
same_image "dd from vmdk: content" dd-vmdk.raw
for o in qcow2 vdi; do
    same "dd -O $o" -- dd -O "$o" if=i.raw of="dd.$o" bs=4k count=20
    verify "dd -O $o: compare" -- compare "dd.$o" i.raw
done
for v in 0 -1 1.5k 9223372036854775808; do
    same "dd count=$v" -- dd if=i.qcow2 of=dd-c.raw count="$v"
done
for v in 3 x 1k; do
    same "dd skip=$v" -- dd if=i.qcow2 of=dd-s.raw skip="$v" bs=64k
done
for v in 513 2M 0x200 -512; do
    same "dd bs=$v" -- dd if=i.qcow2 of=dd-b.raw bs="$v" count=3
done
same "dd if twice" -- dd if=i.raw if=d.raw of=dd-t.raw
same "dd -O luks (no secret)" -- dd -O luks if=i.raw of=dd.luks

# ============================================================== bench
# (never -d 0 with the real tool: it hangs; nor a huge -d: it aborts)
for a in "-c 3" "-c 3 -w -q" "-c 2 -d 2 -s 4k -o 4096 -S 8k" "-c 2 -t none -n" "-c 2 -n" "-c 1 -i native" \
         "-c 2 -i threads -f qcow2 -U" "-c 4 -w --pattern=7 --flush-interval=2" "-c 2 -w --no-drain --flush-interval=1 -d 1" \
         "-c x" "-c -1" "-d x" "-s 0" "-S x" "-o 2M -c 1" "-o 1048064 -s 1k -c 1" "-t bogus" \
         "-i bogus" "--pattern=300 -w" "--flush-interval=1" "-c 1 -w -o 1M"; do
    same "bench $a" --filter "$BENCHF" -- bench $a i.qcow2
done
same "bench missing file, native" -- bench -n -c 1 nosuch

# ============================================================== create
for f in qcow2 qed vdi vhdx parallels luks; do
    same "create -f $f -o help" -- create -f "$f" -o help
done
for f in $FMTS; do
    same "create -f $f" -- create -f "$f" -o help=off "n.$f" 1M
done
for f in raw qcow2 vdi vhdx; do
    same "create -f $f existing" -- create -q -f "$f" "n.$f" 2M
    verify "create -f $f existing: info" --filter "$DU" -- info --output=json "n.$f"
done
for f in qcow qed vdi vpc vmdk; do
    same "create -f $f huge" -- create -f "$f" "nh.$f" 8E
done
for f in qed vpc parallels; do
    same "create -f $f bad option" -- create -f "$f" -o bogus=1 "nb.$f" 1M
done
for f in raw vdi vhdx; do
    same "create -f $f -b (no backing support)" -- create -f "$f" -b i.raw -F raw "nB.$f" 1M
done
same "create luks" -- create "${SEC[@]}" -f luks -o key-secret=s0,iter-time=10 n.luks 1M
same "create luks no secret" -- create -f luks n2.luks 1M
same "create duplicate option" -- create -f qcow2 -o cluster_size=4k,cluster_size=8k nd.qcow2 1M
same "create two -o" -- create -f qcow2 -o cluster_size=4k -o cluster_size=8k nd2.qcow2 1M
same "create escaped comma" -- create -f qcow2 -u -b 'a,,b' -F raw ne.qcow2 1M
same "create trailing comma" -- create -f qcow2 -o cluster_size=4k, nt.qcow2 1M
for sz in 1.5M 1P 512b 1e 1K 1m '' -1; do
    same "create size '$sz'" -- create -f vdi "ns$sz.vdi" "$sz"
done
same "create -b -F -u no size" -- create -f qcow2 -b base.qcow2 -F qcow2 -u nbu.qcow2
same "create -b -F size" -- create -f qcow2 -b base.qcow2 -F qcow2 nbs.qcow2 3M
same "create -b relative" -- create -f qcow2 -b ../b/base.qcow2 -F qcow2 nbr.qcow2
same "create -b itself" -- create -f qcow2 -b nself.qcow2 -F qcow2 nself.qcow2 1M
same "create -o size and size" -- create -f qcow2 -o size=1M nos.qcow2 2M
same "create -f vmdk -o subformat bogus" -- create -f vmdk -o subformat=bogus nv.vmdk 1M
same "create -f vdi -o static=x" -- create -f vdi -o static=x nx.vdi 1M
same "create extra arg" -- create -f raw nx.raw 1M 2M
same_files "create: files made" --filter '/^n[^ ]*\.\(vmdk\|vpc\|vhdx\|vdi\) f/d'

# ============================================================== --object
for o in 'secret' 'secret,id=' 'secret,id=a,data=x,file=y' 'secret,id=a,file=/nonexistent' \
         'secret,id=a,data=x,format=bogus' 'bogus,id=a' '' ',' 'secret,id=a,data=x,bogus=1' \
         'secret,id=a,data=x,keyid=k' 'help' 'secret,help' 'help,secret' 'secret,id=1a,bogus=1' \
         'secret,id=a,,b,data=x' 'secret,id=a,data=x,a.b=1' 'secret,id=a,data=e A=,format=base64'; do
    same "--object '$o'" --filter "$DU" -- info --object "$o" i.raw
done
same "--object twice same id" -- info --object secret,id=a,data=x --object secret,id=a,data=y i.raw
same "--object base64 secret opens luks" --filter "$DU" -- info --object secret,id=s0,data=cHc=,format=base64 \
    --image-opts driver=luks,key-secret=s0,file.filename=i.luks
same "--object file= secret, wrong key" -- info --object secret,id=s0,file=i.raw \
    --image-opts driver=luks,key-secret=s0,file.filename=i.luks

# ============================================================== raw windows, create -o help
fixture mkdata sw-win.raw 1M sw-win
for o in offset=4096,size=1040384 offset=4096 size=512; do
    same "window $o: info --backing-chain" -- info --backing-chain --image-opts "driver=raw,$o,file.filename=sw-win.raw"
    same "window $o: info -U json" -- info -U --output=json --image-opts "driver=raw,$o,file.filename=sw-win.raw"
    same "window $o: map --start-offset" -- map --start-offset=64k --image-opts "driver=raw,$o,file.filename=sw-win.raw"
    same "window $o: map --max-length" -- map --output=json --max-length=300000 --image-opts "driver=raw,$o,file.filename=sw-win.raw"
done
same "window: repeated offset (the last wins)" -- info --image-opts driver=raw,offset=512,offset=1024,file.filename=sw-win.raw
same "window: map past the end" -- map --start-offset=1M --image-opts driver=raw,offset=4096,file.filename=sw-win.raw
same "window: map --max-length=0" -- map --max-length=0 --image-opts driver=raw,offset=4096,file.filename=sw-win.raw
same "window: compare two windows" -- compare --image-opts driver=raw,offset=4096,size=8192,file.filename=sw-win.raw \
    driver=raw,offset=4096,size=8192,file.filename=sw-win.raw
same "create -o help,size=1M with a file" -- create -f raw -o help,size=1M sw-h.raw
same "create -o ? with a file" -- create -f raw -o '?' sw-h.raw
same "create -o help -o cluster_size" -- create -f qcow2 -o help -o cluster_size=4k sw-h.raw
same "create -o help after the size" -- create -f raw sw-h.raw 1M -q -o help
same "create -f dmg -o help" -- create -f dmg -o help
same "create -f raw on an unknown protocol, with -o help" -- create -f raw -o help sw:x
same_files "raw windows: files made" --filter '/^n[^ ]*\.\(vmdk\|vpc\|vhdx\|vdi\) f/d'

# ============================================================== backing options
# "backing": a node reference (qimg, like qemu-img, has no named nodes to
# find), JSON null (open without the backing file), or backing.* options for
# the backing node; drivers without backing files refuse them, and opens
# without the chain (info) report them as unsupported.
for o in backing=x backing.driver=raw backing.foo=1 backing.driver=qcow2 backing.file.foo=1 \
         backing=x,backing.driver=raw; do
    for img in i.raw base.qcow2 top.qcow2; do
        drv=qcow2
        [ "$img" = i.raw ] && drv=raw
        same "backing options: convert $img $o" -- convert --image-opts "driver=$drv,file.filename=$img,$o" bo.raw
        same "backing options: info $img $o" --filter "$DU" -- info --image-opts "driver=$drv,file.filename=$img,$o"
        same "backing options: compare $img $o" -- compare --image-opts "driver=$drv,file.filename=$img,$o" \
            driver=raw,file.filename=i.raw
    done
done
same "backing null: convert reads the top alone" -- \
    convert 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":null}' bo-null.raw
same_image "backing null: converted data" bo-null.raw
same "backing null: info --backing-chain" --filter "$DU" -- \
    info --backing-chain 'json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":null}'
same "backing.driver=qcow2: info --backing-chain" --filter "$DU" -- \
    info --backing-chain --image-opts driver=qcow2,file.filename=top.qcow2,backing.driver=qcow2
same "backing.driver=raw: map" -- map --output=json --image-opts driver=qcow2,file.filename=mid.qcow2,backing.driver=raw
rm -f "$A/bo.raw" "$B/bo.raw"

# ============================================================== option lists
for o in , ,a a=1, a,, 'cluster_size=4k,,'; do
    same "convert -o '$o'" -- convert -O qcow2 -o "$o" d.raw ol.qcow2
    same "create -o '$o'" -- create -f qcow2 -o "$o" ol.qcow2 1M
done
same_files "backing options and option lists: same files" --filter '/^n[^ ]*\.\(vmdk\|vpc\|vhdx\|vdi\) f/d'
