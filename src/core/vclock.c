/* SPDX-License-Identifier: MIT */
/* Vector clocks over sorted arrays: region counts are small (a handful of regions per
 * deployment), so binary search plus memmove beats any hashing here. */
#include "core/vclock.h"

#include <string.h>

#include "core/alloc.h"
#include "edgelite/errors.h"

void edge_vclock_init(struct edge_vclock *vc)
{
    vc->entries = NULL;
    vc->n_entries = 0;
    vc->cap = 0;
}

void edge_vclock_close(struct edge_vclock *vc)
{
    for (size_t i = 0; i < vc->n_entries; i++) {
        edge_free(vc->entries[i].region);
    }
    edge_free(vc->entries);
    edge_vclock_init(vc);
}

static int region_valid_n(const char *s, size_t n)
{
    if (n == 0 || n > EDGE_VCLOCK_REGION_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            return 0;
        }
    }
    return 1;
}

int edge_vclock_region_valid(const char *region)
{
    if (region == NULL) {
        return 0;
    }
    size_t n = strnlen(region, EDGE_VCLOCK_REGION_MAX + 1);
    return region_valid_n(region, n);
}

/* Lower bound: first index whose region is >= region; *out_found set on equality. */
static size_t lower_bound(const struct edge_vclock *vc, const char *region, int *out_found)
{
    size_t lo = 0, hi = vc->n_entries;
    *out_found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(vc->entries[mid].region, region);
        if (c == 0) {
            *out_found = 1;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

long edge_vclock_find(const struct edge_vclock *vc, const char *region)
{
    int found;
    size_t i = lower_bound(vc, region, &found);
    return found ? (long)i : -1;
}

uint64_t edge_vclock_get(const struct edge_vclock *vc, const char *region)
{
    long i = edge_vclock_find(vc, region);
    return i < 0 ? 0 : vc->entries[i].n;
}

static int reserve(struct edge_vclock *vc, size_t n)
{
    if (n <= vc->cap) {
        return EDGE_OK;
    }
    size_t cap = vc->cap ? vc->cap * 2 : 4;
    while (cap < n) {
        cap *= 2;
    }
    struct edge_vclock_entry *e = edge_realloc(vc->entries, cap * sizeof(*e));
    if (e == NULL) {
        return EDGE_ENOMEM;
    }
    vc->entries = e;
    vc->cap = cap;
    return EDGE_OK;
}

int edge_vclock_set(struct edge_vclock *vc, const char *region, uint64_t n)
{
    if (!edge_vclock_region_valid(region)) {
        return EDGE_EINVAL;
    }
    int found;
    size_t i = lower_bound(vc, region, &found);
    if (found) {
        if (n == 0) {
            edge_free(vc->entries[i].region);
            memmove(&vc->entries[i], &vc->entries[i + 1],
                    (vc->n_entries - i - 1) * sizeof(vc->entries[0]));
            vc->n_entries--;
        } else {
            vc->entries[i].n = n;
        }
        return EDGE_OK;
    }
    if (n == 0) {
        return EDGE_OK;
    }
    if (reserve(vc, vc->n_entries + 1) != EDGE_OK) {
        return EDGE_ENOMEM;
    }
    char *r = edge_strdup(region);
    if (r == NULL) {
        return EDGE_ENOMEM;
    }
    memmove(&vc->entries[i + 1], &vc->entries[i], (vc->n_entries - i) * sizeof(vc->entries[0]));
    vc->entries[i].region = r;
    vc->entries[i].n = n;
    vc->n_entries++;
    return EDGE_OK;
}

int edge_vclock_increment(struct edge_vclock *vc, const char *region, uint64_t *out_n)
{
    uint64_t cur = edge_vclock_get(vc, region);
    if (cur == UINT64_MAX) {
        return EDGE_EOVERFLOW;
    }
    int rv = edge_vclock_set(vc, region, cur + 1);
    if (rv == EDGE_OK && out_n != NULL) {
        *out_n = cur + 1;
    }
    return rv;
}

int edge_vclock_merge(struct edge_vclock *vc, const struct edge_vclock *other)
{
    /* Count the new regions first so the one allocation that can fail happens before
     * anything changes; the strdup's are then done into a scratch array. */
    size_t n_new = 0;
    for (size_t j = 0; j < other->n_entries; j++) {
        if (edge_vclock_find(vc, other->entries[j].region) < 0) {
            n_new++;
        }
    }
    if (n_new == 0) {
        for (size_t j = 0; j < other->n_entries; j++) {
            long i = edge_vclock_find(vc, other->entries[j].region);
            if (vc->entries[i].n < other->entries[j].n) {
                vc->entries[i].n = other->entries[j].n;
            }
        }
        return EDGE_OK;
    }
    struct edge_vclock tmp;
    edge_vclock_init(&tmp);
    int rv = reserve(&tmp, vc->n_entries + n_new);
    if (rv != EDGE_OK) {
        goto out;
    }
    size_t i = 0, j = 0;
    while (i < vc->n_entries || j < other->n_entries) {
        int c;
        if (i == vc->n_entries) {
            c = 1;
        } else if (j == other->n_entries) {
            c = -1;
        } else {
            c = strcmp(vc->entries[i].region, other->entries[j].region);
        }
        struct edge_vclock_entry e;
        if (c < 0) {
            e = vc->entries[i++];
        } else if (c == 0) {
            e = vc->entries[i++];
            if (e.n < other->entries[j].n) {
                e.n = other->entries[j].n;
            }
            j++;
        } else {
            e.region = edge_strdup(other->entries[j].region);
            e.n = other->entries[j].n;
            j++;
            if (e.region == NULL) {
                rv = EDGE_ENOMEM;
                goto out;
            }
        }
        tmp.entries[tmp.n_entries++] = e;
    }
    /* Regions of vc were moved (not copied) into tmp: free only the array. */
    edge_free(vc->entries);
    *vc = tmp;
    edge_vclock_init(&tmp);
    rv = EDGE_OK;
out:
    if (rv != EDGE_OK) {
        /* Free only the strings tmp allocated itself (those not borrowed from vc). */
        for (size_t k = 0; k < tmp.n_entries; k++) {
            if (edge_vclock_find(vc, tmp.entries[k].region) < 0 ||
                vc->entries[edge_vclock_find(vc, tmp.entries[k].region)].region !=
                    tmp.entries[k].region) {
                edge_free(tmp.entries[k].region);
            }
        }
        edge_free(tmp.entries);
    }
    return rv;
}

int edge_vclock_copy(struct edge_vclock *dst, const struct edge_vclock *src)
{
    struct edge_vclock tmp;
    edge_vclock_init(&tmp);
    if (reserve(&tmp, src->n_entries) != EDGE_OK) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < src->n_entries; i++) {
        tmp.entries[i].region = edge_strdup(src->entries[i].region);
        if (tmp.entries[i].region == NULL) {
            edge_vclock_close(&tmp);
            return EDGE_ENOMEM;
        }
        tmp.entries[i].n = src->entries[i].n;
        tmp.n_entries++;
    }
    edge_vclock_close(dst);
    *dst = tmp;
    return EDGE_OK;
}

enum edge_vclock_order edge_vclock_compare(const struct edge_vclock *a, const struct edge_vclock *b)
{
    int a_more = 0, b_more = 0;
    size_t i = 0, j = 0;
    while (i < a->n_entries || j < b->n_entries) {
        int c;
        if (i == a->n_entries) {
            c = 1;
        } else if (j == b->n_entries) {
            c = -1;
        } else {
            c = strcmp(a->entries[i].region, b->entries[j].region);
        }
        if (c < 0) {
            a_more = 1; /* counters are never 0, so presence means "more" */
            i++;
        } else if (c > 0) {
            b_more = 1;
            j++;
        } else {
            if (a->entries[i].n > b->entries[j].n) {
                a_more = 1;
            } else if (a->entries[i].n < b->entries[j].n) {
                b_more = 1;
            }
            i++;
            j++;
        }
    }
    if (a_more && b_more) {
        return EDGE_VCLOCK_CONCURRENT;
    }
    if (a_more) {
        return EDGE_VCLOCK_AFTER;
    }
    return b_more ? EDGE_VCLOCK_BEFORE : EDGE_VCLOCK_EQUAL;
}

/* ---- encoding ---- */

int edge__uvarint_put(struct edge_buf *out, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        tmp[n++] = byte | (v ? 0x80 : 0);
    } while (v != 0);
    return edge_buf_append(out, tmp, n);
}

int edge__uvarint_read(struct edge__rd *r, uint64_t *out_v)
{
    size_t used = 0;
    if (edge__uvarint_get(r->p + r->off, r->len - r->off, out_v, &used) != EDGE_OK) return EDGE_ECORRUPT;
    r->off += used;
    return EDGE_OK;
}

int edge__uvarint_get(const uint8_t *p, size_t len, uint64_t *out_v, size_t *out_used)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 10; i++) {
        if (i >= len) {
            return EDGE_ECORRUPT;
        }
        uint8_t byte = p[i];
        if (i == 9 && byte > 1) {
            return EDGE_ECORRUPT; /* more than 64 bits */
        }
        v |= (uint64_t)(byte & 0x7f) << (7 * i);
        if ((byte & 0x80) == 0) {
            if (i > 0 && byte == 0) {
                return EDGE_ECORRUPT; /* overlong: not the shortest form */
            }
            *out_v = v;
            *out_used = i + 1;
            return EDGE_OK;
        }
    }
    return EDGE_ECORRUPT;
}

int edge_vclock_encode(const struct edge_vclock *vc, struct edge_buf *out)
{
    int rv = edge__uvarint_put(out, vc->n_entries);
    for (size_t i = 0; rv == EDGE_OK && i < vc->n_entries; i++) {
        size_t n = strlen(vc->entries[i].region);
        rv = edge__uvarint_put(out, n);
        if (rv == EDGE_OK) {
            rv = edge_buf_append(out, vc->entries[i].region, n);
        }
        if (rv == EDGE_OK) {
            rv = edge__uvarint_put(out, vc->entries[i].n);
        }
    }
    return rv;
}

int edge_vclock_decode(struct edge_vclock *vc, const uint8_t *p, size_t len, size_t *out_used)
{
    size_t off = 0, used;
    uint64_t count, v;
    int rv = edge__uvarint_get(p, len, &count, &used);
    if (rv != EDGE_OK) {
        goto out;
    }
    off += used;
    /* Each entry takes at least 3 bytes: bounds the allocation by the input size. */
    rv = EDGE_ECORRUPT;
    if (count > (len - off) / 3) {
        goto out;
    }
    rv = reserve(vc, (size_t)count);
    if (rv != EDGE_OK) {
        goto out;
    }
    for (uint64_t k = 0; k < count; k++) {
        rv = edge__uvarint_get(p + off, len - off, &v, &used);
        if (rv != EDGE_OK) {
            goto out;
        }
        off += used;
        rv = EDGE_ECORRUPT;
        if (v > len - off || !region_valid_n((const char *)p + off, (size_t)v)) {
            goto out;
        }
        char *r = edge_strndup((const char *)p + off, (size_t)v);
        if (r == NULL) {
            rv = EDGE_ENOMEM;
            goto out;
        }
        off += (size_t)v;
        if (vc->n_entries > 0 && strcmp(vc->entries[vc->n_entries - 1].region, r) >= 0) {
            edge_free(r);
            goto out;
        }
        vc->entries[vc->n_entries].region = r;
        vc->entries[vc->n_entries].n = 0;
        vc->n_entries++;
        rv = edge__uvarint_get(p + off, len - off, &v, &used);
        if (rv != EDGE_OK) {
            goto out;
        }
        off += used;
        if (v == 0) {
            rv = EDGE_ECORRUPT;
            goto out;
        }
        vc->entries[vc->n_entries - 1].n = v;
    }
    *out_used = off;
    rv = EDGE_OK;
out:
    if (rv != EDGE_OK) {
        edge_vclock_close(vc);
    }
    return rv;
}
