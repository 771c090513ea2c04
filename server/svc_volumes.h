/* Volumes service (svc_volumes.c): the adapter between the API messages and volume.c, and the
 * volumes of a machine as the Machines service shows them. */
#pragma once

#include "arena.h"
#include "err.h"
#include "sistemo/v1/machines.pb-c.h"

struct daemon;

/* Appends the machine's volumes (msg->id) to msg->volumes, in disk order: its root disk
 * (guest path "/"), then its data volumes (/mnt/NAME). */
int machine_volumes_to_msg(struct daemon *d, struct arena *a, Sistemo__V1__Machine *msg,
			   struct err *err);
