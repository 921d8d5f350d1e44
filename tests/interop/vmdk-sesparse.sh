#!/usr/bin/env bash
# VMware seSparse extents (read-only, as qemu-img 7.2): images written by
# tests/interop/tools/mksesparse.py are read by both tools; info, map,
# check and errors compared; hostile headers refused alike.
MK=$(cd "$(dirname "$0")/tools" && pwd)/mksesparse.py
. "$(dirname "$0")/lib.sh"

fixture python3 "$MK" se expect.raw
same "info" -- info se.vmdk
same "info json" -- info --output=json se.vmdk
same "map" -- map se.vmdk
same "map json" -- map --output=json se.vmdk
same "check" -- check se.vmdk
same "convert to raw" -- convert -O raw se.vmdk out.raw
check "contents as written" cmp "$A/out.raw" "$W/../a/expect.raw"
same "convert to qcow2" -- convert -O qcow2 se.vmdk out.qcow2
check "qcow2 copy reads back" "$QEMU_IMG" compare "$A/out.qcow2" "$A/expect.raw"
same "compare with the raw contents" -- compare se.vmdk expect.raw
same "read-write open refused" -- resize se.vmdk 64M
same "commit refused" -- commit se.vmdk

# Hostile headers: each field qemu checks, a dirty journal, a directory
# beyond the file, grain directory/table entries with bad top bits.
bad() { # NAME PATCH...
    local n=$1; shift
    fixture python3 "$MK" "h-$n" e.raw "$@"
    same "hostile $n: info" -- info "h-$n.vmdk"
    same "hostile $n: convert" -- convert -O raw "h-$n.vmdk" "h-$n.raw"
}
bad magic 0=0x1234
bad version 8=3
bad grain 24=16
bad gt-size 32=128
bad flags 40=1
bad reserved 56=1
bad padding 400=1
bad volatile-magic vol0=7
bad journal vol24=1
bad volatile-offset 80=0x100000000000
bad gd-offset 128=0x7fffffff
bad gd-huge 136=0x4000000
bad tables-offset 144=0xffffffff00
bad grains-offset 192=0xfffffffffffff
# qemu-img leaves the target of a failed convert behind; qimg removes it.
same_files "the same files, failed targets aside" --filter '/^h-.*\.raw f/d'

