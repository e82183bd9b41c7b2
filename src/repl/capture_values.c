/* SPDX-License-Identifier: MIT */
/* The change log's value encoding (capture.c's payload format): writing a SQLite value,
 * reading strings and bytes back, binding a value to a statement and skipping one. */
#include "repl/repl_int.h"

#include <string.h>

int edge__repl_put_str(struct edge_buf *b, const char *s, size_t n)
{
    int rv = edge__uvarint_put(b, n);
    return rv == EDGE_OK ? edge_buf_append(b, s, n) : rv;
}

int edge__repl_put_value(struct edge_buf *b, sqlite3_value *v)
{
    int rv = EDGE_OK;
    switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: {
        int64_t i = sqlite3_value_int64(v);
        uint64_t z = ((uint64_t)i << 1) ^ (uint64_t)(i >> 63);
        rv = edge_buf_putc(b, 1);
        if (rv == EDGE_OK) rv = edge__uvarint_put(b, z);
        break;
    }
    case SQLITE_FLOAT: {
        double d = sqlite3_value_double(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        uint8_t le[8];
        for (int k = 0; k < 8; k++) le[k] = (uint8_t)(bits >> (8 * k));
        rv = edge_buf_putc(b, 2);
        if (rv == EDGE_OK) rv = edge_buf_append(b, le, 8);
        break;
    }
    case SQLITE_TEXT: {
        const unsigned char *t = sqlite3_value_text(v);
        int n = sqlite3_value_bytes(v);
        rv = edge_buf_putc(b, 3);
        if (rv == EDGE_OK) rv = edge__repl_put_str(b, (const char *)t, (size_t)n);
        break;
    }
    case SQLITE_BLOB: {
        const void *p = sqlite3_value_blob(v);
        int n = sqlite3_value_bytes(v);
        rv = edge_buf_putc(b, 4);
        if (rv == EDGE_OK) rv = edge__repl_put_str(b, p ? (const char *)p : "", (size_t)n);
        break;
    }
    default:
        rv = edge_buf_putc(b, 0);
    }
    return rv;
}

int edge__repl_get_str(struct edge__rd *r, const char **s, size_t *n)
{
    uint64_t len;
    size_t used;
    if (edge__uvarint_get(r->p + r->off, r->len - r->off, &len, &used) != EDGE_OK) return EDGE_ECORRUPT;
    r->off += used;
    if (len > r->len - r->off) return EDGE_ECORRUPT;
    *s = (const char *)r->p + r->off;
    *n = (size_t)len;
    r->off += (size_t)len;
    return EDGE_OK;
}

int edge__repl_get_u8(struct edge__rd *r, uint8_t *v)
{
    if (r->off >= r->len) return EDGE_ECORRUPT;
    *v = r->p[r->off++];
    return EDGE_OK;
}

int edge__repl_bind_value(sqlite3_stmt *st, int idx, struct edge__rd *r)
{
    uint8_t t;
    if (edge__repl_get_u8(r, &t) != EDGE_OK) return EDGE_ECORRUPT;
    switch (t) {
    case 0: sqlite3_bind_null(st, idx); return EDGE_OK;
    case 1: {
        uint64_t z;
        if (edge__repl_get_varint(r, &z) != EDGE_OK) return EDGE_ECORRUPT;
        int64_t i = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
        sqlite3_bind_int64(st, idx, i);
        return EDGE_OK;
    }
    case 2: {
        if (r->len - r->off < 8) return EDGE_ECORRUPT;
        uint64_t bits = 0;
        for (int k = 0; k < 8; k++) bits |= (uint64_t)r->p[r->off + (size_t)k] << (8 * k);
        r->off += 8;
        double d;
        memcpy(&d, &bits, 8);
        sqlite3_bind_double(st, idx, d);
        return EDGE_OK;
    }
    case 3:
    case 4: {
        const char *s;
        size_t n;
        if (edge__repl_get_str(r, &s, &n) != EDGE_OK) return EDGE_ECORRUPT;
        if (t == 3) sqlite3_bind_text64(st, idx, s, n, SQLITE_TRANSIENT, SQLITE_UTF8);
        else sqlite3_bind_blob64(st, idx, s, n, SQLITE_TRANSIENT);
        return EDGE_OK;
    }
    default:
        return EDGE_ECORRUPT;
    }
}

int edge__repl_skip_value(struct edge__rd *r)
{
    uint8_t t;
    if (edge__repl_get_u8(r, &t) != EDGE_OK) return EDGE_ECORRUPT;
    uint64_t v;
    const char *s;
    size_t n;
    switch (t) {
    case 0: return EDGE_OK;
    case 1: return edge__repl_get_varint(r, &v);
    case 2:
        if (r->len - r->off < 8) return EDGE_ECORRUPT;
        r->off += 8;
        return EDGE_OK;
    case 3:
    case 4: return edge__repl_get_str(r, &s, &n);
    default: return EDGE_ECORRUPT;
    }
}
