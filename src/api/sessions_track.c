/* SPDX-License-Identifier: MIT */
/* Sessions: the home's per-session count of where a session is accessed from, which decides
 * when its home moves (docs/sessions.md, "Migration"). Two rules, either of which moves it:
 *  - consecutive: sessions.migrate_after accesses in a row from one other region (an access
 *    at the home, or from a third region, starts the count again);
 *  - share: with sessions.migrate_share > 0, the regions of the session's most recent
 *    sessions.migrate_window accesses (the home's own included) are kept in a ring; once
 *    at least sessions.migrate_min_accesses are in it and one other region's share of the
 *    ring reaches migrate_share, the session moves there.
 * The ring starts with the first access from another region after the session was created,
 * moved or refused: a session only ever read at its home has no entry (so the table holds
 * only sessions something else reads, and a home read costs nothing while none is counted).
 * The table is bounded (SESS_TRACK_MAX entries); when full it starts over, which only
 * restarts counts. It is touched by every loop (reads at the home, access reports), under
 * one mutex. */
#include "api/sessions_int.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

static uint32_t track_hash(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
    return h % SESS_TRACK_BUCKETS;
}

static void clear_locked(struct edge__sess *s)
{
    for (size_t b = 0; b < SESS_TRACK_BUCKETS; b++) {
        while (s->track[b] != NULL) {
            struct track_ent *e = s->track[b];
            s->track[b] = e->next;
            edge_free(e);
        }
    }
    atomic_store(&s->n_track, 0);
}

void edge__sess_track_clear(struct edge__sess *s)
{
    pthread_mutex_lock(&s->track_mu);
    clear_locked(s);
    pthread_mutex_unlock(&s->track_mu);
}

static bool share_on(const struct edge__sess *s) { return s->conf.migrate_share > 0; }

/* The entry of id, NULL when none. Under track_mu. */
static struct track_ent *find_locked(struct edge__sess *s, const char *id, struct track_ent ***pp_out)
{
    struct track_ent **pp = &s->track[track_hash(id)];
    while (*pp != NULL && strcmp((*pp)->id, id) != 0) pp = &(*pp)->next;
    if (pp_out != NULL) *pp_out = pp;
    return *pp;
}

static void push_locked(struct edge__sess *s, struct track_ent *e, uint8_t code)
{
    uint16_t cap = (uint16_t)s->conf.migrate_window;
    if (e->win == NULL || cap == 0) return;
    e->win[e->wpos] = code;
    e->wpos = (uint16_t)((e->wpos + 1) % cap);
    if (e->wlen < cap) e->wlen++;
}

void edge__sess_track_reset(struct edge__sess *s, const char *id)
{
    if (atomic_load(&s->n_track) == 0) return;
    pthread_mutex_lock(&s->track_mu);
    struct track_ent **pp;
    struct track_ent *e = find_locked(s, id, &pp);
    if (e != NULL) {
        *pp = e->next;
        edge_free(e);
        atomic_fetch_sub(&s->n_track, 1);
    }
    pthread_mutex_unlock(&s->track_mu);
}

void edge__sess_track_home(struct edge__sess *s, const char *id)
{
    if (atomic_load(&s->n_track) == 0) return;
    if (!share_on(s)) {
        edge__sess_track_reset(s, id);
        return;
    }
    pthread_mutex_lock(&s->track_mu);
    struct track_ent *e = find_locked(s, id, NULL);
    if (e != NULL) {
        e->region[0] = '\0';
        e->count = 0;
        push_locked(s, e, s->self_code);
    }
    pthread_mutex_unlock(&s->track_mu);
}

uint8_t edge__sess_track_code(int region_idx)
{
    return region_idx < 0 || region_idx >= SESS_CODE_UNKNOWN ? SESS_CODE_UNKNOWN : (uint8_t)region_idx;
}

bool edge__sess_track_remote(struct edge__sess *s, const char *id, const char *from, uint8_t from_code)
{
    const struct edge_conf_sessions *cf = &s->conf;
    bool move = false;
    pthread_mutex_lock(&s->track_mu);
    struct track_ent **pp;
    struct track_ent *e = find_locked(s, id, &pp);
    if (e == NULL) {
        if (atomic_load(&s->n_track) >= SESS_TRACK_MAX) {
            clear_locked(s);
            e = find_locked(s, id, &pp);
        }
    }
    if (e == NULL) {
        size_t idlen = strlen(id) + 1, win = share_on(s) ? (size_t)cf->migrate_window : 0;
        e = edge_calloc(1, sizeof(*e) + idlen + win);
        if (e != NULL) {
            memcpy(e->id, id, idlen);
            if (win > 0) e->win = (uint8_t *)e->id + idlen;
            e->next = NULL;
            *pp = e;
            atomic_fetch_add(&s->n_track, 1);
        }
    }
    if (e != NULL) {
        if (strcmp(e->region, from) != 0) {
            snprintf(e->region, sizeof(e->region), "%s", from);
            e->count = 0;
        }
        e->count++;
        if (cf->migrate_after > 0 && e->count >= (uint32_t)cf->migrate_after) move = true;
        push_locked(s, e, from_code);
        if (!move && e->win != NULL && e->wlen >= cf->migrate_min_accesses) {
            uint32_t mine = 0;
            for (uint16_t i = 0; i < e->wlen; i++) mine += e->win[i] == from_code;
            /* in integers: mine / wlen >= share, with the share in millionths */
            uint64_t share_ppm = (uint64_t)llround(cf->migrate_share * 1e6);
            move = (uint64_t)mine * 1000000u >= share_ppm * e->wlen;
        }
    }
    pthread_mutex_unlock(&s->track_mu);
    return move;
}
