/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for the CRDT binary format: decode must never crash or read out of
 * bounds; whatever it accepts must re-encode to the same bytes (canonical form) and
 * survive a merge with itself unchanged (idempotence). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "edgelite/crdt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct edge_crdt *c = NULL, *d = NULL;
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;
    if (edge_crdt_decode(data, size, &c) != EDGE_OK) {
        return 0;
    }
    if (edge_crdt_encode(c, &enc, &len) != EDGE_OK || len != size || memcmp(enc, data, size) != 0) {
        abort();
    }
    if (edge_crdt_clone(c, &d) == EDGE_OK && edge_crdt_merge(d, c, NULL) == EDGE_OK &&
        edge_crdt_encode(d, &enc2, &len2) == EDGE_OK && (len2 != len || memcmp(enc, enc2, len) != 0)) {
        abort();
    }
    edge_free(enc);
    edge_free(enc2);
    edge_crdt_destroy(c);
    edge_crdt_destroy(d);
    return 0;
}
