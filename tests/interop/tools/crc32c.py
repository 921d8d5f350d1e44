"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as VHDX uses it for
its headers, region tables, log entries and metadata. Shared by the scenarios
that patch VHDX images and by scripts/diff-mutate.py."""


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_TABLE = _table()


def crc32c(data):
    c = 0xffffffff
    for x in data:
        c = _TABLE[(c ^ x) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff
