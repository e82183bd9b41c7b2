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

/* Rows of protobuf answers, for the door's statistics: the wire format is walked, nothing is
 * decoded into values or re-encoded. A StmtResult's rows are its field 2; an ExecuteResp holds
 * a StmtResult in field 1, a BatchResp a BatchResult in field 1, whose step_results (field 1)
 * are map entries with the StmtResult as field 2; a Response has execute as field 2 and batch
 * as 3; a Result its Response as 1; a PipelineResp its results as 3. A cursor's answer is the
 * CursorResp, then CursorEntry messages, each length-delimited; a row entry is field 4. */
static uint64_t pb_count(const uint8_t *p, size_t len, int level)
{
    /* the field holding the next level down, from the PipelineResp (0) to a StmtResult (5) */
    static const uint64_t field_of[] = {3, 1, 0, 1, 0, 2};
    uint64_t n = 0;
    for (size_t off = 0; off < len;) {
        uint64_t field;
        int wire;
        size_t vs, vl;
        if (skip_field(p, len, &off, &field, &wire, &vs, &vl) != EDGE_OK) break;
        if (wire != 2) continue;
        if (level == 5) {
            if (field == 2) n++; /* a Row */
        } else if (level == 2) {
            /* a Response: execute (2) -> ExecuteResp, batch (3) -> BatchResp */
            if (field == 2) n += pb_count(p + vs, vl, 4);
            if (field == 3) n += pb_count(p + vs, vl, 3);
        } else if (level == 3) {
            if (field == 1) n += pb_count(p + vs, vl, 6); /* BatchResp -> BatchResult */
        } else if (level == 4) {
            if (field == 1) n += pb_count(p + vs, vl, 5); /* ExecuteResp -> StmtResult */
        } else if (level == 6) {
            if (field == 1) n += pb_count(p + vs, vl, 7); /* BatchResult -> a step_results entry */
        } else if (level == 7) {
            if (field == 2) n += pb_count(p + vs, vl, 5); /* the entry's value: a StmtResult */
        } else if (field == field_of[level]) {
            n += pb_count(p + vs, vl, level + 1);
        }
    }
    return n;
}

uint64_t edge__door_pb_count_rows(const uint8_t *p, size_t len, bool cursor)
{
    if (!cursor) return pb_count(p, len, 0);
    uint64_t n = 0;
    bool first = true;
    for (size_t off = 0; off < len;) {
        uint64_t ml;
        if (get_varint(p, len, &off, &ml) != EDGE_OK || ml > len - off) break;
        if (!first) {
            const uint8_t *e = p + off;
            for (size_t eo = 0; eo < ml;) {
                uint64_t field;
                int wire;
                size_t vs, vl;
                if (skip_field(e, (size_t)ml, &eo, &field, &wire, &vs, &vl) != EDGE_OK) break;
                if (field == 4 && wire == 2) n++;
            }
        }
        first = false;
        off += (size_t)ml;
    }
    return n;
}
