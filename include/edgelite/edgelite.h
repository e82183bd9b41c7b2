/* SPDX-License-Identifier: MIT */
/* edgelite: a multi-region SQLite edge database. Umbrella header. */
#ifndef EDGELITE_H
#define EDGELITE_H

#include "edgelite/errors.h"
#include "edgelite/alloc.h"

#define EDGE_VERSION_STRING EDGE_VERSION

#endif
