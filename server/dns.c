#include "dns.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "log.h"
#include "macro.h"

#define DNS_PORT 53
#define HDR_LEN 12
#define MAX_HOPS 16 /* compression pointers followed in one name */
#define FLAG_QR 0x8000
#define FLAG_AA 0x0400
#define FLAG_RD 0x0100
#define FLAG_RA 0x0080
#define OPCODE_MASK 0x7800

#define MAX_LISTENERS 256
#define MAX_PENDING 1024           /* UDP queries forwarded and not answered yet */
#define MAX_PENDING_PER_CLIENT 256 /* so one machine cannot take the table from the others */
#define MAX_CONNS 64               /* TCP clients */
#define PENDING_MS 5000            /* a forwarded query is forgotten after this */
#define RETRY_MS 1000              /* then it goes to the next upstream */
#define TCP_IDLE_MS 10000
#define QUERY_MAX 4096 /* longer queries are not forwarded (UDP) or accepted (TCP) */
#define REPLY_MAX 512  /* our own replies: 287 bytes at most */
#define BATCH 64       /* datagrams or connections taken per wakeup and socket */
#define CONTROL_WAIT_S 5
#define MAX_RESOLV_LINES 10000

/* ---- packets ------------------------------------------------------------------------------- */

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint8_t *
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *
put32(uint8_t *p, uint32_t v)
{
	return put16(put16(p, v >> 16), v & 0xffff);
}

/* Appends a label to both forms of the name; -EBADMSG past 255 bytes in wire form (the dotted
 * form is then at most 253 characters). */
static int
label_add(struct dns_query *q, const uint8_t *label, size_t len, size_t *dotted)
{
	if (q->qname_len + 1 + len + 1 > sizeof(q->qname))
		return -EBADMSG;
	q->qname[q->qname_len++] = (uint8_t)len;
	memcpy(q->qname + q->qname_len, label, len);
	q->qname_len += len;
	if (*dotted)
		q->name[(*dotted)++] = '.';
	for (size_t i = 0; i < len; i++) {
		uint8_t c = label[i];
		if (c <= ' ' || c >= 0x7f || c == '.')
			q->plain = false;
		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c + ('a' - 'A'));
		q->name[(*dotted)++] = (char)(c > ' ' && c < 0x7f ? c : '?');
	}
	q->name[*dotted] = '\0';
	return 0;
}

/* Reads the name at off. Pointers may go anywhere past the header but are followed at most
 * MAX_HOPS times, and every label grows the name towards its limit: the walk always ends.
 * *ret_end is where the name ends in the packet. */
static int
name_read(const uint8_t *pkt, size_t len, size_t off, struct dns_query *q, size_t *ret_end)
{
	size_t end = 0, dotted = 0;
	unsigned hops = 0;

	q->qname_len = 0;
	q->name[0] = '\0';
	q->plain = true;
	for (unsigned step = 0; step < sizeof(q->qname) + MAX_HOPS; step++) {
		if (off >= len)
			return -EBADMSG;
		uint8_t c = pkt[off];
		if ((c & 0xc0) == 0xc0) {
			if (off + 2 > len || ++hops > MAX_HOPS)
				return -EBADMSG;
			if (!end)
				end = off + 2;
			off = (size_t)(c & 0x3f) << 8 | pkt[off + 1];
			if (off < HDR_LEN)
				return -EBADMSG;
			continue;
		}
		if (c & 0xc0) /* 0x40 and 0x80: extended and reserved label types */
			return -EBADMSG;
		if (c == 0) {
			q->qname[q->qname_len++] = 0;
			*ret_end = end ? end : off + 1;
			return 0;
		}
		if (off + 1 + c > len || label_add(q, pkt + off + 1, c, &dotted) < 0)
			return -EBADMSG;
		off += 1 + (size_t)c;
	}
	return -EBADMSG;
}

int
dns_query_parse(const uint8_t *pkt, size_t len, struct dns_query *ret)
{
	size_t end;

	if (len < HDR_LEN || get16(pkt + 2) & FLAG_QR)
		return -EINVAL;
	if (get16(pkt + 2) & OPCODE_MASK)
		return -EOPNOTSUPP;
	if (get16(pkt + 4) != 1)
		return -EBADMSG;
	ret->id = get16(pkt);
	ret->rd = get16(pkt + 2) & FLAG_RD;
	if (name_read(pkt, len, HDR_LEN, ret, &end) < 0 || end + 4 > len)
		return -EBADMSG;
	ret->qtype = get16(pkt + end);
	ret->qclass = get16(pkt + end + 2);
	return 0;
}

int
dns_reply_build(const struct dns_query *q, enum dns_rcode rcode, const uint32_t *addr, uint8_t *buf,
		size_t size)
{
	unsigned flags = FLAG_QR | FLAG_RA | (q->rd ? FLAG_RD : 0) | (unsigned)rcode;
	uint8_t *p = buf;

	if (q->qname_len > sizeof(q->qname) || HDR_LEN + q->qname_len + 4 + (addr ? 16 : 0) > size)
		return -ENOSPC;
	if (rcode != DNS_SERVFAIL)
		flags |= FLAG_AA;
	p = put16(put16(p, q->id), flags);
	p = put16(put16(put16(put16(p, 1), addr ? 1 : 0), 0), 0);
	memcpy(p, q->qname, q->qname_len);
	p = put16(put16(p + q->qname_len, q->qtype), q->qclass);
	if (addr) {
		p = put16(p, 0xc000 | HDR_LEN); /* the question's name */
		p = put32(put16(put16(p, DNS_TYPE_A), DNS_CLASS_IN), DNS_TTL_S);
		p = put32(put16(p, 4), *addr);
	}
	return (int)(p - buf);
}

int
dns_reply_error(const uint8_t *pkt, size_t len, enum dns_rcode rcode, uint8_t *buf, size_t size)
{
	unsigned flags;

	if (len < HDR_LEN)
		return -EINVAL;
	if (size < HDR_LEN)
		return -ENOSPC;
	flags = FLAG_QR | FLAG_RA | (get16(pkt + 2) & (OPCODE_MASK | FLAG_RD)) | (unsigned)rcode;
	memset(buf, 0, HDR_LEN);
	put16(put16(buf, get16(pkt)), flags);
	return HDR_LEN;
}

static bool
under_sistemo(const char *name)
{
	size_t n = strlen(name);

	return n > 8 && streq(name + n - 8, ".sistemo");
}

int
dns_answer(const struct dns_query *q, dns_lookup_fn lookup, void *ud, uint32_t client, uint8_t *buf,
	   size_t size)
{
	uint32_t addr = 0;
	int found = -1;

	if (streq(q->name, "sistemo")) /* the apex: it exists, with no records */
		return dns_reply_build(q, DNS_NOERROR, NULL, buf, size);
	if (q->plain && q->name[0])
		found = lookup(ud, q->name, client, &addr);
	if (found < 0 && !under_sistemo(q->name))
		return 0;
	if (found <= 0)
		return dns_reply_build(q, DNS_NXDOMAIN, NULL, buf, size);
	bool a = (q->qtype == DNS_TYPE_A || q->qtype == DNS_TYPE_ANY) &&
		 (q->qclass == DNS_CLASS_IN || q->qclass == DNS_CLASS_ANY);
	return dns_reply_build(q, DNS_NOERROR, a ? &addr : NULL, buf, size);
}

/* ---- resolv.conf --------------------------------------------------------------------------- */

/* Adds the address of a "nameserver <ipv4>" line to out[0..n); returns the new count. */
static size_t
nameserver_add(const char *line, uint32_t *out, size_t n, size_t max)
{
	char key[16], val[64];
	struct in_addr a;

	if (n >= max || sscanf(line, " %15s %63s", key, val) != 2 || !streq(key, "nameserver") ||
	    inet_pton(AF_INET, val, &a) != 1 || a.s_addr == INADDR_ANY)
		return n;
	for (size_t i = 0; i < n; i++)
		if (out[i] == ntohl(a.s_addr))
			return n;
	out[n] = ntohl(a.s_addr);
	return n + 1;
}

int
dns_upstreams_from_resolv_conf(const char *path, uint32_t *out, size_t max)
{
	FILE *f = fopen(path, "re");
	char line[256];
	size_t n = 0;
	bool line_start = true; /* the rest of an overlong line is not read as a line */

	if (!f)
		return -errno;
	for (unsigned i = 0; i < MAX_RESOLV_LINES && fgets(line, sizeof(line), f); i++) {
		if (line_start)
			n = nameserver_add(line, out, n, max);
		line_start = strchr(line, '\n') != NULL;
	}
	fclose(f);
	return (int)n;
}

/* ---- the server: state --------------------------------------------------------------------- */

struct listener {
	struct listener *next;
	uint32_t addr;
	uint16_t port;
	int udp, tcp;
};

/* A UDP query forwarded under an id of ours, waiting for an upstream's answer. */
struct pending {
	uint8_t *query; /* NULL: the slot is free */
	size_t len;
	uint16_t id, client_id;
	uint32_t laddr; /* the listener it came to: the answer leaves from there */
	struct sockaddr_in client;
	unsigned tries;
	int64_t retry_ms, expire_ms;
};

/* A TCP client. A name not ours goes to an upstream over TCP: one connection per query. */
enum conn_state { CONN_FREE, CONN_READ, CONN_CONNECT, CONN_UP_WRITE, CONN_UP_READ, CONN_WRITE };

struct conn {
	enum conn_state state;
	int fd, up;
	uint32_t laddr, client;
	uint8_t in[2 + QUERY_MAX]; /* the query with its length prefix */
	size_t in_len, up_off;
	uint8_t up_len[2];
	uint8_t *out; /* the reply with its length prefix */
	size_t out_len, out_off;
	unsigned tries;
	int64_t deadline_ms;
};

enum slot_kind { SLOT_CONTROL, SLOT_FORWARD, SLOT_UDP, SLOT_TCP, SLOT_CONN, SLOT_UP };

#define MAX_FDS (2 + 2 * MAX_LISTENERS + MAX_CONNS)

struct dns_server {
	dns_lookup_fn lookup;
	void *ud;
	pthread_t thread;
	bool started;
	int control; /* eventfd: wakes the thread */
	int fwd;     /* the one UDP socket queries are forwarded from */

	pthread_mutex_t lock; /* guards what follows, up to the thread's own state */
	pthread_cond_t synced;
	struct listener *listeners, *dead; /* dead: unlistened, for the thread to close */
	unsigned n_listeners;
	uint32_t upstreams[DNS_MAX_UPSTREAMS];
	size_t n_upstreams;
	uint64_t asked, applied; /* control generations */
	bool stop;

	/* the thread's own */
	struct listener *ls[MAX_LISTENERS];
	size_t n_ls;
	uint32_t up[DNS_MAX_UPSTREAMS]; /* upstreams, minus our own addresses */
	size_t n_up, preferred;         /* preferred: the last that answered */
	struct pending pending[MAX_PENDING];
	size_t n_pending;
	struct conn conns[MAX_CONNS];
	struct pollfd pfd[MAX_FDS];
	struct {
		enum slot_kind kind;
		void *obj;
	} slot[MAX_FDS];
	size_t n_pfd;
	uint8_t buf[65536];
	uint8_t reply[REPLY_MAX];
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
poke(struct dns_server *s)
{
	uint64_t one = 1;
	ssize_t n = write(s->control, &one, sizeof(one));

	(void)n; /* a full counter wakes the thread as well */
}

static struct sockaddr_in
sockaddr_of(uint32_t addr, uint16_t port)
{
	return (struct sockaddr_in){
		.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(addr)};
}

/* ---- forwarding over UDP ------------------------------------------------------------------- */

static struct pending *
pending_find(struct dns_server *s, uint16_t id)
{
	for (size_t i = 0; s->n_pending && i < MAX_PENDING; i++)
		if (s->pending[i].query && s->pending[i].id == id)
			return &s->pending[i];
	return NULL;
}

static void
pending_drop(struct dns_server *s, struct pending *p)
{
	free(p->query);
	p->query = NULL;
	s->n_pending--;
}

/* A random id no pending query uses: guessing it is what a spoofed answer would need. */
static int
pending_new_id(struct dns_server *s, uint16_t *ret)
{
	for (unsigned i = 0; i < 8; i++) {
		if (getrandom(ret, sizeof(*ret), 0) != sizeof(*ret))
			return -EIO;
		if (!pending_find(s, *ret))
			return 0;
	}
	return -EAGAIN;
}

/* Sends p to its next upstream, skipping those sendto refuses at once. */
static int
pending_send(struct dns_server *s, struct pending *p)
{
	while (p->tries < s->n_up) {
		struct sockaddr_in sa =
			sockaddr_of(s->up[(s->preferred + p->tries++) % s->n_up], DNS_PORT);
		p->retry_ms = now_ms() + RETRY_MS;
		if (sendto(s->fwd, p->query, p->len, 0, (struct sockaddr *)&sa, sizeof(sa)) >= 0)
			return 0;
	}
	return -EHOSTUNREACH;
}

/* Forwards a client's query unchanged but for its id. 0, or negative when it cannot (no
 * upstream, too many pending in all or from this client, too long): the client then gets
 * SERVFAIL. */
static int
forward(struct dns_server *s, uint32_t laddr, const struct sockaddr_in *client, const uint8_t *pkt,
	size_t len)
{
	struct pending *p = NULL;
	unsigned mine = 0;
	uint16_t id;

	for (size_t i = 0; i < MAX_PENDING; i++) {
		if (!s->pending[i].query && !p)
			p = &s->pending[i];
		else if (s->pending[i].query &&
			 s->pending[i].client.sin_addr.s_addr == client->sin_addr.s_addr)
			mine++;
	}
	if (!s->n_up || !p || mine >= MAX_PENDING_PER_CLIENT || len > QUERY_MAX ||
	    pending_new_id(s, &id) < 0)
		return -EAGAIN;
	if (!(p->query = malloc(len)))
		return -ENOMEM;
	memcpy(p->query, pkt, len);
	put16(p->query, id);
	p->len = len;
	p->id = id;
	p->client_id = get16(pkt);
	p->laddr = laddr;
	p->client = *client;
	p->tries = 0;
	p->expire_ms = now_ms() + PENDING_MS;
	s->n_pending++;
	if (pending_send(s, p) < 0) {
		pending_drop(s, p);
		return -EHOSTUNREACH;
	}
	return 0;
}

static struct listener *
listener_live(struct dns_server *s, uint32_t addr)
{
	for (size_t i = 0; i < s->n_ls; i++)
		if (s->ls[i]->addr == addr)
			return s->ls[i];
	return NULL;
}

/* An answer on the forwarding socket: accepted from an upstream's port 53 for a pending id,
 * and relayed to the client under its own id. */
static void
relay(struct dns_server *s, const struct sockaddr_in *from, size_t len)
{
	struct pending *p;
	struct listener *l;
	size_t k = 0;

	while (k < s->n_up && s->up[k] != ntohl(from->sin_addr.s_addr))
		k++;
	if (k == s->n_up || ntohs(from->sin_port) != DNS_PORT || len < HDR_LEN ||
	    !(get16(s->buf + 2) & FLAG_QR) || !(p = pending_find(s, get16(s->buf))))
		return;
	put16(s->buf, p->client_id);
	if ((l = listener_live(s, p->laddr)))
		sendto(l->udp, s->buf, len, 0, (struct sockaddr *)&p->client, sizeof(p->client));
	s->preferred = k;
	pending_drop(s, p);
}

static void
forward_read(struct dns_server *s)
{
	for (unsigned i = 0; i < BATCH; i++) {
		struct sockaddr_in from;
		socklen_t from_len = sizeof(from);
		ssize_t n = recvfrom(s->fwd, s->buf, sizeof(s->buf), 0, (struct sockaddr *)&from,
				     &from_len);
		if (n < 0)
			return;
		if (from_len == sizeof(from) && from.sin_family == AF_INET)
			relay(s, &from, (size_t)n);
	}
}

/* ---- clients over UDP ---------------------------------------------------------------------- */

/* Answers one datagram, or forwards it. Responses and runts are dropped: never answered, so two
 * servers cannot bounce packets between them. */
static void
udp_query(struct dns_server *s, const struct listener *l, const struct sockaddr_in *from,
	  size_t len)
{
	struct dns_query q;
	int n, r = dns_query_parse(s->buf, len, &q);

	if (r == -EINVAL)
		return;
	if (r < 0) {
		n = dns_reply_error(s->buf, len, r == -EOPNOTSUPP ? DNS_NOTIMP : DNS_FORMERR,
				    s->reply, sizeof(s->reply));
	} else {
		n = dns_answer(&q, s->lookup, s->ud, ntohl(from->sin_addr.s_addr), s->reply,
			       sizeof(s->reply));
		if (n == 0 && forward(s, l->addr, from, s->buf, len) == 0)
			return;
		if (n == 0)
			n = dns_reply_build(&q, DNS_SERVFAIL, NULL, s->reply, sizeof(s->reply));
	}
	if (n > 0)
		sendto(l->udp, s->reply, (size_t)n, 0, (const struct sockaddr *)from,
		       sizeof(*from));
}

static void
udp_read(struct dns_server *s, const struct listener *l)
{
	for (unsigned i = 0; i < BATCH; i++) {
		struct sockaddr_in from;
		socklen_t from_len = sizeof(from);
		ssize_t n = recvfrom(l->udp, s->buf, sizeof(s->buf), 0, (struct sockaddr *)&from,
				     &from_len);
		if (n < 0)
			return;
		if (from_len == sizeof(from) && from.sin_family == AF_INET)
			udp_query(s, l, &from, (size_t)n);
	}
}

/* ---- clients over TCP ---------------------------------------------------------------------- */

static void
conn_close(struct conn *c)
{
	if (c->state == CONN_FREE)
		return;
	close(c->fd);
	if (c->up >= 0)
		close(c->up);
	free(c->out);
	c->out = NULL;
	c->state = CONN_FREE;
}

static void
tcp_accept(struct dns_server *s, const struct listener *l)
{
	for (unsigned i = 0; i < BATCH; i++) {
		struct sockaddr_in from;
		socklen_t from_len = sizeof(from);
		struct conn *c = NULL;

		for (size_t k = 0; k < MAX_CONNS && !c; k++)
			if (s->conns[k].state == CONN_FREE)
				c = &s->conns[k];
		if (!c)
			return;
		int fd = accept4(l->tcp, (struct sockaddr *)&from, &from_len,
				 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		c->state = CONN_READ;
		c->fd = fd;
		c->up = -1;
		c->laddr = l->addr;
		c->client = ntohl(from.sin_addr.s_addr);
		c->in_len = 0;
		c->deadline_ms = now_ms() + TCP_IDLE_MS;
	}
}

/* Queues data as the reply, with its length prefix. */
static int
conn_reply(struct conn *c, const uint8_t *data, size_t len)
{
	if (!(c->out = malloc(2 + len)))
		return -ENOMEM;
	put16(c->out, (unsigned)len);
	memcpy(c->out + 2, data, len);
	c->out_len = 2 + len;
	c->out_off = 0;
	c->state = CONN_WRITE;
	return 0;
}

/* Connects to the next upstream that takes a connection; -EHOSTUNREACH when none is left. */
static int
conn_upstream(struct dns_server *s, struct conn *c)
{
	while (c->tries < s->n_up) {
		struct sockaddr_in sa =
			sockaddr_of(s->up[(s->preferred + c->tries++) % s->n_up], DNS_PORT);
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EINPROGRESS) {
			c->up = fd;
			c->up_off = 0;
			c->state = CONN_CONNECT;
			return 0;
		}
		close(fd);
	}
	return -EHOSTUNREACH;
}

/* The query in c->in, answered here or sent upstream. */
static void
conn_query(struct dns_server *s, struct conn *c)
{
	struct dns_query q;
	size_t len = c->in_len - 2;
	int n, r = dns_query_parse(c->in + 2, len, &q);

	c->deadline_ms = now_ms() + TCP_IDLE_MS;
	c->tries = 0;
	if (r == -EINVAL) {
		conn_close(c);
		return;
	}
	if (r < 0) {
		n = dns_reply_error(c->in + 2, len, r == -EOPNOTSUPP ? DNS_NOTIMP : DNS_FORMERR,
				    s->reply, sizeof(s->reply));
	} else {
		n = dns_answer(&q, s->lookup, s->ud, c->client, s->reply, sizeof(s->reply));
		if (n == 0 && conn_upstream(s, c) == 0)
			return;
		if (n == 0)
			n = dns_reply_build(&q, DNS_SERVFAIL, NULL, s->reply, sizeof(s->reply));
	}
	if (n < 0 || conn_reply(c, s->reply, (size_t)n) < 0)
		conn_close(c);
}

/* Reads the length, then the query; a length out of bounds closes the connection. */
static void
conn_read(struct dns_server *s, struct conn *c)
{
	size_t want = c->in_len < 2 ? 2 : 2 + (size_t)get16(c->in);
	ssize_t n = recv(c->fd, c->in + c->in_len, want - c->in_len, 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->in_len += (size_t)n;
	if (c->in_len == 2 && (get16(c->in) < HDR_LEN || get16(c->in) > QUERY_MAX))
		conn_close(c);
	else if (c->in_len > 2 && c->in_len == 2 + (size_t)get16(c->in))
		conn_query(s, c);
}

static void
conn_write(struct conn *c)
{
	ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->out_off += (size_t)n;
	if (c->out_off < c->out_len)
		return;
	free(c->out);
	c->out = NULL;
	c->in_len = 0;
	c->state = CONN_READ;
	c->deadline_ms = now_ms() + TCP_IDLE_MS;
}

static int
up_connected(struct conn *c)
{
	int e = 0;
	socklen_t e_len = sizeof(e);

	if (getsockopt(c->up, SOL_SOCKET, SO_ERROR, &e, &e_len) < 0)
		return -errno;
	if (e)
		return -e;
	c->state = CONN_UP_WRITE;
	return 0;
}

/* The client's query goes upstream as it came, length prefix included. */
static int
up_write(struct conn *c)
{
	ssize_t n = send(c->up, c->in + c->up_off, c->in_len - c->up_off, MSG_NOSIGNAL);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	c->up_off += (size_t)n;
	if (c->up_off == c->in_len) {
		c->up_off = 0;
		c->state = CONN_UP_READ;
	}
	return 0;
}

/* Reads the upstream's length, then its answer, which becomes the reply. */
static int
up_read(struct conn *c)
{
	bool head = !c->out;
	uint8_t *dst = head ? c->up_len + c->up_off : c->out + c->out_off;
	size_t want = head ? 2 - c->up_off : c->out_len - c->out_off;
	ssize_t n = recv(c->up, dst, want, 0);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -EPIPE;
	if (!head) {
		c->out_off += (size_t)n;
	} else if ((c->up_off += (size_t)n) == 2) {
		if (get16(c->up_len) < HDR_LEN)
			return -EBADMSG;
		if (!(c->out = malloc(2 + (size_t)get16(c->up_len))))
			return -ENOMEM;
		memcpy(c->out, c->up_len, 2);
		c->out_len = 2 + (size_t)get16(c->up_len);
		c->out_off = 2;
	}
	if (c->out && c->out_off == c->out_len) {
		close(c->up);
		c->up = -1;
		c->out_off = 0;
		c->state = CONN_WRITE;
	}
	return 0;
}

/* Builds the SERVFAIL reply to the query in c->in. */
static void
conn_servfail(struct dns_server *s, struct conn *c)
{
	struct dns_query q;
	int n = -EBADMSG;

	if (dns_query_parse(c->in + 2, c->in_len - 2, &q) == 0)
		n = dns_reply_build(&q, DNS_SERVFAIL, NULL, s->reply, sizeof(s->reply));
	if (n < 0 || conn_reply(c, s->reply, (size_t)n) < 0)
		conn_close(c);
}

/* Progress with the upstream; when it fails, the next upstream, then SERVFAIL. */
static void
conn_up_event(struct dns_server *s, struct conn *c)
{
	int r = c->state == CONN_CONNECT    ? up_connected(c)
		: c->state == CONN_UP_WRITE ? up_write(c)
					    : up_read(c);

	if (r >= 0)
		return;
	close(c->up);
	c->up = -1;
	free(c->out);
	c->out = NULL;
	if (conn_upstream(s, c) < 0)
		conn_servfail(s, c);
}

/* ---- the thread ---------------------------------------------------------------------------- */

static void
listener_close(struct listener *l)
{
	close(l->udp);
	close(l->tcp);
	free(l);
}

/* Copies the upstreams but our own addresses; a new list is tried from its first. The lock is
 * held. */
static void
upstreams_apply_locked(struct dns_server *s)
{
	uint32_t up[DNS_MAX_UPSTREAMS];
	size_t n = 0;

	for (size_t i = 0; i < s->n_upstreams; i++)
		if (!listener_live(s, s->upstreams[i]))
			up[n++] = s->upstreams[i];
	if (n != s->n_up || memcmp(up, s->up, n * sizeof(*up)) != 0)
		s->preferred = 0;
	memcpy(s->up, up, sizeof(up));
	s->n_up = n;
}

/* Takes what other threads asked for: closes unlistened addresses (and their TCP clients),
 * snapshots listeners and upstreams. Returns false once the server must stop. */
static bool
control_apply(struct dns_server *s)
{
	uint64_t v;
	ssize_t n = read(s->control, &v, sizeof(v));

	(void)n; /* nothing to read is fine: the counter is only a wakeup */
	pthread_mutex_lock(&s->lock);
	for (struct listener *l; (l = s->dead);) {
		s->dead = l->next;
		for (size_t i = 0; i < MAX_CONNS; i++)
			if (s->conns[i].state != CONN_FREE && s->conns[i].laddr == l->addr)
				conn_close(&s->conns[i]);
		listener_close(l);
	}
	s->n_ls = 0;
	for (struct listener *l = s->listeners; l && s->n_ls < MAX_LISTENERS; l = l->next)
		s->ls[s->n_ls++] = l;
	upstreams_apply_locked(s);
	s->applied = s->asked;
	pthread_cond_broadcast(&s->synced);
	bool run = !s->stop;
	pthread_mutex_unlock(&s->lock);
	return run;
}

static void
poll_add(struct dns_server *s, int fd, short events, enum slot_kind kind, void *obj)
{
	s->pfd[s->n_pfd] = (struct pollfd){.fd = fd, .events = events};
	s->slot[s->n_pfd].kind = kind;
	s->slot[s->n_pfd++].obj = obj;
}

static void
poll_build(struct dns_server *s)
{
	bool room = false;

	s->n_pfd = 0;
	poll_add(s, s->control, POLLIN, SLOT_CONTROL, NULL);
	poll_add(s, s->fwd, POLLIN, SLOT_FORWARD, NULL);
	for (size_t i = 0; i < MAX_CONNS && !room; i++)
		room = s->conns[i].state == CONN_FREE;
	for (size_t i = 0; i < s->n_ls; i++) {
		poll_add(s, s->ls[i]->udp, POLLIN, SLOT_UDP, s->ls[i]);
		if (room) /* else new connections wait in the backlog */
			poll_add(s, s->ls[i]->tcp, POLLIN, SLOT_TCP, s->ls[i]);
	}
	for (size_t i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &s->conns[i];
		if (c->state == CONN_READ)
			poll_add(s, c->fd, POLLIN, SLOT_CONN, c);
		else if (c->state == CONN_WRITE)
			poll_add(s, c->fd, POLLOUT, SLOT_CONN, c);
		else if (c->state == CONN_UP_READ)
			poll_add(s, c->up, POLLIN, SLOT_UP, c);
		else if (c->state != CONN_FREE)
			poll_add(s, c->up, POLLOUT, SLOT_UP, c);
	}
}

/* Until the next retry or expiry of a pending query or TCP client; -1: none. */
static int
poll_timeout(struct dns_server *s)
{
	int64_t next = INT64_MAX, now = now_ms();

	for (size_t i = 0; s->n_pending && i < MAX_PENDING; i++) {
		const struct pending *p = &s->pending[i];
		if (p->query && p->expire_ms < next)
			next = p->expire_ms;
		if (p->query && p->tries < s->n_up && p->retry_ms < next)
			next = p->retry_ms;
	}
	for (size_t i = 0; i < MAX_CONNS; i++)
		if (s->conns[i].state != CONN_FREE && s->conns[i].deadline_ms < next)
			next = s->conns[i].deadline_ms;
	if (next == INT64_MAX)
		return -1;
	return next <= now ? 0 : (int)(next - now < 60000 ? next - now : 60000);
}

static void
timers(struct dns_server *s)
{
	int64_t now = now_ms();

	for (size_t i = 0; s->n_pending && i < MAX_PENDING; i++) {
		struct pending *p = &s->pending[i];
		if (p->query && now >= p->expire_ms)
			pending_drop(s, p);
		else if (p->query && now >= p->retry_ms && p->tries < s->n_up)
			pending_send(s, p);
	}
	for (size_t i = 0; i < MAX_CONNS; i++)
		if (s->conns[i].state != CONN_FREE && now >= s->conns[i].deadline_ms)
			conn_close(&s->conns[i]);
}

/* One ready descriptor. A handler may have closed a connection another slot points at: each
 * checks the state it expects, and every socket is non-blocking. */
static void
dispatch(struct dns_server *s, size_t i)
{
	struct conn *c = s->slot[i].obj;

	switch (s->slot[i].kind) {
	case SLOT_CONTROL:
		break; /* control_apply reads it */
	case SLOT_FORWARD:
		forward_read(s);
		break;
	case SLOT_UDP:
		udp_read(s, s->slot[i].obj);
		break;
	case SLOT_TCP:
		tcp_accept(s, s->slot[i].obj);
		break;
	case SLOT_CONN:
		if (c->state == CONN_READ && c->fd == s->pfd[i].fd)
			conn_read(s, c);
		else if (c->state == CONN_WRITE && c->fd == s->pfd[i].fd)
			conn_write(c);
		break;
	case SLOT_UP:
		if (c->state >= CONN_CONNECT && c->state <= CONN_UP_READ && c->up == s->pfd[i].fd)
			conn_up_event(s, c);
		break;
	}
}

static void *
server_thread(void *arg)
{
	struct dns_server *s = arg;

	while (control_apply(s)) {
		poll_build(s);
		int n = poll(s->pfd, s->n_pfd, poll_timeout(s));
		if (n < 0 && errno != EINTR) {
			log_error("dns: poll: %s: the responder stops", strerror(errno));
			break;
		}
		for (size_t i = 0; n > 0 && i < s->n_pfd; i++)
			if (s->pfd[i].revents)
				dispatch(s, i);
		timers(s);
	}
	return NULL;
}

/* ---- the server: API ----------------------------------------------------------------------- */

static int
server_start(struct dns_server *s, struct err *err)
{
	struct sockaddr_in any = sockaddr_of(INADDR_ANY, 0);
	int r;

	s->control = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->control < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "dns: eventfd: %s", strerror(errno));
	s->fwd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fwd < 0 || bind(s->fwd, (struct sockaddr *)&any, sizeof(any)) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "dns: forwarding socket: %s",
			       strerror(errno));
	if ((r = pthread_create(&s->thread, NULL, server_thread, s)) != 0)
		return err_set(err, ERR_INTERNAL, NULL, r, "dns: start thread: %s", strerror(r));
	s->started = true;
	return 0;
}

int
dns_server_new(dns_lookup_fn lookup, void *ud, struct dns_server **ret, struct err *err)
{
	struct dns_server *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	s->lookup = lookup;
	s->ud = ud;
	s->control = s->fwd = -1;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->synced, NULL);
	if ((r = server_start(s, err)) < 0) {
		dns_server_free(s);
		return r;
	}
	*ret = s;
	return 0;
}

void
dns_server_free(struct dns_server *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_mutex_unlock(&s->lock);
		poke(s);
		pthread_join(s->thread, NULL);
	}
	for (size_t i = 0; i < MAX_CONNS; i++)
		conn_close(&s->conns[i]);
	for (size_t i = 0; i < MAX_PENDING; i++)
		free(s->pending[i].query);
	for (struct listener *l = s->listeners, *n; l; l = n) {
		n = l->next;
		listener_close(l);
	}
	for (struct listener *l = s->dead, *n; l; l = n) {
		n = l->next;
		listener_close(l);
	}
	closep(&s->control);
	closep(&s->fwd);
	pthread_cond_destroy(&s->synced);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* A non-blocking socket of type bound to addr:port with IP_FREEBIND (the address may not be up
 * yet); a TCP one also listens. Returns the fd or a negative errno. */
static int
socket_bound(int type, uint32_t addr, uint16_t port)
{
	struct sockaddr_in sa = sockaddr_of(addr, port);
	cleanup_close int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;

	if (fd < 0)
		return -errno;
	if (setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0)
		return -errno;
	/* TCP only: a UDP socket with it could share the port with another server's */
	if (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	if (type == SOCK_STREAM && listen(fd, 64) < 0)
		return -errno;
	return TAKE_FD(fd);
}

static int
listen_error(struct err *err, uint32_t addr, uint16_t port, const char *proto, int r)
{
	char text[INET_ADDRSTRLEN];
	struct in_addr a = {.s_addr = htonl(addr)};
	enum err_code code = r == -EADDRINUSE              ? ERR_EXISTS
			     : r == -EACCES || r == -EPERM ? ERR_PERMISSION
							   : ERR_INTERNAL;

	inet_ntop(AF_INET, &a, text, sizeof(text));
	return err_set(err, code, NULL, -r, "dns: listen on '%s:%u' (%s): %s", text, port, proto,
		       strerror(-r));
}

/* Opens UDP then TCP on addr:port; with port 0, TCP takes the port UDP got. */
static int
listener_open(uint32_t addr, uint16_t port, struct listener **ret, struct err *err)
{
	struct sockaddr_in sa;
	socklen_t sa_len = sizeof(sa);
	cleanup_close int udp = socket_bound(SOCK_DGRAM, addr, port);
	cleanup_close int tcp = -1;
	struct listener *l;

	if (udp < 0)
		return listen_error(err, addr, port, "udp", udp);
	if (getsockname(udp, (struct sockaddr *)&sa, &sa_len) < 0)
		return listen_error(err, addr, port, "udp", -errno);
	port = ntohs(sa.sin_port);
	if ((tcp = socket_bound(SOCK_STREAM, addr, port)) < 0)
		return listen_error(err, addr, port, "tcp", tcp);
	if (!(l = calloc(1, sizeof(*l))))
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	l->addr = addr;
	l->port = port;
	l->udp = TAKE_FD(udp);
	l->tcp = TAKE_FD(tcp);
	*ret = l;
	return 0;
}

int
dns_server_listen(struct dns_server *s, uint32_t addr, uint16_t port, struct err *err)
{
	struct listener *l;
	int r;

	pthread_mutex_lock(&s->lock);
	for (l = s->listeners; l && l->addr != addr; l = l->next)
		;
	if (l && (!port || port == l->port))
		r = l->port;
	else if (l)
		r = err_set(err, ERR_EXISTS, NULL, EADDRINUSE,
			    "dns: already listening on that address with port %u", l->port);
	else if (s->n_listeners >= MAX_LISTENERS)
		r = err_set(err, ERR_EXHAUSTED, NULL, EMFILE,
			    "dns: already listening on %d addresses", MAX_LISTENERS);
	else if ((r = listener_open(addr, port, &l, err)) == 0) {
		l->next = s->listeners;
		s->listeners = l;
		s->n_listeners++;
		s->asked++;
		r = l->port;
	}
	pthread_mutex_unlock(&s->lock);
	poke(s);
	return r;
}

/* Waits until the thread applied control generation want, at most CONTROL_WAIT_S. The lock is
 * held. */
static void
wait_applied_locked(struct dns_server *s, uint64_t want)
{
	struct timespec deadline;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CONTROL_WAIT_S;
	while (s->applied < want)
		if (pthread_cond_timedwait(&s->synced, &s->lock, &deadline) == ETIMEDOUT) {
			log_warn("dns: the responder's thread did not answer in %d s",
				 CONTROL_WAIT_S);
			return;
		}
}

int
dns_server_unlisten(struct dns_server *s, uint32_t addr)
{
	struct listener **p, *l;

	pthread_mutex_lock(&s->lock);
	for (p = &s->listeners; *p && (*p)->addr != addr; p = &(*p)->next)
		;
	if (!(l = *p)) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	*p = l->next;
	l->next = s->dead;
	s->dead = l;
	s->n_listeners--;
	uint64_t want = ++s->asked;
	poke(s);
	/* from the lookup, on the thread itself: it closes them on its next turn */
	if (!pthread_equal(pthread_self(), s->thread))
		wait_applied_locked(s, want);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

void
dns_server_set_upstreams(struct dns_server *s, const uint32_t *addrs, size_t n)
{
	pthread_mutex_lock(&s->lock);
	s->n_upstreams = n < DNS_MAX_UPSTREAMS ? n : DNS_MAX_UPSTREAMS;
	if (s->n_upstreams)
		memcpy(s->upstreams, addrs, s->n_upstreams * sizeof(*addrs));
	uint64_t want = ++s->asked;
	poke(s);
	if (!pthread_equal(pthread_self(), s->thread))
		wait_applied_locked(s, want);
	pthread_mutex_unlock(&s->lock);
}
