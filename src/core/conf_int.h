/* SPDX-License-Identifier: MIT */
/* Internals shared by the configuration loaders (conf.c, regions.c). */
#ifndef EDGE_CORE_CONF_INT_H
#define EDGE_CORE_CONF_INT_H

#include <stddef.h>

/* Format an error into errmsg (n bytes); nothing when errmsg is NULL or n is 0. */
void edge__conf_setmsg(char *errmsg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A region id: lower-case letters, digits and "-" (it ends up in URLs, file names and metric labels). */
int edge__conf_valid_region_id(const char *s);

#endif
