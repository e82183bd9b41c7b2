/* SPDX-License-Identifier: MIT */
/* The front door's protobuf bodies (door_int.h): Hrana 3 over protobuf is forwarded as it
 * came; only the baton is touched, at the wire level. In every top-level message the
 * door reads or writes (PipelineReq, PipelineResp, CursorReq, CursorResp, see
 * src/api/hrana/hrana.proto) the baton is field 1, a string, so replacing it is: emit
 * field 1 anew, then every other field byte for byte. Nothing else is decoded here; the
 * classification decodes the request with the node's decoder (door.h, pb_decode). */
#include <stdio.h>
#include <string.h>

#include "router/door_int.h"

static int get_varint(const uint8_t *p, size_t len, size_t *off, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *off < len; shift += 7) {
        uint8_t b = p[(*off)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return EDGE_OK;
        }
    }
    return EDGE_EPROTO;
}

static int put_varint(struct edge_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0) tmp[n] |= 0x80;
        n++;
    } while (v != 0);
    return edge_buf_append(b, tmp, n);
}

/* Past the field at *off (its key read into *field, *wire); its bytes are [start, *off). */
static int skip_field(const uint8_t *p, size_t len, size_t *off, uint64_t *field, int *wire, size_t *vstart,
                      size_t *vlen)
{
    uint64_t key, v;
    if (get_varint(p, len, off, &key) != EDGE_OK) return EDGE_EPROTO;
    *field = key >> 3;
    *wire = (int)(key & 7);
    *vstart = *off;
    switch (*wire) {
    case 0:
        if (get_varint(p, len, off, &v) != EDGE_OK) return EDGE_EPROTO;
        break;
    case 1:
        if (len - *off < 8) return EDGE_EPROTO;
        *off += 8;
        break;
    case 2:
        if (get_varint(p, len, off, &v) != EDGE_OK || v > len - *off) return EDGE_EPROTO;
        *vstart = *off;
        *off += (size_t)v;
        break;
    case 5:
        if (len - *off < 4) return EDGE_EPROTO;
        *off += 4;
        break;
    default: return EDGE_EPROTO;
    }
    *vlen = *off - *vstart;
    return EDGE_OK;
}

int edge__door_pb_baton(const uint8_t *p, size_t len, const uint8_t **baton, size_t *blen)
{
    *baton = NULL;
    *blen = 0;
    for (size_t off = 0; off < len;) {
        uint64_t field;
        int wire;
        size_t vs, vl;
        if (skip_field(p, len, &off, &field, &wire, &vs, &vl) != EDGE_OK) return EDGE_EPROTO;
        if (field == 1 && wire == 2) {
            *baton = p + vs; /* the last one wins, as protobuf reads it */
            *blen = vl;
        }
    }
    return EDGE_OK;
}

int edge__door_pb_set_baton(const uint8_t *p, size_t len, const char *baton, size_t blen, struct edge_buf *out)
{
    int rv = EDGE_OK;
    if (baton != NULL) {
        rv = edge_buf_putc(out, 0x0a); /* field 1, length-delimited */
        if (rv == EDGE_OK) rv = put_varint(out, blen);
        if (rv == EDGE_OK) rv = edge_buf_append(out, baton, blen);
    }
    for (size_t off = 0; off < len && rv == EDGE_OK;) {
        size_t start = off, vs, vl;
        uint64_t field;
        int wire;
        if (skip_field(p, len, &off, &field, &wire, &vs, &vl) != EDGE_OK) return EDGE_EPROTO;
        if (field == 1) continue;
        rv = edge_buf_append(out, p + start, off - start);
    }
    return rv;
}

/* "<region>.<baton>" for an answer's baton (NULL: none, or empty). */
static int prefixed(const uint8_t *b, size_t bl, int region, char *out, size_t cap, size_t *outlen)
{
    if (b == NULL || bl == 0 || bl > cap - 16) return EDGE_ENOTFOUND;
    int n = snprintf(out, cap, "%d.%.*s", region, (int)bl, (const char *)b);
    *outlen = (size_t)n;
    return EDGE_OK;
}

int edge__door_pb_answer(const uint8_t *p, size_t len, int region, bool cursor, struct edge_buf *out)
{
    char nb[600];
    size_t nbl = 0;
    const uint8_t *b;
    size_t bl;
    if (!cursor) {
        if (edge__door_pb_baton(p, len, &b, &bl) != EDGE_OK) return EDGE_EPROTO;
        if (prefixed(b, bl, region, nb, sizeof(nb), &nbl) != EDGE_OK) return EDGE_ENOTFOUND;
        return edge__door_pb_set_baton(p, len, nb, nbl, out);
    }
    /* a cursor's answer: length-delimited messages, the CursorResp first */
    size_t off = 0;
    uint64_t ml;
    if (get_varint(p, len, &off, &ml) != EDGE_OK || ml > len - off) return EDGE_EPROTO;
    if (edge__door_pb_baton(p + off, (size_t)ml, &b, &bl) != EDGE_OK) return EDGE_EPROTO;
    if (prefixed(b, bl, region, nb, sizeof(nb), &nbl) != EDGE_OK) return EDGE_ENOTFOUND;
    struct edge_buf first;
    edge_buf_init(&first, (size_t)1 << 20);
    int rv = edge__door_pb_set_baton(p + off, (size_t)ml, nb, nbl, &first);
    if (rv == EDGE_OK) rv = put_varint(out, first.len);
    if (rv == EDGE_OK) rv = edge_buf_append(out, first.data, first.len);
    if (rv == EDGE_OK) rv = edge_buf_append(out, p + off + ml, len - off - (size_t)ml);
    edge_buf_free(&first);
    return rv;
}
