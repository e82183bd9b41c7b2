/* SPDX-License-Identifier: MIT */
/* Internals of the protobuf codec (pb.c): its arena, and the reader of the JSON results
 * it re-encodes (pb_json.c). */
#ifndef EDGE_API_HRANA_PB_INT_H
#define EDGE_API_HRANA_PB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- arena: all of one message's memory, freed at once ---- */

/* A point read's request or answer fits in the arena itself (on the stack), so the
 * common case allocates nothing: a first heap chunk of a few KiB per request made glibc
 * consolidate its fast bins on every request. */
#define PB_ARENA_INLINE 2048

struct pb_chunk;

struct pb_arena {
    struct pb_chunk *head;
    size_t total;       /* bytes of chunks allocated */
    size_t limit;       /* cap on total */
    size_t next_cap;    /* size of the next ordinary chunk */
    bool over;          /* an allocation was refused by the cap (not by the heap) */
    size_t inline_used; /* of inline_buf */
    max_align_t inline_buf[PB_ARENA_INLINE / sizeof(max_align_t)];
};

void pb_arena_init(struct pb_arena *a, size_t limit);
void pb_arena_free_all(struct pb_arena *a);
/* NULL when the heap or the cap refuses (a->over says which). */
void *pb_arena_alloc(void *arena, size_t n);

/* ---- jv: a read-only JSON tree in an arena ----
 * The answers pb.c re-encodes are JSON that exec.c wrote (or a primary did): a small
 * reader that allocates from the arena parses one in a fraction of what a jansson tree
 * costs (hash tables per object, an allocation per node), and it is the same for every
 * answer. It takes standard JSON (RFC 8259) with a depth limit; strings are unescaped
 * into the arena and NUL-terminated (their length is kept: they may hold NUL). Every
 * accessor takes NULL and answers as for a value of another type. */
enum jv_type { JV_NULL, JV_FALSE, JV_TRUE, JV_INT, JV_REAL, JV_STR, JV_ARR, JV_OBJ };

struct jv {
    enum jv_type type;
    const char *key; /* as a member of an object (NUL-terminated), else NULL */
    union {
        int64_t i;
        double d;
        struct {
            const char *s;
            size_t len;
        } str;
        struct {
            struct jv **items;
            size_t n;
        } kids;
    } u;
};

#define JV_MAX_DEPTH 64

/* Parse text[0..len) (one value, whitespace around it) into the arena; NULL when it is
 * not JSON, nested deeper than JV_MAX_DEPTH, or the arena refuses. */
struct jv *jv_parse(struct pb_arena *a, const char *text, size_t len);

struct jv *jv_get(const struct jv *obj, const char *key); /* the first member named key */
size_t jv_size(const struct jv *v);                       /* items of an array, else 0 */
struct jv *jv_at(const struct jv *arr, size_t i);
const char *jv_str(const struct jv *v); /* NULL unless a string */
size_t jv_len(const struct jv *v);
bool jv_is_int(const struct jv *v);
int64_t jv_int(const struct jv *v); /* 0 unless an integer */
bool jv_is_num(const struct jv *v);
double jv_num(const struct jv *v); /* an integer or a real, else 0 */
static inline bool jv_is_str(const struct jv *v) { return v != NULL && v->type == JV_STR; }
static inline bool jv_is_arr(const struct jv *v) { return v != NULL && v->type == JV_ARR; }
static inline bool jv_is_obj(const struct jv *v) { return v != NULL && v->type == JV_OBJ; }
static inline bool jv_is_true(const struct jv *v) { return v != NULL && v->type == JV_TRUE; }

#endif
