/* Machines service, the streaming half: console logs (follow by long polling) and exec
 * sessions (start, read, write, resize, signal). Handlers for svc_machines.c's table. */
#pragma once

#include "dispatch.h"

int machines_logs(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		  struct err *err);
int machines_exec(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		  struct err *err);
int machines_exec_read(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
		       struct err *err);
int machines_exec_write(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
			struct err *err);
int machines_exec_resize(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
			 struct err *err);
int machines_exec_signal(struct call *c, const ProtobufCMessage *in, ProtobufCMessage **ret,
			 struct err *err);
