#include "nft.h"

#include <errno.h>
#include <pthread.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <linux/if_ether.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_bridge.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <nftables/libnftables.h>

#include "macro.h"

#define LABEL_LEN 96
#define ROOM_MSG 8192    /* bytes reserved for one table, chain, set or rule message */
#define ROOM_ELEMS 65536 /* for one element message: ELEMS_PER_MSG elements of <= 80 bytes */
#define ELEMS_PER_MSG 256
#define ACK_TIMEOUT_MS 5000
#define DUMP_ATTEMPTS 3      /* a dump interrupted by a concurrent change is read again */
#define DUMP_SEQ 0x80000000u /* dumps never share a sequence number with a batch */
#define MAX_FOREIGN 256      /* foreign forward base chains considered */
#define MAX_OURS 16          /* our rules remembered per foreign chain */
#define COMMENT_MAX 64
#define REQ_SIZE 4096   /* one dump request */
#define RECV_SIZE 32768 /* one read of ACKs or of a dump */
#define UDP_FLOW_TIMEOUT_MS 120000
#define UDP_FLOWS_MAX 65536

/* nft's datatype numbers (src/datatype.h): set key types, for `nft list` to print values */
#define TYPE_IPADDR 7
#define TYPE_ETHERTYPE 10
#define TYPE_INET_PROTOCOL 12
#define TYPE_INET_SERVICE 13
#define TYPE_IFNAME 41
#define CONCAT2(a, b) (((a) << 6) | (b))
#define CONCAT3(a, b, c) (((a) << 12) | ((b) << 6) | (c))
#define CONCAT4(a, b, c, d) (((a) << 18) | ((b) << 12) | ((c) << 6) | (d))

/* registers as nft allocates them: reg 1 (128 bits) then the 32-bit ones after it */
#define REG_A NFT_REG_1
#define REG_B NFT_REG32_01
#define REG_C NFT_REG32_02
#define REG_D NFT_REG32_03
#define REG_AFTER_IFNAME NFT_REG32_04

#define PRIO_DSTNAT (-100)
#define PRIO_SRCNAT 100
#define PRIO_FILTER 0
#define PRIO_BRIDGE_FILTER (-200)
/* after br_netfilter's forward hook (0): where it is loaded, the inet forward chain has
 * already judged (and marked) the frame */
#define PRIO_BRIDGE_AFTER_BRNF 10

static const uint8_t SMTP_PORTS[][2] = {{0, 25}, {0x01, 0xd1}, {0x02, 0x4b}}; /* 25 465 587, BE */

static void
nl_close(struct mnl_socket *nl)
{
	if (nl)
		mnl_socket_close(nl);
}

static void
nftctx_free(struct nft_ctx *ctx)
{
	if (ctx)
		nft_ctx_free(ctx);
}

DEFINE_CLEANUP(nlsock, struct mnl_socket, nl_close)
DEFINE_CLEANUP(nftctx, struct nft_ctx, nftctx_free)

/* ---- errors: the kernel's errno and libmnl's end here ----------------------------------- */

/* Sets "nftables: <what>: <strerror>" from a negative errno and returns it. */
#define fail(err, r, ...) err_errno((err), (r), "nftables: " __VA_ARGS__)

/* ---- the batch: one buffer of messages, sent once, every message acknowledged ----------- */

struct batch {
	char *buf;
	size_t len, cap;
	uint32_t seq0;             /* the batch-begin message; messages follow it */
	char (*labels)[LABEL_LEN]; /* what each message does, for the error */
	size_t n, labels_cap;      /* messages asking for an ACK */
	int error;                 /* first failure while building (-ENOMEM, -EINVAL) */
};

static void
batch_free(struct batch *b)
{
	free(b->buf);
	free(b->labels);
}

/* Room for one more message of up to room bytes; NULL after any failure. */
static char *
batch_room(struct batch *b, size_t room)
{
	if (b->error)
		return NULL;
	if (b->cap - b->len < room) {
		size_t cap = b->cap * 2 > b->len + room ? b->cap * 2 : b->len + room;
		char *buf = realloc(b->buf, cap);
		if (!buf) {
			b->error = -ENOMEM;
			return NULL;
		}
		b->buf = buf;
		b->cap = cap;
	}
	return b->buf + b->len;
}

/* A batch whose messages are numbered from seq0 + 1 (the begin marker is seq0). */
static void
batch_init_at(struct batch *b, uint32_t seq0)
{
	memset(b, 0, sizeof(*b));
	b->seq0 = seq0;
	char *p = batch_room(b, ROOM_MSG);
	if (p)
		b->len += nftnl_batch_begin(p, b->seq0)->nlmsg_len;
}

static void
batch_init(struct batch *b)
{
	batch_init_at(b, 1);
}

/* Starts a message that asks for an ACK; NULL after any failure. */
static struct nlmsghdr *
batch_msg(struct batch *b, uint16_t type, uint16_t family, uint16_t flags, size_t room)
{
	char *p = batch_room(b, room);

	if (!p)
		return NULL;
	return nftnl_nlmsg_build_hdr(p, type, family, flags | NLM_F_ACK,
				     b->seq0 + 1 + (uint32_t)b->n);
}

/* Ends the message batch_msg started, with what it does for the error message. */
static void batch_commit(struct batch *b, const struct nlmsghdr *nlh, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
batch_commit(struct batch *b, const struct nlmsghdr *nlh, const char *fmt, ...)
{
	va_list ap;

	if (b->n == b->labels_cap) {
		size_t cap = b->labels_cap ? b->labels_cap * 2 : 64;
		void *labels = reallocarray(b->labels, cap, LABEL_LEN);
		if (!labels) {
			b->error = -ENOMEM;
			return;
		}
		b->labels = labels;
		b->labels_cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->labels[b->n], LABEL_LEN, fmt, ap);
	va_end(ap);
	b->len += nlh->nlmsg_len;
	b->n++;
}

/* ---- netlink: socket, batch round trip, dumps ------------------------------------------ */

static int
nl_open(struct mnl_socket **ret)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	int one = 1;

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int r = -errno;
		mnl_socket_close(nl);
		return r;
	}
	/* errors carry only the header of the failed message, not the whole of it */
	(void)mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, sizeof(one));
	/* bounds every read of a dump */
	struct timeval tv = {.tv_sec = ACK_TIMEOUT_MS / 1000};
	(void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	*ret = nl;
	return 0;
}

/* A batch bigger than the default socket buffers needs them raised: the send fails with
 * EMSGSIZE, the ACKs would overflow the receive queue. FORCE works as root; else best effort. */
static void
nl_size_buffers(struct mnl_socket *nl, size_t send_bytes, size_t n_acks)
{
	int fd = mnl_socket_get_fd(nl);
	int snd = send_bytes + 65536 > INT32_MAX ? INT32_MAX : (int)(send_bytes + 65536);
	int rcv = n_acks * 1024 + 262144 > INT32_MAX ? INT32_MAX : (int)(n_acks * 1024 + 262144);

	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof(snd)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof(snd));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
}

/* Counts one buffer of ACKs; the first error is kept with the index of its message (SIZE_MAX
 * when it points at the batch itself). mnl_cb_run would stop at the first ACK. */
static void
batch_count_acks(const struct batch *b, const char *buf, int len, size_t *acked, int *first,
		 size_t *ret_failed)
{
	for (const struct nlmsghdr *nlh = (const void *)buf; mnl_nlmsg_ok(nlh, len);
	     nlh = mnl_nlmsg_next(nlh, &len)) {
		if (nlh->nlmsg_type != NLMSG_ERROR ||
		    nlh->nlmsg_len < mnl_nlmsg_size(sizeof(struct nlmsgerr)))
			continue;
		const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
		bool ours = nlh->nlmsg_seq > b->seq0 && nlh->nlmsg_seq <= b->seq0 + b->n;
		if (ours)
			(*acked)++;
		if (e->error && !*first) {
			*first = e->error < 0 ? e->error : -e->error;
			*ret_failed = ours ? nlh->nlmsg_seq - b->seq0 - 1 : SIZE_MAX;
		}
	}
}

/* The kernel handles the whole batch while we send it, so once an error is in, whatever else
 * it has to say is already queued: read it without waiting. */
static int
batch_acks(struct mnl_socket *nl, const struct batch *b, size_t *ret_failed)
{
	cleanup_free char *buf = malloc(RECV_SIZE);
	int fd = mnl_socket_get_fd(nl), first = 0;
	size_t acked = 0;

	*ret_failed = SIZE_MAX;
	if (!buf)
		return -ENOMEM;
	while (acked < b->n) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, first ? 0 : ACK_TIMEOUT_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t len = recv(fd, buf, RECV_SIZE, 0);
		if (len < 0 && errno == EINTR)
			continue;
		if (len < 0)
			return first ? first : -errno;
		batch_count_acks(b, buf, (int)len, &acked, &first, ret_failed);
	}
	if (first)
		return first;
	return acked == b->n ? 0 : -ETIMEDOUT;
}

/* Sends the batch (ended here) on nl and reads every ACK. On failure err names `what` and
 * the step the kernel refused. */
static int
batch_run(struct mnl_socket *nl, struct batch *b, const char *what, struct err *err)
{
	size_t failed;
	char *p = batch_room(b, ROOM_MSG);

	if (p)
		b->len += nftnl_batch_end(p, b->seq0 + 1 + (uint32_t)b->n)->nlmsg_len;
	if (b->error)
		return fail(err, b->error, "%s: build the batch", what);
	nl_size_buffers(nl, b->len, b->n);
	if (mnl_socket_sendto(nl, b->buf, b->len) < 0)
		return fail(err, -errno, "%s: send the batch", what);
	int r = batch_acks(nl, b, &failed);
	if (r < 0 && failed < b->n)
		return fail(err, r, "%s: %s", what, b->labels[failed]);
	if (r < 0)
		return fail(err, r, "%s", what);
	return 0;
}

/* Sends one dump request and calls cb for each message of the answer. -EINTR when the
 * ruleset changed during the dump: the caller starts again. */
static int
nl_dump(struct mnl_socket *nl, const struct nlmsghdr *req, mnl_cb_t cb, void *ud)
{
	cleanup_free char *buf = malloc(RECV_SIZE);
	unsigned portid = mnl_socket_get_portid(nl);
	int r = MNL_CB_OK;

	if (!buf)
		return -ENOMEM;
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) < 0)
		return -errno;
	do {
		ssize_t len = mnl_socket_recvfrom(nl, buf, RECV_SIZE);
		if (len < 0 && errno == EINTR)
			continue;
		if (len < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		errno = 0;
		r = mnl_cb_run(buf, len, req->nlmsg_seq, portid, cb, ud);
	} while (r > MNL_CB_STOP);
	if (r < 0)
		return errno ? -errno : -ENOMEM; /* our callbacks fail only to allocate */
	return 0;
}

/* ---- reading what is loaded: our tables, foreign forward chains ------------------------- */

struct tables_seen {
	bool inet, bridge;
};

static int
table_cb(const struct nlmsghdr *nlh, void *ud)
{
	struct tables_seen *seen = ud;
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t)
		return MNL_CB_ERROR;
	if (nftnl_table_nlmsg_parse(nlh, t) == 0 &&
	    streq(nftnl_table_get_str(t, NFTNL_TABLE_NAME), NFT_TABLE)) {
		uint32_t family = nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY);
		seen->inet |= family == NFPROTO_INET;
		seen->bridge |= family == NFPROTO_BRIDGE;
	}
	nftnl_table_free(t);
	return MNL_CB_OK;
}

static int
tables_list(struct mnl_socket *nl, struct tables_seen *ret)
{
	char req[REQ_SIZE];
	int r = -EINTR;

	for (int i = 0; i < DUMP_ATTEMPTS && r == -EINTR; i++) {
		*ret = (struct tables_seen){0};
		struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETTABLE, NFPROTO_UNSPEC,
							     NLM_F_DUMP, DUMP_SEQ);
		r = nl_dump(nl, nlh, table_cb, ret);
	}
	return r;
}

/* A base chain on the forward hook in another table (ip, ip6 or inet family). */
struct foreign {
	uint16_t family;
	char *table, *chain;
	bool drop;               /* policy drop: it gets our rule */
	uint64_t ours[MAX_OURS]; /* handles of our rules in it */
	size_t n_ours, n_rules;
	bool ours_first; /* its first rule is ours */
};

struct foreign_list {
	struct foreign v[MAX_FOREIGN];
	size_t n;
	int error;
};

static void
foreign_clear(struct foreign_list *fl)
{
	for (size_t i = 0; i < fl->n; i++) {
		free(fl->v[i].table);
		free(fl->v[i].chain);
	}
	fl->n = 0;
	fl->error = 0;
}

static const char *
family_name(uint32_t family)
{
	switch (family) {
	case NFPROTO_IPV4:
		return "ip";
	case NFPROTO_IPV6:
		return "ip6";
	case NFPROTO_INET:
		return "inet";
	case NFPROTO_BRIDGE:
		return "bridge";
	default:
		return "unknown";
	}
}

static bool
chain_is_foreign_forward(const struct nftnl_chain *c)
{
	uint32_t family = nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY);
	const char *table = nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE);

	if (!nftnl_chain_is_set(c, NFTNL_CHAIN_HOOKNUM) ||
	    nftnl_chain_get_u32(c, NFTNL_CHAIN_HOOKNUM) != NF_INET_FORWARD || !table)
		return false;
	if (family != NFPROTO_IPV4 && family != NFPROTO_IPV6 && family != NFPROTO_INET)
		return false;
	return !(family == NFPROTO_INET && streq(table, NFT_TABLE));
}

static int
chain_cb(const struct nlmsghdr *nlh, void *ud)
{
	struct foreign_list *fl = ud;
	struct nftnl_chain *c = nftnl_chain_alloc();

	if (!c)
		return MNL_CB_ERROR;
	if (nftnl_chain_nlmsg_parse(nlh, c) == 0 && chain_is_foreign_forward(c) &&
	    fl->n < MAX_FOREIGN) {
		struct foreign *f = &fl->v[fl->n];
		memset(f, 0, sizeof(*f));
		f->family = nftnl_chain_get_u32(c, NFTNL_CHAIN_FAMILY);
		f->drop = nftnl_chain_is_set(c, NFTNL_CHAIN_POLICY) &&
			  nftnl_chain_get_u32(c, NFTNL_CHAIN_POLICY) == NF_DROP;
		f->table = strdup(nftnl_chain_get_str(c, NFTNL_CHAIN_TABLE));
		f->chain = strdup(nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
		fl->n++;
		if (!f->table || !f->chain)
			fl->error = -ENOMEM;
	}
	nftnl_chain_free(c);
	return fl->error ? MNL_CB_ERROR : MNL_CB_OK;
}

static int
udata_cb(const struct nftnl_udata *attr, void *data)
{
	const struct nftnl_udata **tb = data;

	if (nftnl_udata_type(attr) <= NFTNL_UDATA_RULE_MAX)
		tb[nftnl_udata_type(attr)] = attr;
	return 0;
}

/* Our compat rule carries exactly the comment NFT_COMPAT_COMMENT. */
static bool
rule_is_compat(const struct nftnl_rule *r)
{
	const struct nftnl_udata *tb[NFTNL_UDATA_RULE_MAX + 1] = {0};
	uint32_t len = 0;
	const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);

	if (!ud || nftnl_udata_parse(ud, len, udata_cb, tb) < 0 || !tb[NFTNL_UDATA_RULE_COMMENT])
		return false;
	const struct nftnl_udata *c = tb[NFTNL_UDATA_RULE_COMMENT];
	return nftnl_udata_len(c) == sizeof(NFT_COMPAT_COMMENT) &&
	       memcmp(nftnl_udata_get(c), NFT_COMPAT_COMMENT, sizeof(NFT_COMPAT_COMMENT)) == 0;
}

static int
rule_cb(const struct nlmsghdr *nlh, void *ud)
{
	struct foreign *f = ud;
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		return MNL_CB_ERROR;
	if (nftnl_rule_nlmsg_parse(nlh, r) == 0) {
		f->n_rules++;
		if (rule_is_compat(r) && f->n_ours < MAX_OURS) {
			f->ours[f->n_ours++] = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
			f->ours_first |= f->n_rules == 1;
		}
	}
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

/* Reads one foreign chain's rules (the kernel filters the dump by table and chain). */
static int
foreign_rules(struct mnl_socket *nl, struct foreign *f)
{
	char req[REQ_SIZE];
	struct nftnl_rule *r = nftnl_rule_alloc();
	int rc = -EINTR;

	if (!r)
		return -ENOMEM;
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, f->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, f->chain);
	for (int i = 0; i < DUMP_ATTEMPTS && rc == -EINTR; i++) {
		f->n_ours = f->n_rules = 0;
		f->ours_first = false;
		struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETRULE, f->family,
							     NLM_F_DUMP, DUMP_SEQ);
		nftnl_rule_nlmsg_build_payload(nlh, r);
		rc = nl_dump(nl, nlh, rule_cb, f);
	}
	nftnl_rule_free(r);
	return rc;
}

/* Lists the foreign base chains on the forward hook and our rules in each. */
static int
foreign_scan(struct mnl_socket *nl, struct foreign_list *fl)
{
	char req[REQ_SIZE];
	int r = -EINTR;

	for (int i = 0; i < DUMP_ATTEMPTS && r == -EINTR; i++) {
		foreign_clear(fl);
		struct nlmsghdr *nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETCHAIN, NFPROTO_UNSPEC,
							     NLM_F_DUMP, DUMP_SEQ);
		r = nl_dump(nl, nlh, chain_cb, fl);
		if (fl->error)
			r = fl->error;
	}
	for (size_t i = 0; r == 0 && i < fl->n; i++) {
		r = foreign_rules(nl, &fl->v[i]);
		if (r == -ENOENT) { /* gone since the chain dump: nothing to do there */
			fl->v[i].drop = false;
			fl->v[i].n_ours = 0;
			r = 0;
		}
	}
	return r;
}

/* ---- building: tables, chains, sets, elements ------------------------------------------- */

struct build {
	struct batch *b;
	uint16_t family; /* NFPROTO_INET or NFPROTO_BRIDGE */
	uint32_t set_id; /* last set id used in the batch */
};

/*   nft add table F sistemo; nft delete table F sistemo; nft add table F sistemo
 * The first add makes the delete succeed when the table is missing; in one batch, the
 * replacement is atomic. */
static void
table_replace(struct build *bd)
{
	static const uint16_t steps[] = {NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWTABLE};
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t) {
		bd->b->error = -ENOMEM;
		return;
	}
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, bd->family);
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		struct nlmsghdr *nlh =
			batch_msg(bd->b, steps[i], bd->family, NLM_F_CREATE, ROOM_MSG);
		if (!nlh)
			break;
		nftnl_table_nlmsg_build_payload(nlh, t);
		batch_commit(bd->b, nlh, "%s table %s %s",
			     steps[i] == NFT_MSG_DELTABLE ? "delete" : "add",
			     family_name(bd->family), NFT_TABLE);
	}
	nftnl_table_free(t);
}

/*   nft add chain F sistemo NAME { type TYPE hook HOOK priority PRIO; policy accept; }
 * type NULL: a regular chain. */
static void
chain_add(struct build *bd, const char *name, const char *type, uint32_t hook, int prio)
{
	struct nftnl_chain *c = nftnl_chain_alloc();

	if (!c) {
		bd->b->error = -ENOMEM;
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, bd->family);
	if (type) {
		nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
		nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
		nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	struct nlmsghdr *nlh =
		batch_msg(bd->b, NFT_MSG_NEWCHAIN, bd->family, NLM_F_CREATE, ROOM_MSG);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		batch_commit(bd->b, nlh, "add chain '%s'", name);
	}
	nftnl_chain_free(c);
}

/* The shape of a set: key and (for a map) data types and lengths, flags. */
struct set_def {
	const char *name;
	uint32_t flags;
	uint32_t key_type, key_len;
	uint32_t data_type, data_len; /* 0: a set, not a map */
	uint64_t timeout_ms;
	uint32_t size;      /* 0: unbounded */
	uint32_t byteorder; /* of the key, for `nft list`: 1 host (strings), 2 big endian */
};

/* The key's byte order in the set's user data, where nft keeps it: without it `nft list`
 * prints ifname elements as "". */
static void
set_byteorder(struct batch *b, struct nftnl_set *s, uint32_t byteorder)
{
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(16);

	if (!ud || !nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER, byteorder))
		b->error = -ENOMEM;
	else
		nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud),
				   nftnl_udata_buf_len(ud));
	if (ud)
		nftnl_udata_buf_free(ud);
}

static struct nftnl_set *
set_obj(const struct build *bd, const char *name, uint32_t id)
{
	struct nftnl_set *s = nftnl_set_alloc();

	if (!s) {
		bd->b->error = -ENOMEM;
		return NULL;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, bd->family);
	if (id)
		nftnl_set_set_u32(s, NFTNL_SET_ID, id);
	return s;
}

/*   nft add set|map F sistemo NAME { type ...; flags ...; }
 * Returns the set's id in this batch (what a rule refers to an anonymous set by). */
static uint32_t
set_add(struct build *bd, const struct set_def *d)
{
	uint32_t id = ++bd->set_id;
	struct nftnl_set *s = set_obj(bd, d->name, id);

	if (!s)
		return id;
	nftnl_set_set_u32(s, NFTNL_SET_FLAGS, d->flags | (d->data_len ? NFT_SET_MAP : 0));
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, d->key_type);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, d->key_len);
	if (d->data_len) {
		nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, d->data_type);
		nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, d->data_len);
	}
	if (d->timeout_ms)
		nftnl_set_set_u64(s, NFTNL_SET_TIMEOUT, d->timeout_ms);
	if (d->size)
		nftnl_set_set_u32(s, NFTNL_SET_DESC_SIZE, d->size);
	if (d->byteorder)
		set_byteorder(bd->b, s, d->byteorder);
	struct nlmsghdr *nlh = batch_msg(bd->b, NFT_MSG_NEWSET, bd->family, NLM_F_CREATE, ROOM_MSG);
	if (nlh) {
		nftnl_set_nlmsg_build_payload(nlh, s);
		batch_commit(bd->b, nlh, "add set '%s'", d->name);
	}
	nftnl_set_free(s);
	return id;
}

/* Writes elements of one set, ELEMS_PER_MSG per message. */
struct elems {
	struct build *bd;
	const char *set;
	uint32_t set_id;
	uint16_t type; /* NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM */
	struct nftnl_set *cur;
	size_t n;
};

static void
elems_flush(struct elems *w)
{
	struct batch *b = w->bd->b;

	if (!w->cur)
		return;
	struct nlmsghdr *nlh =
		batch_msg(b, w->type, w->bd->family,
			  w->type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0, ROOM_ELEMS);
	if (nlh) {
		nftnl_set_elems_nlmsg_build_payload(nlh, w->cur);
		batch_commit(b, nlh, "%s elements of set '%s'",
			     w->type == NFT_MSG_NEWSETELEM ? "add" : "delete", w->set);
	}
	nftnl_set_free(w->cur);
	w->cur = NULL;
	w->n = 0;
}

/* One element: key, data (a map's; NULL for a set), flags (NFT_SET_ELEM_INTERVAL_END). */
static void
elems_add(struct elems *w, const void *key, uint32_t klen, const void *data, uint32_t dlen,
	  uint32_t flags)
{
	if (!w->cur && !(w->cur = set_obj(w->bd, w->set, w->set_id)))
		return;
	struct nftnl_set_elem *e = nftnl_set_elem_alloc();
	if (!e) {
		w->bd->b->error = -ENOMEM;
		return;
	}
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, klen);
	if (data)
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_DATA, data, dlen);
	if (flags)
		nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, flags);
	nftnl_set_elem_add(w->cur, e);
	if (++w->n == ELEMS_PER_MSG)
		elems_flush(w);
}

/* An anonymous constant set of n keys of klen bytes, as nft writes `{ a, b, c }` inline;
 * returns its id for the lookup that follows. */
static uint32_t
anon_set(struct build *bd, uint32_t key_type, uint32_t klen, const void *keys, size_t n)
{
	struct set_def d = {.name = "__set%d",
			    .flags = NFT_SET_ANONYMOUS | NFT_SET_CONSTANT,
			    .key_type = key_type,
			    .key_len = klen,
			    .size = (uint32_t)n};
	uint32_t id = set_add(bd, &d);
	struct elems w = {.bd = bd, .set = d.name, .set_id = id, .type = NFT_MSG_NEWSETELEM};

	for (size_t i = 0; i < n; i++)
		elems_add(&w, (const char *)keys + i * klen, klen, NULL, 0, 0);
	elems_flush(&w);
	return id;
}

/* ---- building: rules, one expression at a time ------------------------------------------ */

struct rb {
	struct build *bd;
	struct nftnl_rule *r;
};

static void
rb_start(struct rb *rb, struct build *bd)
{
	rb->bd = bd;
	rb->r = bd->b->error ? NULL : nftnl_rule_alloc();
	if (!rb->r && !bd->b->error)
		bd->b->error = -ENOMEM;
}

static struct nftnl_expr *
rb_expr(struct rb *rb, const char *name)
{
	if (!rb->r || rb->bd->b->error)
		return NULL;
	struct nftnl_expr *e = nftnl_expr_alloc(name);
	if (!e)
		rb->bd->b->error = -ENOMEM;
	return e;
}

static void
set_comment(struct batch *b, struct nftnl_rule *r, const char *comment)
{
	struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(COMMENT_MAX + 8);

	if (!ud || !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment))
		b->error = -ENOMEM;
	else
		nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
				    nftnl_udata_buf_len(ud));
	if (ud)
		nftnl_udata_buf_free(ud);
}

/* Writes the rule into chain of table (family, name) and frees it. flags: NLM_F_APPEND to
 * append, 0 to insert at the head. comment: NULL or what `nft list` shows after the rule. */
static void
rule_put(struct rb *rb, uint16_t family, const char *table, const char *chain, uint16_t flags,
	 const char *comment)
{
	struct batch *b = rb->bd->b;

	if (!rb->r)
		return;
	nftnl_rule_set_str(rb->r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(rb->r, NFTNL_RULE_CHAIN, chain);
	nftnl_rule_set_u32(rb->r, NFTNL_RULE_FAMILY, family);
	if (comment)
		set_comment(b, rb->r, comment);
	struct nlmsghdr *nlh =
		batch_msg(b, NFT_MSG_NEWRULE, family, NLM_F_CREATE | flags, ROOM_MSG);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, rb->r);
		batch_commit(b, nlh, "%s rule %s chain '%s'", flags ? "add" : "insert",
			     flags ? "to" : "at the head of", chain);
	}
	nftnl_rule_free(rb->r);
	rb->r = NULL;
}

/* Appends the rule to one of our chains. */
static void
rb_end(struct rb *rb, const char *chain, const char *comment)
{
	rule_put(rb, rb->bd->family, NFT_TABLE, chain, NLM_F_APPEND, comment);
}

static void
x_meta(struct rb *rb, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = rb_expr(rb, "meta");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
	nftnl_rule_add_expr(rb->r, e);
}

static void
x_meta_set(struct rb *rb, uint32_t key, uint32_t sreg)
{
	struct nftnl_expr *e = rb_expr(rb, "meta");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, sreg);
	nftnl_rule_add_expr(rb->r, e);
}

static void
x_cmp(struct rb *rb, uint32_t sreg, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = rb_expr(rb, "cmp");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(rb->r, e);
}

static void
x_payload(struct rb *rb, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg)
{
	struct nftnl_expr *e = rb_expr(rb, "payload");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
	nftnl_rule_add_expr(rb->r, e);
}

/* reg = (reg & mask) ^ xor, over len bytes */
static void
x_bitwise(struct rb *rb, uint32_t reg, uint32_t len, const void *mask, const void * xor)
{
	struct nftnl_expr *e = rb_expr(rb, "bitwise");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor, len);
	nftnl_rule_add_expr(rb->r, e);
}

/* @set (set_id 0: a named set), with the map's data into dreg (0: none); inv: not in it */
static void
x_lookup(struct rb *rb, uint32_t sreg, const char *set, uint32_t set_id, uint32_t dreg, bool inv)
{
	struct nftnl_expr *e = rb_expr(rb, "lookup");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	if (set_id)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
	if (dreg)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG, dreg);
	if (inv)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
	nftnl_rule_add_expr(rb->r, e);
}

/* accept, drop, return; jump chain */
static void
x_verdict(struct rb *rb, int verdict, const char *chain)
{
	struct nftnl_expr *e = rb_expr(rb, "immediate");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	if (chain)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	nftnl_rule_add_expr(rb->r, e);
}

static void
x_ct(struct rb *rb, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = rb_expr(rb, "ct");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, dreg);
	nftnl_rule_add_expr(rb->r, e);
}

/* fib daddr type local */
static void
x_fib_daddr_local(struct rb *rb)
{
	struct nftnl_expr *e = rb_expr(rb, "fib");
	uint32_t local = RTN_LOCAL;

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, REG_A);
	nftnl_rule_add_expr(rb->r, e);
	x_cmp(rb, REG_A, NFT_CMP_EQ, &local, sizeof(local));
}

/* dnat ip to <address in reg A, port in reg B> */
static void
x_dnat(struct rb *rb)
{
	struct nftnl_expr *e = rb_expr(rb, "nat");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, NFPROTO_IPV4);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, REG_A);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, REG_B);
	nftnl_rule_add_expr(rb->r, e);
}

static void
x_masq(struct rb *rb)
{
	struct nftnl_expr *e = rb_expr(rb, "masq");

	if (e)
		nftnl_rule_add_expr(rb->r, e);
}

/* update @set { key in the registers from sreg } */
static void
x_dynset_update(struct rb *rb, const char *set, uint32_t sreg)
{
	struct nftnl_expr *e = rb_expr(rb, "dynset");

	if (!e)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
	nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, set);
	nftnl_rule_add_expr(rb->r, e);
}

/* ---- building: matches, in nft's words -------------------------------------------------- */

/* iifname|oifname ==|!= "name" */
static void
m_ifname(struct rb *rb, uint32_t key, uint32_t op, const char *name)
{
	char buf[IFNAMSIZ] = {0};

	memcpy(buf, name, strnlen(name, IFNAMSIZ - 1));
	x_meta(rb, key, REG_A);
	x_cmp(rb, REG_A, op, buf, sizeof(buf));
}

/* iifname|oifname [!=] @set */
static void
m_ifname_in(struct rb *rb, uint32_t key, const char *set, bool inv)
{
	x_meta(rb, key, REG_A);
	x_lookup(rb, REG_A, set, 0, 0, inv);
}

/* The packet is IPv4: `meta nfproto ipv4` in inet, `meta protocol ip` in bridge. Precedes
 * every `ip` match, as nft's implicit dependency does. */
static void
m_ipv4(struct rb *rb)
{
	if (rb->bd->family == NFPROTO_BRIDGE) {
		uint16_t proto = htons(ETH_P_IP);
		x_meta(rb, NFT_META_PROTOCOL, REG_A);
		x_cmp(rb, REG_A, NFT_CMP_EQ, &proto, sizeof(proto));
	} else {
		uint8_t proto = NFPROTO_IPV4;
		x_meta(rb, NFT_META_NFPROTO, REG_A);
		x_cmp(rb, REG_A, NFT_CMP_EQ, &proto, sizeof(proto));
	}
}

#define IP_SADDR 12
#define IP_DADDR 16

/* ip saddr|daddr addr/prefix (prefix 0 matches everything: nothing is emitted) */
static void
m_ip(struct rb *rb, uint32_t offset, uint32_t addr, unsigned prefix)
{
	uint32_t mask = prefix ? htonl(~0u << (32 - prefix)) : 0, zero = 0;
	uint32_t value = htonl(addr) & mask, len = (prefix + 7) / 8;

	if (prefix == 0)
		return;
	x_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, offset, len, REG_A);
	if (prefix % 8)
		x_bitwise(rb, REG_A, len, &mask, &zero);
	x_cmp(rb, REG_A, NFT_CMP_EQ, &value, len);
}

/* ip saddr|daddr [!=] @set */
static void
m_ip_in(struct rb *rb, uint32_t offset, const char *set, bool inv)
{
	x_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, offset, 4, REG_A);
	x_lookup(rb, REG_A, set, 0, 0, inv);
}

/* meta l4proto == proto */
static void
m_l4proto(struct rb *rb, uint8_t proto)
{
	x_meta(rb, NFT_META_L4PROTO, REG_A);
	x_cmp(rb, REG_A, NFT_CMP_EQ, &proto, sizeof(proto));
}

/* meta l4proto [!=] { p, ... } */
static void
m_l4proto_in(struct rb *rb, const uint8_t *protos, size_t n, bool inv)
{
	uint32_t id = anon_set(rb->bd, TYPE_INET_PROTOCOL, 1, protos, n);

	x_meta(rb, NFT_META_L4PROTO, REG_A);
	x_lookup(rb, REG_A, "__set%d", id, 0, inv);
}

/* meta l4proto { tcp, udp } th dport port (port 0: nothing is emitted) */
static void
m_tcp_udp_dport(struct rb *rb, uint16_t port)
{
	static const uint8_t tcp_udp[] = {IPPROTO_TCP, IPPROTO_UDP};
	uint16_t be = htons(port);

	if (port == 0)
		return;
	m_l4proto_in(rb, tcp_udp, ARRAY_SIZE(tcp_udp), false);
	x_payload(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_A);
	x_cmp(rb, REG_A, NFT_CMP_EQ, &be, sizeof(be));
}

/* ct state|status & bits != 0 */
static void
m_ct_bits(struct rb *rb, uint32_t key, uint32_t bits)
{
	uint32_t zero = 0;

	x_ct(rb, key, REG_A);
	x_bitwise(rb, REG_A, sizeof(bits), &bits, &zero);
	x_cmp(rb, REG_A, NFT_CMP_NEQ, &zero, sizeof(zero));
}

/* meta mark set meta mark | NFT_MARK_ACCEPTED accept: foreign forward chains let it pass */
static void
a_mark_accept(struct rb *rb)
{
	uint32_t mask = ~NFT_MARK_ACCEPTED, xor = NFT_MARK_ACCEPTED;

	x_meta(rb, NFT_META_MARK, REG_A);
	x_bitwise(rb, REG_A, sizeof(mask), &mask, &xor);
	x_meta_set(rb, NFT_META_MARK, REG_A);
	x_verdict(rb, NF_ACCEPT, NULL);
}

/* ---- the model: checked before anything is built ---------------------------------------- */

static bool
ifname_ok(const char *name)
{
	size_t len = name ? strnlen(name, IFNAMSIZ) : 0;

	if (len == 0 || len >= IFNAMSIZ)
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] <= ' ' || name[i] == '/' || name[i] == '"' || name[i] == 0x7f)
			return false;
	return true;
}

/* Machine and network names go into rule comments: printable, no quote or backslash. */
static bool
comment_ok(const char *s)
{
	size_t len = s ? strnlen(s, COMMENT_MAX) : 0;

	if (len == 0 || len >= COMMENT_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < ' ' || s[i] == '"' || s[i] == '\\' || s[i] == 0x7f)
			return false;
	return true;
}

static bool
bridge_known(const struct nft_model *m, const char *bridge)
{
	for (size_t i = 0; i < m->n_networks; i++)
		if (streq(m->networks[i].bridge, bridge))
			return true;
	return false;
}

static bool
cidrs_ok(const struct nft_cidr *v, size_t n)
{
	if (n > NFT_MAX_POLICY || (n && !v))
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i].prefix > 32)
			return false;
	return true;
}

static int
machine_check(const struct nft_model *m, const struct nft_machine *mc, struct err *err)
{
	if (mc->mode == NFT_MODE_NONE)
		return 0;
	if (!comment_ok(mc->name))
		return err_set(err, ERR_INVALID, "name", EINVAL, "nftables: bad machine name");
	if (!ifname_ok(mc->veth_host) || !ifname_ok(mc->bridge) || mc->ip == 0)
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "nftables: machine '%s': bad interface or address", mc->name);
	if (!bridge_known(m, mc->bridge))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "nftables: machine '%s': bridge '%s' is not a sistemo network",
			       mc->name, mc->bridge);
	if (mc->mode != NFT_MODE_BRIDGE && mc->mode != NFT_MODE_ISOLATED)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "nftables: machine '%s': bad mode",
			       mc->name);
	if (!cidrs_ok(mc->allow_from, mc->n_allow_from) ||
	    !cidrs_ok(mc->egress_allow, mc->n_egress_allow))
		return err_set(err, ERR_INVALID, NULL, EINVAL,
			       "nftables: machine '%s': bad or more than %d policy entries",
			       mc->name, NFT_MAX_POLICY);
	return 0;
}

static int
port_check(const struct nft_port *p, struct err *err)
{
	if (!p || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP) || p->host_port == 0 ||
	    p->machine_port == 0 || p->machine_ip == 0)
		return err_set(err, ERR_INVALID, "port", EINVAL, "nftables: bad port mapping");
	return 0;
}

static int
model_check(const struct nft_model *m, struct err *err)
{
	if (!m || m->n_networks > NFT_MAX_NETWORKS || m->n_machines > NFT_MAX_MACHINES ||
	    m->n_ports > NFT_MAX_PORTS || m->n_guarded > NFT_MAX_GUARDED ||
	    (m->n_networks && !m->networks) || (m->n_machines && !m->machines) ||
	    (m->n_ports && !m->ports) || (m->n_guarded && !m->guarded_ports))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "nftables: bad or oversized model");
	for (size_t i = 0; i < m->n_networks; i++)
		if (!comment_ok(m->networks[i].name) || !ifname_ok(m->networks[i].bridge) ||
		    m->networks[i].prefix > 32)
			return err_set(err, ERR_INVALID, NULL, EINVAL,
				       "nftables: network %zu: bad name, bridge or prefix", i);
	for (size_t i = 0; i < m->n_machines; i++) {
		int r = machine_check(m, &m->machines[i], err);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < m->n_ports; i++) {
		int r = port_check(&m->ports[i], err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- table inet sistemo: sets ----------------------------------------------------------- */

/* A port's map element: which map, key and data as the kernel compares them (every field of
 * a concatenation padded to 4 bytes). */
struct port_elem {
	const char *map;
	uint8_t key[12], data[8];
	uint32_t klen;
};

static void
port_elem(const struct nft_port *p, struct port_elem *ret)
{
	uint32_t host = htonl(p->host_ip), ip = htonl(p->machine_ip);
	uint16_t hport = htons(p->host_port), mport = htons(p->machine_port);
	uint8_t *k = ret->key;

	memset(ret, 0, sizeof(*ret));
	ret->map = p->host_ip ? "ports_ip" : "ports";
	if (p->host_ip) {
		memcpy(k, &host, 4);
		k += 4;
	}
	k[0] = p->proto;
	memcpy(k + 4, &hport, 2);
	ret->klen = p->host_ip ? 12 : 8;
	memcpy(ret->data, &ip, 4);
	memcpy(ret->data + 4, &mport, 2);
}

static void
ports_add(struct build *bd, const struct nft_port *ports, size_t n, const char *map,
	  uint32_t map_id)
{
	struct elems w = {.bd = bd, .set = map, .set_id = map_id, .type = NFT_MSG_NEWSETELEM};
	struct port_elem pe;

	for (size_t i = 0; i < n; i++) {
		port_elem(&ports[i], &pe);
		if (streq(pe.map, map))
			elems_add(&w, pe.key, pe.klen, pe.data, sizeof(pe.data), 0);
	}
	elems_flush(&w);
}

struct range {
	uint32_t lo, hi;
};

static int
range_cmp(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Interval set elements, as nft writes them: a start element per range and an end element
 * (flag INTERVAL_END) just past it, overlapping ranges merged first (adjacent ones share a
 * key: one end, one start), and an end element at 0.0.0.0 when nothing starts there. */
static void
subnets_add(struct build *bd, const struct nft_model *m, uint32_t id)
{
	struct elems w = {.bd = bd, .set = "subnets", .set_id = id, .type = NFT_MSG_NEWSETELEM};
	cleanup_free struct range *v = calloc(m->n_networks + 1, sizeof(*v));
	size_t n = 0;

	if (!v) {
		bd->b->error = -ENOMEM;
		return;
	}
	for (size_t i = 0; i < m->n_networks; i++) {
		uint32_t mask = m->networks[i].prefix ? ~0u << (32 - m->networks[i].prefix) : 0;
		v[n].lo = m->networks[i].subnet & mask;
		v[n++].hi = (m->networks[i].subnet & mask) | ~mask;
	}
	qsort(v, n, sizeof(*v), range_cmp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (k && v[i].lo <= v[k - 1].hi) {
			if (v[i].hi > v[k - 1].hi)
				v[k - 1].hi = v[i].hi;
		} else {
			v[k++] = v[i];
		}
	}
	uint32_t zero = 0;
	if (k && v[0].lo != 0)
		elems_add(&w, &zero, 4, NULL, 0, NFT_SET_ELEM_INTERVAL_END);
	for (size_t i = 0; i < k; i++) {
		uint32_t lo = htonl(v[i].lo), end = htonl(v[i].hi + 1);
		elems_add(&w, &lo, 4, NULL, 0, 0);
		if (v[i].hi != UINT32_MAX)
			elems_add(&w, &end, 4, NULL, 0, NFT_SET_ELEM_INTERVAL_END);
	}
	elems_flush(&w);
}

/*   set bridges { type ifname }    set subnets { type ipv4_addr; flags interval }
 *   set guarded { type inet_service }
 *   map ports    { type inet_proto . inet_service : ipv4_addr . inet_service }
 *   map ports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service } */
static void
inet_sets(struct build *bd, const struct nft_model *m)
{
	static const struct set_def defs[] = {
		{.name = "bridges", .key_type = TYPE_IFNAME, .key_len = IFNAMSIZ, .byteorder = 1},
		{.name = "subnets",
		 .flags = NFT_SET_INTERVAL,
		 .key_type = TYPE_IPADDR,
		 .key_len = 4,
		 .byteorder = 2},
		{.name = "guarded", .key_type = TYPE_INET_SERVICE, .key_len = 2, .byteorder = 2},
		{.name = "ports",
		 .key_type = CONCAT2(TYPE_INET_PROTOCOL, TYPE_INET_SERVICE),
		 .key_len = 8,
		 .data_type = CONCAT2(TYPE_IPADDR, TYPE_INET_SERVICE),
		 .data_len = 8},
		{.name = "ports_ip",
		 .key_type = CONCAT3(TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE),
		 .key_len = 12,
		 .data_type = CONCAT2(TYPE_IPADDR, TYPE_INET_SERVICE),
		 .data_len = 8},
	};
	uint32_t id[ARRAY_SIZE(defs)];

	for (size_t i = 0; i < ARRAY_SIZE(defs); i++)
		id[i] = set_add(bd, &defs[i]);
	struct elems w = {.bd = bd, .set = "bridges", .set_id = id[0], .type = NFT_MSG_NEWSETELEM};
	for (size_t i = 0; i < m->n_networks; i++) {
		char name[IFNAMSIZ] = {0};
		memcpy(name, m->networks[i].bridge, strlen(m->networks[i].bridge));
		elems_add(&w, name, sizeof(name), NULL, 0, 0);
	}
	elems_flush(&w);
	subnets_add(bd, m, id[1]);
	w = (struct elems){.bd = bd, .set = "guarded", .set_id = id[2], .type = NFT_MSG_NEWSETELEM};
	for (size_t i = 0; i < m->n_guarded; i++) {
		uint16_t port = htons(m->guarded_ports[i]);
		elems_add(&w, &port, sizeof(port), NULL, 0, 0);
	}
	elems_flush(&w);
	ports_add(bd, m->ports, m->n_ports, "ports", id[3]);
	ports_add(bd, m->ports, m->n_ports, "ports_ip", id[4]);
}

/* ---- table inet sistemo: chains and rules ----------------------------------------------- */

static bool
has_egress_chain(const struct nft_machine *mc)
{
	return mc->mode == NFT_MODE_BRIDGE && mc->n_egress_allow > 0;
}

static void
chain_name(char *buf, size_t size, const char *prefix, const struct nft_machine *mc)
{
	snprintf(buf, size, "%s-%s", prefix, mc->veth_host);
}

static void
inet_chains(struct build *bd, const struct nft_model *m)
{
	char name[64];

	chain_add(bd, "prerouting", "nat", NF_INET_PRE_ROUTING, PRIO_DSTNAT);
	chain_add(bd, "output", "nat", NF_INET_LOCAL_OUT, PRIO_DSTNAT);
	chain_add(bd, "postrouting", "nat", NF_INET_POST_ROUTING, PRIO_SRCNAT);
	chain_add(bd, "input", "filter", NF_INET_LOCAL_IN, PRIO_FILTER);
	chain_add(bd, "forward", "filter", NF_INET_FORWARD, PRIO_FILTER - 10);
	chain_add(bd, "expose", NULL, 0, 0);
	chain_add(bd, "SISTEMO-ISOLATION", NULL, 0, 0);
	for (size_t i = 0; i < m->n_machines; i++) {
		if (!has_egress_chain(&m->machines[i]))
			continue;
		chain_name(name, sizeof(name), "egress", &m->machines[i]);
		chain_add(bd, name, NULL, 0, 0);
	}
}

/*   prerouting: meta nfproto ipv4 fib daddr type local jump expose    (other hosts)
 *   output:     meta nfproto ipv4 fib daddr type local jump expose    (the host itself)
 *   expose:     dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
 *               dnat ip to meta l4proto . th dport map @ports
 * Only traffic addressed to the host is translated: a machine's own connection to some
 * other host's port 80 is never hijacked. */
static void
inet_nat_in(struct build *bd)
{
	static const char *const hooks[] = {"prerouting", "output"};
	struct rb rb;

	for (size_t i = 0; i < ARRAY_SIZE(hooks); i++) {
		rb_start(&rb, bd);
		m_ipv4(&rb);
		x_fib_daddr_local(&rb);
		x_verdict(&rb, NFT_JUMP, "expose");
		rb_end(&rb, hooks[i], NULL);
	}
	rb_start(&rb, bd);
	m_ipv4(&rb);
	x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, IP_DADDR, 4, REG_A);
	x_meta(&rb, NFT_META_L4PROTO, REG_B);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_C);
	x_lookup(&rb, REG_A, "ports_ip", 0, REG_A, false);
	x_dnat(&rb);
	rb_end(&rb, "expose", NULL);

	rb_start(&rb, bd);
	x_meta(&rb, NFT_META_L4PROTO, REG_A);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_B);
	x_lookup(&rb, REG_A, "ports", 0, REG_A, false);
	x_dnat(&rb);
	rb_end(&rb, "expose", NULL);
}

/*   ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade   localhost reach
 *   ct status dnat oifname @bridges ip saddr @subnets masquerade      hairpin
 *   ip saddr @subnets oifname != @bridges masquerade                  egress
 * The machine must answer through the host: to 127.0.0.1 it would answer itself, to a
 * machine of the same bridge directly, which the client would not recognise. */
static void
inet_nat_out(struct build *bd)
{
	struct rb rb;

	for (int hairpin = 0; hairpin < 2; hairpin++) {
		rb_start(&rb, bd);
		m_ct_bits(&rb, NFT_CT_STATUS, IPS_DST_NAT);
		m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", false);
		m_ipv4(&rb);
		if (hairpin)
			m_ip_in(&rb, IP_SADDR, "subnets", false);
		else
			m_ip(&rb, IP_SADDR, INADDR_LOOPBACK, 8);
		x_masq(&rb);
		rb_end(&rb, "postrouting", NULL);
	}
	rb_start(&rb, bd);
	m_ipv4(&rb);
	m_ip_in(&rb, IP_SADDR, "subnets", false);
	m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", true);
	x_masq(&rb);
	rb_end(&rb, "postrouting", NULL);
}

/*   input: iifname @bridges meta l4proto { tcp, udp } th dport @guarded drop */
static void
inet_input(struct build *bd)
{
	static const uint8_t tcp_udp[] = {IPPROTO_TCP, IPPROTO_UDP};
	struct rb rb;

	rb_start(&rb, bd);
	m_ifname_in(&rb, NFT_META_IIFNAME, "bridges", false);
	m_l4proto_in(&rb, tcp_udp, ARRAY_SIZE(tcp_udp), false);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_A);
	x_lookup(&rb, REG_A, "guarded", 0, 0, false);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, "input", NULL);
}

/* What leaves a machine's network, per machine with a policy:
 *   iifname "B" ip saddr M oifname != "B" drop                 isolated
 *   iifname "B" ip saddr M oifname != "B" jump egress-vh-M     egress allow list
 *   egress-vh-M: ip daddr A/P [meta l4proto { tcp, udp } th dport N] return ...; drop
 * Placed before `ct status dnat accept`: a policy also covers reaching another network's
 * exposed port through a host address. */
static void
forward_egress(struct build *bd, const struct nft_machine *mc)
{
	char chain[64];
	struct rb rb;

	if (mc->mode == NFT_MODE_NONE || (mc->mode == NFT_MODE_BRIDGE && mc->n_egress_allow == 0))
		return;
	chain_name(chain, sizeof(chain), "egress", mc);
	rb_start(&rb, bd);
	m_ifname(&rb, NFT_META_IIFNAME, NFT_CMP_EQ, mc->bridge);
	m_ipv4(&rb);
	m_ip(&rb, IP_SADDR, mc->ip, 32);
	m_ifname(&rb, NFT_META_OIFNAME, NFT_CMP_NEQ, mc->bridge);
	if (mc->mode == NFT_MODE_ISOLATED) {
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, "forward", mc->name);
		return;
	}
	x_verdict(&rb, NFT_JUMP, chain);
	rb_end(&rb, "forward", mc->name);
	for (size_t i = 0; i < mc->n_egress_allow; i++) {
		const struct nft_cidr *c = &mc->egress_allow[i];
		rb_start(&rb, bd);
		m_ipv4(&rb);
		m_ip(&rb, IP_DADDR, c->addr, c->prefix);
		m_tcp_udp_dport(&rb, c->port);
		x_verdict(&rb, NFT_RETURN, NULL);
		rb_end(&rb, chain, NULL);
	}
	rb_start(&rb, bd);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, chain, NULL);
}

/* Who may open connections to a machine with an allow_from list, when routed (from another
 * network, the LAN); the bridge table covers its own network:
 *   ip daddr M ip saddr A/P [meta l4proto { tcp, udp } th dport N] accept ...
 *   ip daddr M drop */
static void
forward_allow_from(struct build *bd, const struct nft_machine *mc)
{
	struct rb rb;

	if (mc->mode == NFT_MODE_NONE || mc->n_allow_from == 0)
		return;
	for (size_t i = 0; i < mc->n_allow_from; i++) {
		const struct nft_cidr *c = &mc->allow_from[i];
		rb_start(&rb, bd);
		m_ipv4(&rb);
		m_ip(&rb, IP_DADDR, mc->ip, 32);
		m_ip(&rb, IP_SADDR, c->addr, c->prefix);
		m_tcp_udp_dport(&rb, c->port);
		a_mark_accept(&rb);
		rb_end(&rb, "forward", mc->name);
	}
	rb_start(&rb, bd);
	m_ipv4(&rb);
	m_ip(&rb, IP_DADDR, mc->ip, 32);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, "forward", mc->name);
}

/*   iifname != @bridges oifname != @bridges return     not ours: left to the others
 *   meta nfproto ipv6 iifname @bridges oifname != @bridges drop
 *   meta nfproto ipv6 iifname != @bridges oifname @bridges drop
 *   ct state established,related mark accept
 * Machines have no IPv6 beyond their link: routed, it would bypass every IPv4 policy. */
static void
forward_head(struct build *bd)
{
	uint8_t ipv6 = NFPROTO_IPV6;
	struct rb rb;

	rb_start(&rb, bd);
	m_ifname_in(&rb, NFT_META_IIFNAME, "bridges", true);
	m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", true);
	x_verdict(&rb, NFT_RETURN, NULL);
	rb_end(&rb, "forward", NULL);
	for (int inbound = 0; inbound < 2; inbound++) {
		rb_start(&rb, bd);
		x_meta(&rb, NFT_META_NFPROTO, REG_A);
		x_cmp(&rb, REG_A, NFT_CMP_EQ, &ipv6, sizeof(ipv6));
		m_ifname_in(&rb, NFT_META_IIFNAME, "bridges", inbound);
		m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", !inbound);
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, "forward", NULL);
	}
	rb_start(&rb, bd);
	m_ct_bits(&rb, NFT_CT_STATE,
		  NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED));
	a_mark_accept(&rb);
	rb_end(&rb, "forward", NULL);
}

/*   <forward_head>
 *   <per machine: isolated mode, egress allow lists>
 *   ct status dnat mark accept                        exposed ports, from anywhere
 *   iifname @bridges oifname != @bridges tcp dport { 25, 465, 587 } drop
 *   <per machine: allow_from>
 *   jump SISTEMO-ISOLATION
 *   mark accept
 * `mark accept` sets NFT_MARK_ACCEPTED, which foreign drop-policy chains accept. The SMTP
 * block sits where traffic is routed: in a machine's own namespace it is bridged, and a rule
 * there would never see it. */
static void
inet_forward(struct build *bd, const struct nft_model *m)
{
	struct rb rb;

	forward_head(bd);
	for (size_t i = 0; i < m->n_machines; i++)
		forward_egress(bd, &m->machines[i]);
	rb_start(&rb, bd);
	m_ct_bits(&rb, NFT_CT_STATUS, IPS_DST_NAT);
	a_mark_accept(&rb);
	rb_end(&rb, "forward", NULL);
	if (!m->allow_smtp) {
		rb_start(&rb, bd);
		m_ifname_in(&rb, NFT_META_IIFNAME, "bridges", false);
		m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", true);
		m_l4proto(&rb, IPPROTO_TCP);
		x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_A);
		x_lookup(&rb, REG_A, "__set%d",
			 anon_set(bd, TYPE_INET_SERVICE, 2, SMTP_PORTS, ARRAY_SIZE(SMTP_PORTS)), 0,
			 false);
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, "forward", NULL);
	}
	for (size_t i = 0; i < m->n_machines; i++)
		forward_allow_from(bd, &m->machines[i]);
	rb_start(&rb, bd);
	x_verdict(&rb, NFT_JUMP, "SISTEMO-ISOLATION");
	rb_end(&rb, "forward", NULL);
	rb_start(&rb, bd);
	a_mark_accept(&rb);
	rb_end(&rb, "forward", NULL);
}

/*   SISTEMO-ISOLATION: iifname "B" oifname @bridges oifname != "B" drop   (per bridge) */
static void
inet_isolation(struct build *bd, const struct nft_model *m)
{
	struct rb rb;

	for (size_t i = 0; i < m->n_networks; i++) {
		rb_start(&rb, bd);
		m_ifname(&rb, NFT_META_IIFNAME, NFT_CMP_EQ, m->networks[i].bridge);
		m_ifname_in(&rb, NFT_META_OIFNAME, "bridges", false);
		m_ifname(&rb, NFT_META_OIFNAME, NFT_CMP_NEQ, m->networks[i].bridge);
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, "SISTEMO-ISOLATION", m->networks[i].name);
	}
}

static void
inet_table(struct batch *b, const struct nft_model *m)
{
	struct build bd = {.b = b, .family = NFPROTO_INET};

	table_replace(&bd);
	inet_sets(&bd, m);
	inet_chains(&bd, m);
	inet_nat_in(&bd);
	inet_nat_out(&bd);
	inet_input(&bd);
	inet_forward(&bd, m);
	inet_isolation(&bd, m);
}

/* ---- table bridge sistemo ---------------------------------------------------------------- */

static bool
is_policed(const struct nft_machine *mc)
{
	return mc->mode != NFT_MODE_NONE && mc->n_allow_from > 0;
}

/*   set veths   { type ifname }                 every machine's port
 *   set sources { type ifname . ipv4_addr }     each port with its machine's address
 *   set policed { type ifname }                 ports of machines with allow_from
 *   set udp_flows { type ipv4_addr . ipv4_addr . inet_service . inet_service;
 *                   size 65536; flags dynamic,timeout; timeout 2m } */
static void
bridge_sets(struct build *bd, const struct nft_model *m)
{
	static const struct set_def defs[] = {
		{.name = "veths", .key_type = TYPE_IFNAME, .key_len = IFNAMSIZ, .byteorder = 1},
		{.name = "sources", .key_type = CONCAT2(TYPE_IFNAME, TYPE_IPADDR), .key_len = 20},
		{.name = "policed", .key_type = TYPE_IFNAME, .key_len = IFNAMSIZ, .byteorder = 1},
		{.name = "udp_flows",
		 .flags = NFT_SET_TIMEOUT | NFT_SET_EVAL,
		 .key_type =
			 CONCAT4(TYPE_IPADDR, TYPE_IPADDR, TYPE_INET_SERVICE, TYPE_INET_SERVICE),
		 .key_len = 16,
		 .timeout_ms = UDP_FLOW_TIMEOUT_MS,
		 .size = UDP_FLOWS_MAX},
	};
	uint32_t id[ARRAY_SIZE(defs)];

	for (size_t i = 0; i < ARRAY_SIZE(defs); i++)
		id[i] = set_add(bd, &defs[i]);
	struct elems veths = {
		.bd = bd, .set = "veths", .set_id = id[0], .type = NFT_MSG_NEWSETELEM};
	struct elems src = {
		.bd = bd, .set = "sources", .set_id = id[1], .type = NFT_MSG_NEWSETELEM};
	struct elems pol = {
		.bd = bd, .set = "policed", .set_id = id[2], .type = NFT_MSG_NEWSETELEM};
	for (size_t i = 0; i < m->n_machines; i++) {
		const struct nft_machine *mc = &m->machines[i];
		uint8_t key[20] = {0};
		uint32_t ip = htonl(mc->ip);
		if (mc->mode == NFT_MODE_NONE)
			continue;
		memcpy(key, mc->veth_host, strlen(mc->veth_host));
		memcpy(key + IFNAMSIZ, &ip, 4);
		elems_add(&veths, key, IFNAMSIZ, NULL, 0, 0);
		elems_add(&src, key, sizeof(key), NULL, 0, 0);
		if (is_policed(mc))
			elems_add(&pol, key, IFNAMSIZ, NULL, 0, 0);
	}
	elems_flush(&veths);
	elems_flush(&src);
	elems_flush(&pol);
}

/* A machine's frames carry its own address:
 *   iifname @veths meta protocol ip iifname . ip saddr != @sources drop
 *   iifname @veths meta protocol arp iifname . arp saddr ip != @sources drop */
static void
bridge_antispoof(struct build *bd)
{
	static const uint16_t protos[] = {ETH_P_IP, ETH_P_ARP};
	static const uint32_t offsets[] = {IP_SADDR, 14}; /* arp: 8 + 6-byte sender MAC */
	struct rb rb;

	for (size_t i = 0; i < ARRAY_SIZE(protos); i++) {
		uint16_t proto = htons(protos[i]);
		rb_start(&rb, bd);
		m_ifname_in(&rb, NFT_META_IIFNAME, "veths", false);
		x_meta(&rb, NFT_META_PROTOCOL, REG_A);
		x_cmp(&rb, REG_A, NFT_CMP_EQ, &proto, sizeof(proto));
		x_meta(&rb, NFT_META_IIFNAME, REG_A);
		x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, offsets[i], 4, REG_AFTER_IFNAME);
		x_lookup(&rb, REG_A, "sources", 0, 0, true);
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, "prerouting", NULL);
	}
}

/*   meta mark & M == M accept    br_netfilter is loaded and the inet forward chain accepted it
 *                                (an exposed port reached through br_netfilter's bridged DNAT)
 *   iifname @policed meta protocol ip meta l4proto udp
 *           update @udp_flows { ip saddr . ip daddr . udp sport . udp dport }
 *   oifname "vh-M" jump allow-vh-M                         (per machine with allow_from) */
static void
bridge_forward(struct build *bd, const struct nft_model *m)
{
	uint32_t mark = NFT_MARK_ACCEPTED, zero = 0;
	char chain[64];
	struct rb rb;

	rb_start(&rb, bd);
	x_meta(&rb, NFT_META_MARK, REG_A);
	x_bitwise(&rb, REG_A, sizeof(mark), &mark, &zero);
	x_cmp(&rb, REG_A, NFT_CMP_EQ, &mark, sizeof(mark));
	x_verdict(&rb, NF_ACCEPT, NULL);
	rb_end(&rb, "forward", NULL);
	rb_start(&rb, bd);
	m_ifname_in(&rb, NFT_META_IIFNAME, "policed", false);
	m_ipv4(&rb);
	m_l4proto(&rb, IPPROTO_UDP);
	x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, IP_SADDR, 4, REG_A);
	x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, IP_DADDR, 4, REG_B);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, REG_C);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_D);
	x_dynset_update(&rb, "udp_flows", REG_A);
	rb_end(&rb, "forward", NULL);
	for (size_t i = 0; i < m->n_machines; i++) {
		const struct nft_machine *mc = &m->machines[i];
		if (!is_policed(mc))
			continue;
		chain_name(chain, sizeof(chain), "allow", mc);
		rb_start(&rb, bd);
		m_ifname(&rb, NFT_META_OIFNAME, NFT_CMP_EQ, mc->veth_host);
		x_verdict(&rb, NFT_JUMP, chain);
		rb_end(&rb, "forward", mc->name);
	}
}

/* The stateless part of one machine's allow-vh-M chain, after its allowed sources:
 *   tcp flags & (syn | ack) == syn drop
 *   icmp type echo-request drop;  icmpv6 type echo-request drop
 *   meta protocol ip ip daddr . ip saddr . udp dport . udp sport @udp_flows accept
 *   meta l4proto != { tcp, icmp, ipv6-icmp } drop */
static void
allow_tail(struct build *bd, const char *chain)
{
	static const uint8_t keep[] = {IPPROTO_TCP, IPPROTO_ICMP, IPPROTO_ICMPV6};
	static const uint8_t echo[][2] = {{IPPROTO_ICMP, 8}, {IPPROTO_ICMPV6, 128}};
	uint8_t syn_ack = 0x12, syn = 0x02, zero = 0;
	struct rb rb;

	rb_start(&rb, bd);
	m_l4proto(&rb, IPPROTO_TCP);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 13, 1, REG_A);
	x_bitwise(&rb, REG_A, 1, &syn_ack, &zero);
	x_cmp(&rb, REG_A, NFT_CMP_EQ, &syn, 1);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, chain, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(echo); i++) {
		rb_start(&rb, bd);
		m_l4proto(&rb, echo[i][0]);
		x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, REG_A);
		x_cmp(&rb, REG_A, NFT_CMP_EQ, &echo[i][1], 1);
		x_verdict(&rb, NF_DROP, NULL);
		rb_end(&rb, chain, NULL);
	}
	rb_start(&rb, bd);
	m_ipv4(&rb);
	m_l4proto(&rb, IPPROTO_UDP);
	x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, IP_DADDR, 4, REG_A);
	x_payload(&rb, NFT_PAYLOAD_NETWORK_HEADER, IP_SADDR, 4, REG_B);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG_C);
	x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, REG_D);
	x_lookup(&rb, REG_A, "udp_flows", 0, 0, false);
	x_verdict(&rb, NF_ACCEPT, NULL);
	rb_end(&rb, chain, NULL);
	rb_start(&rb, bd);
	m_l4proto_in(&rb, keep, ARRAY_SIZE(keep), true);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, chain, NULL);
}

/* allow-vh-M: frames to machine M from its own network.
 *   meta protocol != { arp, ip, ip6 } drop
 *   meta protocol ip ip saddr A/P [meta l4proto { tcp, udp } th dport N] accept ...
 *   <allow_tail> */
static void
bridge_allow(struct build *bd, const struct nft_machine *mc)
{
	const uint16_t ethertypes[] = {htons(ETH_P_ARP), htons(ETH_P_IP), htons(ETH_P_IPV6)};
	char chain[64];
	struct rb rb;

	chain_name(chain, sizeof(chain), "allow", mc);
	chain_add(bd, chain, NULL, 0, 0);
	rb_start(&rb, bd);
	x_meta(&rb, NFT_META_PROTOCOL, REG_A);
	x_lookup(&rb, REG_A, "__set%d",
		 anon_set(bd, TYPE_ETHERTYPE, 2, ethertypes, ARRAY_SIZE(ethertypes)), 0, true);
	x_verdict(&rb, NF_DROP, NULL);
	rb_end(&rb, chain, NULL);
	for (size_t i = 0; i < mc->n_allow_from; i++) {
		const struct nft_cidr *c = &mc->allow_from[i];
		rb_start(&rb, bd);
		m_ipv4(&rb);
		m_ip(&rb, IP_SADDR, c->addr, c->prefix);
		m_tcp_udp_dport(&rb, c->port);
		x_verdict(&rb, NF_ACCEPT, NULL);
		rb_end(&rb, chain, NULL);
	}
	allow_tail(bd, chain);
}

static void
bridge_table(struct batch *b, const struct nft_model *m)
{
	struct build bd = {.b = b, .family = NFPROTO_BRIDGE};

	table_replace(&bd);
	bridge_sets(&bd, m);
	chain_add(&bd, "prerouting", "filter", NF_BR_PRE_ROUTING, PRIO_BRIDGE_FILTER);
	chain_add(&bd, "forward", "filter", NF_BR_FORWARD, PRIO_BRIDGE_AFTER_BRNF);
	for (size_t i = 0; i < m->n_machines; i++)
		if (is_policed(&m->machines[i]))
			bridge_allow(&bd, &m->machines[i]);
	bridge_antispoof(&bd);
	bridge_forward(&bd, m);
}

/* ---- compat rules in foreign chains ----------------------------------------------------- */

/*   nft delete rule F T C handle H */
static void
rule_del(struct batch *b, const struct foreign *f, uint64_t handle)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r) {
		b->error = -ENOMEM;
		return;
	}
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, f->table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, f->chain);
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, f->family);
	nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, handle);
	struct nlmsghdr *nlh = batch_msg(b, NFT_MSG_DELRULE, f->family, 0, ROOM_MSG);
	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		batch_commit(b, nlh, "delete rule from chain '%s %s %s'", family_name(f->family),
			     f->table, f->chain);
	}
	nftnl_rule_free(r);
}

/*   nft insert rule F T C meta mark & M == M accept comment "sistemo" */
static void
compat_insert(struct batch *b, const struct foreign *f)
{
	struct build bd = {.b = b, .family = f->family};
	uint32_t mark = NFT_MARK_ACCEPTED, zero = 0;
	struct rb rb;

	rb_start(&rb, &bd);
	x_meta(&rb, NFT_META_MARK, REG_A);
	x_bitwise(&rb, REG_A, sizeof(mark), &mark, &zero);
	x_cmp(&rb, REG_A, NFT_CMP_EQ, &mark, sizeof(mark));
	x_verdict(&rb, NF_ACCEPT, NULL);
	rule_put(&rb, f->family, f->table, f->chain, 0, NFT_COMPAT_COMMENT);
}

/* Every drop-policy chain ends up with exactly one rule of ours, at its head; other chains
 * with none. keep: false to remove them all (nft_remove). */
static void
compat_sync(struct batch *b, const struct foreign_list *fl, bool keep)
{
	for (size_t i = 0; i < fl->n; i++) {
		const struct foreign *f = &fl->v[i];
		bool want = keep && f->drop;
		if (want && f->n_ours == 1 && f->ours_first)
			continue;
		for (size_t k = 0; k < f->n_ours; k++)
			rule_del(b, f, f->ours[k]);
		if (want)
			compat_insert(b, f);
	}
}

/* ---- the API ----------------------------------------------------------------------------- */

int
nft_apply(const struct nft_model *m, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *nl = NULL;
	cleanup_free struct foreign_list *fl = calloc(1, sizeof(*fl));
	struct batch b;
	int r = model_check(m, err);

	if (r < 0)
		return r;
	if (!fl)
		return fail(err, -ENOMEM, "apply ruleset");
	if ((r = nl_open(&nl)) < 0)
		return fail(err, r, "apply ruleset: open netlink socket");
	if ((r = foreign_scan(nl, fl)) < 0) {
		foreign_clear(fl);
		return fail(err, r, "apply ruleset: list forward chains");
	}
	batch_init(&b);
	inet_table(&b, m);
	bridge_table(&b, m);
	compat_sync(&b, fl, true);
	foreign_clear(fl);
	r = batch_run(nl, &b, "apply ruleset", err);
	batch_free(&b);
	return r;
}

static void
port_describe(const struct nft_port *p, char *buf, size_t size)
{
	char host[INET_ADDRSTRLEN] = "*";
	uint32_t be = htonl(p->host_ip);

	if (p->host_ip)
		inet_ntop(AF_INET, &be, host, sizeof(host));
	snprintf(buf, size, "%s %s:%u", p->proto == IPPROTO_TCP ? "tcp" : "udp", host,
		 p->host_port);
}

/* The socket port changes go through, kept open: closing a netlink socket that changed
 * nf_tables waits for an RCU grace period (~10 ms here), which would be most of an unexpose.
 * Reopened after any error (no stale answer is ever read) and when the calling thread is in
 * another network namespace than the one it was opened in. Sequence numbers keep growing, so
 * an answer always names the batch it belongs to. */
static struct {
	pthread_mutex_t lock;
	struct mnl_socket *nl;
	ino_t netns;
	uint32_t seq;
} port_sock = {.lock = PTHREAD_MUTEX_INITIALIZER};

static ino_t
thread_netns(void)
{
	struct stat st;

	return stat("/proc/thread-self/ns/net", &st) == 0 ? st.st_ino : 0;
}

/* One element in or out of its map, in one batch of one message, through port_sock (its lock
 * held). missing_ok: a missing element (or table) is success. */
static int
port_change_locked(const struct nft_port *p, uint16_t type, bool missing_ok, const char *what,
		   struct err *err)
{
	struct build bd = {.family = NFPROTO_INET};
	struct err local = {0};
	struct port_elem pe;
	struct batch b;
	ino_t ns = thread_netns();
	int r;

	if (port_sock.nl && (ns == 0 || ns != port_sock.netns)) {
		mnl_socket_close(port_sock.nl);
		port_sock.nl = NULL;
	}
	if (!port_sock.nl) {
		if ((r = nl_open(&port_sock.nl)) < 0)
			return fail(err, r, "%s: open netlink socket", what);
		port_sock.netns = ns;
	}
	/* 1..2^31, a batch takes two numbers (begin, the element, end: seq0 .. seq0 + 2) */
	port_sock.seq = port_sock.seq >= 0x7ffffff0u ? 1 : port_sock.seq + 4;
	batch_init_at(&b, port_sock.seq);
	bd.b = &b;
	port_elem(p, &pe);
	struct elems w = {.bd = &bd, .set = pe.map, .type = type};
	elems_add(&w, pe.key, pe.klen, type == NFT_MSG_NEWSETELEM ? pe.data : NULL, sizeof(pe.data),
		  0);
	elems_flush(&w);
	r = batch_run(port_sock.nl, &b, what, &local);
	batch_free(&b);
	if (r < 0) {
		mnl_socket_close(port_sock.nl);
		port_sock.nl = NULL;
	}
	if (r == -ENOENT && missing_ok)
		return 0;
	if (r < 0)
		return err_set(err, local.code, NULL, -r, "%s", local.msg);
	return 0;
}

static int
port_change(const struct nft_port *p, uint16_t type, bool missing_ok, struct err *err)
{
	char what[96], desc[48];
	int r = port_check(p, err);

	if (r < 0)
		return r;
	port_describe(p, desc, sizeof(desc));
	snprintf(what, sizeof(what), "%s port '%s'", type == NFT_MSG_NEWSETELEM ? "add" : "delete",
		 desc);
	pthread_mutex_lock(&port_sock.lock);
	r = port_change_locked(p, type, missing_ok, what, err);
	pthread_mutex_unlock(&port_sock.lock);
	return r;
}

int
nft_port_add(const struct nft_port *p, struct err *err)
{
	return port_change(p, NFT_MSG_NEWSETELEM, false, err);
}

int
nft_port_del(const struct nft_port *p, struct err *err)
{
	return port_change(p, NFT_MSG_DELSETELEM, true, err);
}

/* One `nft list table F sistemo` through libnftables, appended to out. */
static int
render_table(struct nft_ctx *ctx, const char *family, struct strbuf *out, struct err *err)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "list table %s " NFT_TABLE, family);
	if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
		const char *msg = nft_ctx_get_error_buffer(ctx);
		int len = msg ? (int)strcspn(msg, "\n") : 0;
		return err_set(err, ERR_INTERNAL, NULL, EIO, "nftables: render: %s: %.*s", cmd, len,
			       msg ? msg : "");
	}
	const char *text = nft_ctx_get_output_buffer(ctx);
	if (text && strbuf_append(out, text, strlen(text)) < 0)
		return fail(err, -ENOMEM, "render");
	return 0;
}

static int
render_compat(const struct foreign_list *fl, struct strbuf *out)
{
	for (size_t i = 0; i < fl->n; i++) {
		const struct foreign *f = &fl->v[i];
		if (f->n_ours == 0)
			continue;
		int r = strbuf_printf(
			out,
			"# %s chain %s %s %s (policy %s): meta mark & 0x%08x == 0x%08x "
			"accept comment \"%s\"\n",
			f->ours_first ? "at the head of" : "in", family_name(f->family), f->table,
			f->chain, f->drop ? "drop" : "accept", NFT_MARK_ACCEPTED, NFT_MARK_ACCEPTED,
			NFT_COMPAT_COMMENT);
		if (r < 0)
			return r;
	}
	return 0;
}

int
nft_render(struct strbuf *out, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *nl = NULL;
	cleanup_(nftctx) struct nft_ctx *ctx = NULL;
	cleanup_free struct foreign_list *fl = calloc(1, sizeof(*fl));
	struct tables_seen seen;
	int r;

	if (!fl)
		return fail(err, -ENOMEM, "render");
	if ((r = nl_open(&nl)) < 0 || (r = tables_list(nl, &seen)) < 0)
		return fail(err, r, "render: list tables");
	if (!seen.inet && !seen.bridge)
		return err_set(err, ERR_NOT_FOUND, NULL, ENOENT,
			       "nftables: render: no sistemo table is loaded");
	ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx || nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0)
		return fail(err, -ENOMEM, "render: libnftables context");
	if (seen.inet && (r = render_table(ctx, "inet", out, err)) < 0)
		return r;
	if (seen.bridge && (r = render_table(ctx, "bridge", out, err)) < 0)
		return r;
	r = foreign_scan(nl, fl);
	if (r == 0)
		r = render_compat(fl, out);
	foreign_clear(fl);
	return r < 0 ? fail(err, r, "render: compat rules") : 0;
}

static void
table_del(struct batch *b, uint16_t family)
{
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t) {
		b->error = -ENOMEM;
		return;
	}
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, family);
	struct nlmsghdr *nlh = batch_msg(b, NFT_MSG_DELTABLE, family, 0, ROOM_MSG);
	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		batch_commit(b, nlh, "delete table %s %s", family_name(family), NFT_TABLE);
	}
	nftnl_table_free(t);
}

int
nft_remove(struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *nl = NULL;
	cleanup_free struct foreign_list *fl = calloc(1, sizeof(*fl));
	struct tables_seen seen;
	struct batch b;
	int r;

	if (!fl)
		return fail(err, -ENOMEM, "remove ruleset");
	if ((r = nl_open(&nl)) < 0 || (r = tables_list(nl, &seen)) < 0)
		return fail(err, r, "remove ruleset: list tables");
	if ((r = foreign_scan(nl, fl)) < 0) {
		foreign_clear(fl);
		return fail(err, r, "remove ruleset: list forward chains");
	}
	batch_init(&b);
	if (seen.inet)
		table_del(&b, NFPROTO_INET);
	if (seen.bridge)
		table_del(&b, NFPROTO_BRIDGE);
	compat_sync(&b, fl, false);
	foreign_clear(fl);
	r = b.n || b.error ? batch_run(nl, &b, "remove ruleset", err) : 0;
	batch_free(&b);
	return r;
}
