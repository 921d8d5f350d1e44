/* The multi-file input container of fuzz.h over the mem protocol: read-only
 * (fuzz_mem_setup) or as writable private copies (fuzz_mem_setup_rw). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "fuzz/fuzz.h"
#include "protocols/mem.h"

#define MAX_PARTS 15
#define MAX_NAME 64
/* PBKDF2 iterations: per derivation and per pass computed (not memoised).
 * The seeds' LUKS headers (iter-time=1) ask for 1000 to about 10000 per key
 * slot, and under ASan each costs some 15 us (OpenSSL allocates per
 * iteration); a hostile header may ask for 2^31 per slot, eight slots. */
#define MAX_PBKDF_ITERS 16384
#define PBKDF_BUDGET 65536

long fuzz_fail_after = -1;
bool fuzz_write_faults_set;
long fuzz_write_faults[3];
static char part_names[MAX_PARTS][MAX_NAME + 8];

static const uint8_t *find_sep(const uint8_t *p, const uint8_t *end)
{
    size_t n = sizeof(FUZZ_PART_SEP) - 1;
    return (size_t)(end - p) < n ? NULL : memmem(p, (size_t)(end - p), FUZZ_PART_SEP, n);
}

static int add(const char *name, const void *data, size_t len, bool writable)
{
    return writable ? mem_file_add_rw(name, data, len, 0) : mem_file_add(name, data, len);
}

static int setup(const uint8_t *data, size_t size, bool writable)
{
    const uint8_t *end = data + size, *sep = find_sep(data, end);
    int nfiles = 0, nparts = 0;

    mem_file_clear();
    mem_set_exclusive(true);
    crypto_pbkdf2_set_fuzz_limits(MAX_PBKDF_ITERS, PBKDF_BUDGET);
    fuzz_fail_after = -1;
    fuzz_write_faults_set = false;
    if (add(FUZZ_IMAGE, data, sep ? (size_t)(sep - data) : size, writable) == 0)
        nfiles++;
    while (sep && nparts < MAX_PARTS) {
        const uint8_t *name = sep + sizeof(FUZZ_PART_SEP) - 1;
        const uint8_t *nl = memchr(name, '\n', (size_t)(end - name));
        if (!nl || nl - name > MAX_NAME || memchr(name, '\0', (size_t)(nl - name)))
            break;
        const uint8_t *body = nl + 1;
        sep = find_sep(body, end);
        size_t blen = (size_t)((sep ? sep : end) - body);
        char *dst = part_names[nparts++];
        int nlen = (int)(nl - name);
        if (nlen == 10 && !memcmp(name, "fail-after", 10)) {
            char num[24];
            size_t k = blen < sizeof(num) - 1 ? blen : sizeof(num) - 1;
            memcpy(num, body, k);
            num[k] = '\0';
            fuzz_fail_after = strtol(num, NULL, 10);
            continue;
        }
        if (nlen == 12 && !memcmp(name, "write-faults", 12)) {
            char num[72], *p = num;
            size_t k = blen < sizeof(num) - 1 ? blen : sizeof(num) - 1;
            memcpy(num, body, k);
            num[k] = '\0';
            for (int i = 0; i < 3; i++)
                fuzz_write_faults[i] = strtol(p, &p, 10);
            fuzz_write_faults_set = true;
            continue;
        }
        snprintf(dst, MAX_NAME + 8, "%s%.*s", name[0] == '/' ? "" : "/fuzz/", nlen,
                 (const char *)name);
        if (add(dst, body, blen, writable) == 0)
            nfiles++;
    }
    return nfiles;
}

int fuzz_mem_setup(const uint8_t *data, size_t size)
{
    return setup(data, size, false);
}

int fuzz_mem_setup_rw(const uint8_t *data, size_t size)
{
    return setup(data, size, true);
}

void fuzz_mem_teardown(void)
{
    mem_file_clear();
}
