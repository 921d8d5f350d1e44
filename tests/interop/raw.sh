#!/usr/bin/env bash
# Interop: the raw format end to end — create, info, convert raw→raw, check,
# resize, and top-level usage — each compared with the real qemu-img 7.2 and
# qimg's resulting images verified with the real tool.
. "$(dirname "$0")/lib.sh"

# ============================================================== create

for sz in 0 1M 1.5G 512b 1k 1000001 0x10 1.5k 1T; do
    f=c-$sz.raw
    same "create -f raw $sz" -- create -f raw "$f" "$sz"
    verify "create -f raw $sz: info json of result" -- info -f raw --output=json "$f"
    same_alloc "create -f raw $sz: allocated blocks" "$f"
done
same "create without -f defaults to raw" -- create c-default.raw 1M
verify "create without -f: info json of result" -- info --output=json c-default.raw
same "create -q prints nothing" -- create -q -f raw c-quiet.raw 1M
verify "create -q: info json of result" -- info --output=json c-quiet.raw
same "create -o size=1k" -- create -f raw -o size=1k c-osize.raw
verify "create -o size=1k: info json of result" -- info --output=json c-osize.raw
same "create with an absolute target path" -- create -f raw @DIR@/c-abs.raw 64k
same_files "create: files made so far"

# size errors: nothing may be created
same "create size 12x is an error" -- create -f raw e-12x.raw 12x
same "create size -5 is an error" -- create -f raw e-neg.raw -5
same "create size -- -5 is an error" -- create -f raw e-neg2.raw -- -5
same "create size 1.5 (fractional bytes) is an error" -- create -f raw e-frac.raw 1.5
same "create size 1e3 is an error" -- create -f raw e-exp.raw 1e3
same "create size 8E is too big" -- create -f raw e-8e.raw 8E
same "create size 16E is too big" -- create -f raw e-16e.raw 16E
same "create without size" -- create -f raw e-nosize.raw
same "create without file name" -- create -f raw
same "create with no argument" -- create
same "create size given twice" -- create -f raw -o size=1k e-twice.raw 2k
same "create -f foo (unknown format)" -- create -f foo e-foo 1M
same "create -o bogus=1 (unknown option)" -- create -f raw -o bogus=1 e-opt.raw 1M
same "create -o preallocation=bogus" -- create -f raw -o preallocation=bogus e-pre.raw 1M
same "create -b on raw (no backing support)" -- create -f raw -b c-1M.raw e-back.raw 1M
same "create into /nonexistent/x" -- create -f raw /nonexistent/x 1M
same "create --bogus (unknown option)" -- create --bogus -f raw e-bogus.raw 1M
same_files "create: failed creates leave no file"

# preallocation modes
for p in off falloc full; do
    same "create -o preallocation=$p" -- create -f raw -o preallocation=$p c-pre-$p.raw 1M
    verify "create -o preallocation=$p: info json of result" -- info --output=json c-pre-$p.raw
    same_alloc "create -o preallocation=$p: allocated blocks" c-pre-$p.raw
    same_map "create -o preallocation=$p: map" c-pre-$p.raw
done
check_sh "create -o preallocation=full allocates every block" \
    "[ \$(stat -c %b '$A/c-pre-full.raw') -ge 2048 ]"
check_sh "create -o preallocation=off leaves the file sparse" \
    "[ \$(stat -c %b '$A/c-pre-off.raw') -lt 2048 ]"

# -o help
same "create -f raw -o help (no file name)" -- create -f raw -o help
same "create -o help (default format)" -- create -o help
same "create -f raw -o help with a file name" -- create -f raw -o help c-help.raw
same "create -f raw -o help,size=1k" -- create -f raw -o help,size=1k
same "create -f raw -o '?'" -- create -f raw -o '?'
same_files "create -o help creates nothing"

# create over an existing file with data: it is recreated empty
fixture mkdata c-over.raw 1M over
same "create over an existing file" -- create -f raw c-over.raw 2M
same_image "create over an existing file: content" c-over.raw
same_alloc "create over an existing file: allocated blocks" c-over.raw

# ============================================================== info

fixture mkdata data.raw 8M
fixture truncate -s 1536M big.raw
fixture truncate -s 0 empty.raw
fixture truncate -s 1000001 odd.raw
fixture mkdata odd2.raw 100000

for f in data.raw big.raw empty.raw odd.raw odd2.raw; do
    same "info $f" -- info "$f"
    same "info --output=json $f" -- info --output=json "$f"
    same "info -f raw $f" -- info -f raw "$f"
done
same "info --output=human" -- info --output=human data.raw
same "info --backing-chain" -- info --backing-chain data.raw
same "info --backing-chain --output=json" -- info --backing-chain --output=json data.raw
same "info -U" -- info -U data.raw
same "info --force-share" -- info --force-share data.raw
same "info with an absolute path" -- info @DIR@/data.raw
same "info json with an absolute path" -- info --output=json @DIR@/data.raw
same "info of a missing file" -- info nosuch.raw
same "info with no argument" -- info
same "info with two file names" -- info data.raw big.raw
same "info with an unknown option" -- info --bogus data.raw
same "info with an unknown short option" -- info -Z data.raw
same "info --output=xml" -- info --output=xml data.raw
same "info -f foo" -- info -f foo data.raw
same "info -f qcow2 on a raw file" -- info -f qcow2 data.raw
same "info of a directory" -- info @DIR@
same "info options after the file name" -- info data.raw --output=json

# ============================================================== convert raw -> raw

fixture mkdata src.raw 8M src
same "convert -O raw" -- convert -O raw src.raw d-plain.raw
same_image "convert -O raw: content" d-plain.raw
same_alloc "convert -O raw: allocated blocks" d-plain.raw
same_map "convert -O raw: map of the result" d-plain.raw
verify "convert -O raw: info json of the result" -- info --output=json d-plain.raw
check "convert -O raw: result equals the source (qemu-img compare)" \
    "$QEMU_IMG" compare -f raw -F raw "$A/src.raw" "$A/d-plain.raw"
check_sh "convert -O raw: explicit zeros become holes (target sparser than source)" \
    "[ \$(stat -c %b '$A/d-plain.raw') -lt \$(stat -c %b '$A/src.raw') ]"

same "convert -f raw -O raw" -- convert -f raw -O raw src.raw d-f.raw
same_image "convert -f raw -O raw: content" d-f.raw
same_alloc "convert -f raw -O raw: allocated blocks" d-f.raw

same "convert without -O (raw default)" -- convert src.raw d-noO.raw
same_image "convert without -O: content" d-noO.raw
same_alloc "convert without -O: allocated blocks" d-noO.raw

same "convert -S 0 (fully allocated target)" -- convert -S 0 -O raw src.raw d-S0.raw
same_image "convert -S 0: content" d-S0.raw
same_alloc "convert -S 0: allocated blocks" d-S0.raw
check_sh "convert -S 0: every block allocated" \
    "[ \$(stat -c %b '$A/d-S0.raw') -ge 16384 ]"

same "convert -S 64k" -- convert -S 64k -O raw src.raw d-S64k.raw
same_image "convert -S 64k: content" d-S64k.raw
same_alloc "convert -S 64k: allocated blocks" d-S64k.raw

same "convert -S 1000 (not a multiple of 512)" -- convert -S 1000 -O raw src.raw d-Sbad.raw

# -C: copy offload (copy_file_range) where the data is plain host ranges.
same "convert -C" -- convert -C -O raw src.raw d-C.raw
same_image "convert -C: content" d-C.raw
same_alloc "convert -C: allocated blocks" d-C.raw
same "convert -C, two sources" -- convert -C -O raw src.raw src.raw d-C2.raw
same_image "convert -C, two sources: content" d-C2.raw
same "convert -C -S 4k refused" -- convert -C -S 4k -O raw src.raw d-CS.raw

same "convert -q" -- convert -q -O raw src.raw d-q.raw
same_image "convert -q: content" d-q.raw

same "convert -o preallocation=full" -- convert -O raw -o preallocation=full src.raw d-full.raw
same_image "convert -o preallocation=full: content" d-full.raw
same_alloc "convert -o preallocation=full: allocated blocks" d-full.raw

same "convert -t none (O_DIRECT target)" -- convert -t none -O raw src.raw d-tnone.raw
same_image "convert -t none: content" d-tnone.raw
same "convert -T none (O_DIRECT source)" -- convert -T none -O raw src.raw d-Tnone.raw
same_image "convert -T none: content" d-Tnone.raw

# progress: stdout is not a tty here
same "convert -p (progress on a non-tty)" -- convert -p -O raw src.raw d-p.raw
same_image "convert -p: content" d-p.raw
check_sh "convert -p: output is (N.NN/100%) records from 0.00 to 100.00 ending in \\r\\n" '
    out=$(cd "'"$A"'" && "'"$QBIN"'/qemu-img" convert -p -O raw src.raw d-p2.raw | od -An -c | tr -d " \n"; rm -f d-p2.raw)
    case $out in
        "(0.00/100%)\\r"*"(100.00/100%)\\r\\n") ;;
        *) echo "unexpected: $out"; exit 1 ;;
    esac'

# -n: onto an existing target that holds other data
fixture mkdata d-n.raw 8M other
same "convert -n onto an existing target" -- convert -n -O raw src.raw d-n.raw
same_image "convert -n: content" d-n.raw
check "convert -n: result equals the source (qemu-img compare)" \
    "$QEMU_IMG" compare -f raw -F raw "$A/src.raw" "$A/d-n.raw"
fixture "$QEMU_IMG" create -q -f raw d-nbig.raw 16M
same "convert -n onto a larger target" -- convert -n -O raw src.raw d-nbig.raw
same_image "convert -n onto a larger target: content" d-nbig.raw
fixture "$QEMU_IMG" create -q -f raw d-nsmall.raw 1M
same "convert -n onto a smaller target" -- convert -n -O raw src.raw d-nsmall.raw
same "convert -n onto a missing target" -- convert -n -O raw src.raw d-nmissing.raw

# overwrite an existing target without -n: recreated
fixture mkdata d-over.raw 16M other
same "convert onto an existing target without -n" -- convert -O raw src.raw d-over.raw
same_image "convert onto an existing target: content" d-over.raw
same_alloc "convert onto an existing target: allocated blocks" d-over.raw

# several sources are concatenated
fixture mkdata src2.raw 1M two
same "convert concatenates several sources" -- convert -O raw src.raw src2.raw src.raw d-cat.raw
same_image "convert concatenation: content" d-cat.raw
same_alloc "convert concatenation: allocated blocks" d-cat.raw

# odd sizes, empty and large sparse sources
fixture mkdata odd-src.raw 100000
same "convert a 100000-byte source" -- convert -O raw odd-src.raw d-odd.raw
same_image "convert a 100000-byte source: content" d-odd.raw
verify "convert a 100000-byte source: info json" -- info --output=json d-odd.raw
fixture truncate -s 0 empty-src.raw
same "convert an empty source" -- convert -O raw empty-src.raw d-empty.raw
same_image "convert an empty source: content" d-empty.raw
same "convert a 1.5G hole" -- convert -O raw big.raw d-big.raw
same_alloc "convert a 1.5G hole: allocated blocks" d-big.raw
verify "convert a 1.5G hole: info json" -- info --output=json d-big.raw

# errors
same "convert a missing source" -- convert -O raw nosuch.raw d-e1.raw
same "convert into /nonexistent/d" -- convert -O raw src.raw /nonexistent/d
same "convert onto a directory" -- convert -O raw src.raw @DIR@
same "convert without a target" -- convert -O raw src.raw
same "convert with no argument" -- convert
same "convert -O foo (unknown format)" -- convert -O foo src.raw d-e2.raw
same "convert -f foo (unknown source format)" -- convert -f foo -O raw src.raw d-e3.raw
same "convert -o bogus=1" -- convert -O raw -o bogus=1 src.raw d-e4.raw
same "convert -n with -o" -- convert -n -O raw -o preallocation=full src.raw d-n.raw
same "convert --bogus" -- convert --bogus -O raw src.raw d-e5.raw
same "convert -o preallocation=bogus" -- convert -O raw -o preallocation=bogus src.raw d-e6.raw
same "convert -S 32M (too big)" -- convert -S 32M -O raw src.raw d-e7.raw
same_files "convert: work dirs hold the same files (no partial targets)"

# ============================================================== check

same "check on raw (probed)" -- check data.raw
same "check -f raw" -- check -f raw data.raw
same "check --output=json on raw" -- check --output=json data.raw
same "check -f raw --output=json" -- check -f raw --output=json data.raw
same "check -r all on probed raw" -- check -r all data.raw
same "check -r leaks -f raw" -- check -r leaks -f raw data.raw
same "check -r bogus" -- check -r bogus -f raw data.raw
same "check -q on raw" -- check -q -f raw data.raw
same "check a missing file" -- check nosuch.raw
same "check with no argument" -- check
same "check --output=xml" -- check --output=xml data.raw

# ============================================================== resize

fixture mkdata rs.raw 4M rs
same "resize -f raw +1M" -- resize -f raw rs.raw +1M
verify "resize +1M: info json of the result" -- info --output=json rs.raw
same_image "resize +1M: content" rs.raw
same_alloc "resize +1M: allocated blocks" rs.raw

same "resize -f raw to an absolute size" -- resize -f raw rs.raw 8M
verify "resize absolute: info json of the result" -- info --output=json rs.raw
same_image "resize absolute: content" rs.raw

same "resize to the same size" -- resize -f raw rs.raw 8M
same "resize shrink without --shrink" -- resize -f raw rs.raw 2M
same "resize shrink by -1M without --shrink" -- resize -f raw rs.raw -1M
same_image "resize refused shrink leaves the image alone" rs.raw

same "resize --shrink" -- resize -f raw --shrink rs.raw 3M
verify "resize --shrink: info json of the result" -- info --output=json rs.raw
same_image "resize --shrink: content" rs.raw
same_alloc "resize --shrink: allocated blocks" rs.raw
same "resize --shrink relative (-- -512k)" -- resize -f raw --shrink rs.raw -- -512k
same_image "resize --shrink relative: content" rs.raw
same "resize --shrink relative (-512k)" -- resize --shrink -f raw rs.raw -512k
same_image "resize --shrink -512k: content" rs.raw

same "resize of probed raw (warning)" -- resize rs.raw +1M
same_image "resize of probed raw: content" rs.raw
same "resize -q" -- resize -q -f raw rs.raw +64k
same "resize +1 (not sector aligned)" -- resize -f raw rs.raw +1
verify "resize +1: info json of the result" -- info --output=json rs.raw

for p in falloc full; do
    fixture "$QEMU_IMG" create -q -f raw rs-$p.raw 1M
    same "resize --preallocation=$p" -- resize -f raw --preallocation=$p rs-$p.raw +1M
    same_alloc "resize --preallocation=$p: allocated blocks" rs-$p.raw
done
fixture "$QEMU_IMG" create -q -f raw rs-off.raw 1M
same "resize --preallocation=off" -- resize -f raw --preallocation=off rs-off.raw +1M
same_alloc "resize --preallocation=off: allocated blocks" rs-off.raw
same "resize --preallocation=bogus" -- resize -f raw --preallocation=bogus rs-off.raw +1M

same "resize size 12x" -- resize -f raw rs.raw 12x
same "resize without size" -- resize -f raw rs.raw
same "resize with no argument" -- resize
same "resize a missing file" -- resize -f raw nosuch.raw 1M
same "resize --bogus" -- resize --bogus -f raw rs.raw 1M
same "resize to 0 with --shrink" -- resize -f raw --shrink rs.raw 0
verify "resize to 0: info json of the result" -- info --output=json rs.raw
same_files "resize: work dirs hold the same files"

# ============================================================== usage

same "no command" --
same "unknown command" -- bogus
same "unknown global option" -- --bogus
same "unknown global short option" -- -Z
same "--help (all but the version lines, formats list apart)" \
    --filter 'tail -n +3 | grep -v "^Supported formats:"' -- --help
same "-h (all but the version lines, formats list apart)" \
    --filter 'tail -n +3 | grep -v "^Supported formats:"' -- -h
same "info --help (all but the version lines, formats list apart)" \
    --filter 'tail -n +3 | grep -v "^Supported formats:"' -- info --help
# qimg lists the formats it implements, not qemu's ~40 drivers: only the
# line's presence is compared.
same "--help: has a supported formats line" \
    --filter 'grep -c "^Supported formats: .*raw"' -- --help
same_sh "-V first line starts with 'qemu-img version 7.2'" -- \
    'qemu-img -V | head -1 | grep -o "^qemu-img version 7\.2"'
same_sh "--version first line starts with 'qemu-img version 7.2'" -- \
    'qemu-img --version | head -1 | grep -o "^qemu-img version 7\.2"'
same_sh "-V: exit status and stderr (stdout not compared)" -- 'qemu-img -V >/dev/null'
same_sh "--version: exit status and stderr (stdout not compared)" -- 'qemu-img --version >/dev/null'
same_sh "-V prints two lines" -- 'qemu-img -V | wc -l'

# ============================================================== offset/size runtime options
# qemu's raw driver shows a window of its file: "offset" where it starts,
# "size" a fixed length (else up to the file's end).
fixture mkdata win.raw 1M win
wj() { # offset [size] -> a json: filename over win.raw
    printf 'json:{"driver":"raw","offset":%s%s,"file":{"driver":"file","filename":"%s"}}' \
        "$1" "${2:+,\"size\":$2}" "${3:-win.raw}"
}
for o in offset=512,size=4096 offset=100 offset=1M,size=0 offset=1048577 \
         offset=512,size=1048576 size=2M size=1000 offset=abc size=-1 offset=0x200 \
         offset=1,size=18446744073709551104; do
    same "window $o: info" -- info --image-opts "driver=raw,$o,file.filename=win.raw"
done
for o in offset=64k,size=128k offset=1048576 offset=4096; do
    same "window $o: info json" -- info --output=json --image-opts "driver=raw,$o,file.filename=win.raw"
    same "window $o: map json" -- map --output=json --image-opts "driver=raw,$o,file.filename=win.raw"
done
same "window map" -- map --image-opts driver=raw,offset=64k,size=128k,file.filename=win.raw
same "window check" -- check --image-opts driver=raw,offset=64k,size=128k,file.filename=win.raw
same "window measure" -- measure -O qcow2 --image-opts driver=raw,offset=64k,size=128k,file.filename=win.raw
same "window json: info" -- info "$(wj 65536 131072)"
same "window json: map" -- map --output=json -f raw "$(wj 65536)"
same "window json: map --start-offset --max-length" -- map -f raw --start-offset=4096 --max-length=8192 "$(wj 65536 131072)"
same "window json: string values" -- info -f raw "$(wj '"1k"' '"4096"')"
same "window json: real offset" -- info -f raw "$(wj 1.5)"
same "window probed (no driver)" -- info --image-opts offset=512,file.filename=win.raw
same "window options given to qcow2" -- info --image-opts driver=qcow2,offset=512,file.filename=win.raw

# as a source: the window's bytes, and nothing else
same "window convert source" -- convert -O raw --image-opts driver=raw,offset=256k,size=256k,file.filename=win.raw w-out.raw
same_image "window convert source: output" w-out.raw
check_sh "window convert source: the window's bytes" \
    "cmp <(dd if='$A/win.raw' bs=64k skip=4 count=4 2>/dev/null) '$A/w-out.raw'"
same "window convert source to qcow2" -- convert -O qcow2 "$(wj 262144 262144)" w-out.qcow2
verify "window convert source to qcow2: map" -- map --output=json w-out.qcow2
verify "window convert source to qcow2: compare" -- compare -F raw w-out.qcow2 w-out.raw
same "window compare identical" -- compare -f raw -F raw "$(wj 262144 262144)" w-out.raw
same "window compare different" -- compare -f raw -F raw "$(wj 262144)" w-out.raw
same "window dd source" -- dd -f raw -O raw if="$(wj 262144 262144)" of=w-dd.raw bs=4k
same_image "window dd source: output" w-dd.raw

# as a target: writes land inside the window only
fixture "$QEMU_IMG" create -q -f raw w-src.raw 64k
fixture "$QEMU_IO" -f raw -c 'write -P 0x5a 0 64k' w-src.raw
for t in offset=256k offset=256k,size=64k offset=1000k offset=256k,size=32k -C,offset=256k; do
    c=${t%%,*}
    [ "$c" = -C ] || c=
    fixture cp win.raw "w-t$t.raw"
    # shellcheck disable=SC2086
    same "window convert target $t" -- convert $c -n -f raw w-src.raw \
        --target-image-opts "driver=raw,${t#-C,},file.filename=w-t$t.raw"
    same_image "window convert target $t: result" "w-t$t.raw"
done
fixture "$QEMU_IMG" create -q -f raw w-z.raw 64k
fixture cp win.raw w-tz.raw
same "window convert zeros into a target" -- convert -n -f raw -O raw w-z.raw "$(wj 262144 65536 w-tz.raw)"
same_image "window convert zeros into a target: result" w-tz.raw
fixture cp win.raw w-tzz.raw
same "window convert --target-is-zero" -- convert -n --target-is-zero -f raw -O raw w-src.raw "$(wj 524288 65536 w-tzz.raw)"
same_image "window convert --target-is-zero: result" w-tzz.raw

# resize: refused with a fixed size, else the file follows offset + size
for r in "offset=512,size=4096 8k" "offset=512 2M" "offset=512 1000k"; do
    set -- $r
    fixture cp win.raw "w-rs-$1.raw"
    same "window resize $1 to $2" -- resize --image-opts "driver=raw,$1,file.filename=w-rs-$1.raw" "$2"
    same_image "window resize $1 to $2: result" "w-rs-$1.raw"
done
fixture cp win.raw w-rss.raw
same "window resize --shrink" -- resize --shrink --image-opts driver=raw,offset=512,file.filename=w-rss.raw 1000k
same_image "window resize --shrink: result" w-rss.raw
same "create does not take offset" -- create -f raw -o offset=512 w-c.raw 1M
same "create does not take offset (with size)" -- create -f raw -o size=1M,offset=512 w-c.raw
same_files "window: work dirs hold the same files"

# ============================================================== raw over raw, options
# A raw window over a raw window (file.driver=raw): offsets add up; options
# raw does not take are refused with qemu's message.
fixture mkdata rr.raw 256k rr
RR=driver=raw,offset=4096,file.driver=raw,file.offset=8192,file.file.filename=rr.raw
same "raw over raw: info" -- info --image-opts "$RR"
same "raw over raw: map" -- map --output=json --image-opts "$RR"
same "raw over raw: convert" -- convert --image-opts "$RR" rr-out.raw
same_image "raw over raw: converted data" rr-out.raw
same "raw over raw: compare with the bytes" -- compare --image-opts "$RR" "driver=raw,offset=12288,file.filename=rr.raw"
same "raw over raw: size too big" -- info --image-opts "$RR,size=262144"
same "raw: unknown option" -- info --image-opts driver=raw,file.filename=rr.raw,cluster_size=4k
same "raw: unknown file option" -- info --image-opts driver=raw,file.filename=rr.raw,file.offset=1
same "raw: unknown protocol" -- info -f raw foo:rr.raw
same "raw: ./ keeps a colon name a file" -- info -f raw ./foo:rr.raw

# ============================================================== image locking
# What another process may do while qemu-img has an image open follows
# qemu's child permissions: qemu-img shares everything except for convert's
# sources, a format with metadata refuses writers and resizers of its file,
# plain raw passes everything through (info of the raw disk a running
# writer holds works), raw with an offset refuses resizers. The holder is a
# writable qemu-nbd export of each side's copy (it takes the write lock and
# refuses other writers), then a qcow2 one.
if command -v qemu-nbd >/dev/null; then
    mklk() { truncate -s 1M lk.raw && "$QEMU_IMG" create -q -f qcow2 lk.qcow2 1M; }
    fixture mklk
    hold() { # hold FMT FILE: a qemu-nbd export of FILE in $A and in $B
        local d
        for d in "$A" "$B"; do
            qemu-nbd --fork --pid-file="$d/hold.pid" -k "$d/hold.sock" -f "$1" "$d/$2" ||
                _bail "qemu-nbd did not start on $d/$2"
        done
    }
    release() {
        local d pid i
        for d in "$A" "$B"; do
            read -r pid <"$d/hold.pid" && kill "$pid"
            for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            rm -f "$d/hold.pid" "$d/hold.sock"
        done
    }
    hold raw lk.raw
    same "held raw: info" -- info -f raw lk.raw
    same "held raw: probed info" -- info lk.raw
    same "held raw: map" -- map -f raw lk.raw
    same "held raw: compare" -- compare -f raw -F raw lk.raw lk.raw
    same "held raw: convert source (refuses writers)" -- convert -f raw -O raw lk.raw o.raw
    same "held raw: dd source" -- dd -f raw -O raw if=lk.raw of=o2.raw
    same "held raw: info with an offset" -- info --image-opts driver=raw,offset=512,file.filename=lk.raw
    same "held raw: resize" -- resize -f raw lk.raw 1M
    same "held raw: as a file node" -- info --image-opts driver=file,filename=lk.raw
    release
    hold qcow2 lk.qcow2
    same "held qcow2: info" -- info lk.qcow2
    same "held qcow2: info -U" -- info -U lk.qcow2
    same "held qcow2: as a raw image" -- info -f raw lk.qcow2
    same "held qcow2: locking=off" -- info --image-opts driver=qcow2,file.filename=lk.qcow2,file.locking=off
    release
fi
