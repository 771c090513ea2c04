#include "network.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "config.h"
#include "daemon.h"
#include "dns.h"
#include "log.h"
#include "macro.h"
#include "netns.h"
#include "nft.h"
#include "store.h"
#include "strbuf.h"
#include "uuid.h"

#define NET_SPARES 2   /* spare machine namespaces kept built ahead (netns_spares_start) */
#define AUTO_FIRST 201 /* named networks get 10.<201..254>.0.0/24 */
#define AUTO_LAST 254
#define DNS_PORT 53

static pthread_mutex_t apply_lock = PTHREAD_MUTEX_INITIALIZER;

static int egress_parse(const char *s, struct nft_cidr *ret);

/* ---- addresses ---------------------------------------------------------------------------- */

static uint32_t
mask_of(unsigned prefix)
{
	return prefix ? ~0u << (32 - prefix) : 0;
}

static bool
overlaps(uint32_t a, unsigned pa, uint32_t b, unsigned pb)
{
	uint32_t m = mask_of(pa < pb ? pa : pb);

	return (a & m) == (b & m);
}

static void
ip_text(uint32_t ip, char out[16])
{
	struct in_addr a = {.s_addr = htonl(ip)};

	inet_ntop(AF_INET, &a, out, 16);
}

static int
ip_parse(const char *s, uint32_t *ret)
{
	struct in_addr a;

	if (!s || inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*ret = ntohl(a.s_addr);
	return 0;
}

/* ---- sysctls ------------------------------------------------------------------------------ */

static int
sysctl_write(const char *path, const char *value)
{
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (write(fd, value, strlen(value)) < 0)
		return -errno;
	return 0;
}

/* Forwarding for egress, and route_localnet on the bridge so the host's own 127.0.0.1 may be
 * DNAT'd to a machine behind it (the masquerade of 127.0.0.0/8 in the ruleset does the rest). */
static int
bridge_sysctls(const char *bridge, struct err *err)
{
	char path[128];
	int r = sysctl_write("/proc/sys/net/ipv4/ip_forward", "1");

	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "enable IPv4 forwarding: %s",
			       strerror(-r));
	snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/route_localnet", bridge);
	if ((r = sysctl_write(path, "1")) < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "set route_localnet on '%s': %s",
			       bridge, strerror(-r));
	return 0;
}

/* ---- finding networks --------------------------------------------------------------------- */

static void
net_default(struct daemon *d, struct net *ret)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "default");
	snprintf(ret->bridge, sizeof(ret->bridge), "%s", d->bridge);
	snprintf(ret->subnet_text, sizeof(ret->subnet_text), "%s", d->cfg.bridge_subnet);
	snprintf(ret->mode, sizeof(ret->mode), "bridge");
	ret->subnet = d->bridge_net;
	ret->prefix = d->bridge_prefix;
	ret->gateway = d->bridge_net + 1;
	ret->is_default = true;
	ret->created_ms = d->started_ms;
}

static int
net_from_rec(const struct network_info *n, struct net *ret, struct err *err)
{
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->name, sizeof(ret->name), "%s", n->name);
	snprintf(ret->bridge, sizeof(ret->bridge), "%s", n->bridge);
	snprintf(ret->subnet_text, sizeof(ret->subnet_text), "%s", n->subnet);
	snprintf(ret->mode, sizeof(ret->mode), "%s", n->mode);
	ret->created_ms = n->created_ms;
	if (config_parse_cidr(n->subnet, 8, 30, &ret->subnet, &ret->prefix) < 0)
		return err_set(err, ERR_INTERNAL, NULL, EINVAL, "network '%s': bad subnet '%s'",
			       n->name, n->subnet);
	ret->gateway = ret->subnet + 1;
	return 0;
}

int
net_resolve(struct daemon *d, const char *ref, struct net *ret, struct err *err)
{
	struct network_info n;
	int r;

	if (!ref || !*ref || streq(ref, "default") || streq(ref, d->bridge)) {
		net_default(d, ret);
		return 0;
	}
	if ((r = store_network_get(d->store, ref, &n, err)) < 0)
		return r;
	return net_from_rec(&n, ret, err);
}

struct net_list {
	struct net *nets;
	size_t n, cap;
	struct err *err;
};

static int
net_list_one(void *ud, const struct network_rec *rec)
{
	struct net_list *l = ud;
	struct network_info n = {.created_ms = rec->created_ms};

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct net *grown = realloc(l->nets, cap * sizeof(*grown));
		if (!grown)
			return err_set(l->err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
		l->nets = grown;
		l->cap = cap;
	}
	snprintf(n.id, sizeof(n.id), "%s", rec->id);
	snprintf(n.name, sizeof(n.name), "%s", rec->name);
	snprintf(n.subnet, sizeof(n.subnet), "%s", rec->subnet);
	snprintf(n.bridge, sizeof(n.bridge), "%s", rec->bridge);
	snprintf(n.mode, sizeof(n.mode), "%s", rec->mode);
	return net_from_rec(&n, &l->nets[l->n++], l->err);
}

/* Every network, the default one first. Free ret->nets. */
static int
net_list_all(struct daemon *d, struct net_list *ret, struct err *err)
{
	memset(ret, 0, sizeof(*ret));
	ret->err = err;
	int r = net_list_one(ret, &(struct network_rec){.name = "default", .subnet = "0.0.0.0/8"});
	if (r < 0)
		return r;
	net_default(d, &ret->nets[0]);
	r = store_network_list(d->store, net_list_one, ret, err);
	if (r < 0) {
		free(ret->nets);
		ret->nets = NULL;
	}
	return r;
}

/* ---- creating and deleting ---------------------------------------------------------------- */

static bool
name_char_ok(char c, bool first)
{
	return isalnum((unsigned char)c) || (!first && (c == '-' || c == '_'));
}

static int
name_check(const char *name, struct err *err)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0)
		return err_set(err, ERR_INVALID, "name", EINVAL, "a network needs a name");
	if (len > NET_NAME_MAX)
		return err_set(err, ERR_INVALID, "name", EINVAL,
			       "network name '%s' is %zu characters long: at most %d (its bridge "
			       "br-NAME must fit a 15-character interface name)",
			       name, len, NET_NAME_MAX);
	for (size_t i = 0; i < len; i++)
		if (!name_char_ok(name[i], i == 0))
			return err_set(err, ERR_INVALID, "name", EINVAL,
				       "invalid network name '%s': use letters, digits, '-' and "
				       "'_', starting with a letter or digit",
				       name);
	if (streq(name, "default") || streq(name, "none") || streq(name, "host"))
		return err_set(err, ERR_INVALID, "name", EINVAL, "network name '%s' is reserved",
			       name);
	return 0;
}

/* ERR_EXISTS naming what subnet/prefix overlaps: a network or an address of the host. */
static int
overlap_check(const struct net_list *l, uint32_t subnet, unsigned prefix, const char *text,
	      struct err *err)
{
	struct ifaddrs *ifa = NULL;
	char host[16];
	int r = 0;

	for (size_t i = 0; i < l->n; i++)
		if (overlaps(subnet, prefix, l->nets[i].subnet, l->nets[i].prefix))
			return err_set(err, ERR_EXISTS, "subnet", EEXIST,
				       "subnet %s overlaps network '%s' (%s)", text,
				       l->nets[i].name, l->nets[i].subnet_text);
	if (getifaddrs(&ifa) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "list host addresses: %s",
			       strerror(errno));
	for (struct ifaddrs *i = ifa; i && r == 0; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask)
			continue;
		uint32_t a = ntohl(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr);
		uint32_t m = ntohl(((struct sockaddr_in *)(void *)i->ifa_netmask)->sin_addr.s_addr);
		unsigned p = (unsigned)__builtin_popcount(m);
		if ((a >> 24) == 127 || !overlaps(subnet, prefix, a & m, p))
			continue;
		ip_text(a, host);
		r = err_set(err, ERR_EXISTS, "subnet", EEXIST,
			    "subnet %s overlaps the host's address %s/%u on '%s'", text, host, p,
			    i->ifa_name);
	}
	freeifaddrs(ifa);
	return r;
}

static int
subnet_pick(struct daemon *d, const char *want, uint32_t *ret, unsigned *ret_prefix, char text[24],
	    struct err *err)
{
	struct net_list l;
	int r = net_list_all(d, &l, err);

	if (r < 0)
		return r;
	if (want && *want) {
		struct nft_cidr c;
		if (strchr(want, ':') || !strchr(want, '/') || egress_parse(want, &c) < 0 ||
		    c.prefix < 16 || c.prefix > 29)
			r = err_set(err, ERR_INVALID, "subnet", EINVAL,
				    "invalid subnet '%s': expected an IPv4 CIDR with a prefix "
				    "from /16 to /29, e.g. 10.210.0.0/24",
				    want);
		else if (config_parse_cidr(want, 16, 29, ret, ret_prefix) < 0)
			r = err_set(err, ERR_INVALID, "subnet", EINVAL,
				    "subnet '%s' has host bits set: the network address is needed",
				    want);
		else {
			snprintf(text, 24, "%s", want);
			r = overlap_check(&l, *ret, *ret_prefix, text, err);
		}
		free(l.nets);
		return r;
	}
	r = -ENOSPC;
	for (unsigned b = AUTO_FIRST; b <= AUTO_LAST && r == -ENOSPC; b++) {
		struct err probe = {0};
		*ret = (10u << 24) | (b << 16);
		*ret_prefix = 24;
		snprintf(text, 24, "10.%u.0.0/24", b);
		if (overlap_check(&l, *ret, 24, text, &probe) == 0)
			r = 0;
	}
	free(l.nets);
	if (r < 0)
		return err_set(err, ERR_EXHAUSTED, "subnet", ENOSPC,
			       "no free /24 left in 10.201-254.0.0: give one with --subnet");
	return 0;
}

static int
mode_check(const char *mode, struct err *err)
{
	if (!mode || !*mode || streq(mode, "bridge") || streq(mode, "isolated") ||
	    streq(mode, "none"))
		return 0;
	return err_set(err, ERR_INVALID, "mode", EINVAL,
		       "unknown network mode '%s': use bridge, isolated or none", mode);
}

int
net_create(struct daemon *d, const char *name, const char *subnet, const char *mode,
	   struct net *ret, struct err *err)
{
	char id[37], text[24], bridge[16];
	uint32_t net;
	unsigned prefix;
	int r;

	if ((r = name_check(name, err)) < 0 || (r = mode_check(mode, err)) < 0)
		return r;
	pthread_mutex_lock(&apply_lock);
	r = subnet_pick(d, subnet, &net, &prefix, text, err);
	uuid_generate_text(id);
	snprintf(bridge, sizeof(bridge), "br-%s", name);
	struct network_rec rec = {.id = id,
				  .name = name,
				  .subnet = text,
				  .bridge = bridge,
				  .mode = mode && *mode ? mode : "bridge"};
	if (r >= 0)
		r = store_network_create(d->store, &rec, err);
	pthread_mutex_unlock(&apply_lock);
	if (r < 0)
		return r;
	if ((r = netns_bridge_ensure(bridge, net + 1, prefix, err)) < 0 ||
	    (r = bridge_sysctls(bridge, err)) < 0 || (r = net_apply(d, err)) < 0) {
		netns_bridge_delete(bridge, NULL);
		store_network_delete(d->store, name, NULL);
		return err_wrap(err, "network '%s'", name);
	}
	if (d->dns)
		dns_server_listen(d->dns, net + 1, DNS_PORT, NULL);
	log_info("network '%s' created: %s on %s", name, text, bridge);
	return net_resolve(d, name, ret, err);
}

int
net_delete(struct daemon *d, const char *name, struct net *ret, struct err *err)
{
	unsigned count = 0;
	int r;

	if (!name || !*name || streq(name, "default") || streq(name, d->bridge))
		return err_set(err, ERR_PRECONDITION, "name", EPERM,
			       "the default network cannot be deleted");
	if ((r = net_resolve(d, name, ret, err)) < 0)
		return r;
	if ((r = store_network_machine_count(d->store, ret->name, &count, err)) < 0)
		return r;
	if (count)
		return err_set(err, ERR_PRECONDITION, "name", EBUSY,
			       "network '%s' is used by %u machine%s: delete them first", ret->name,
			       count, count == 1 ? "" : "s");
	/* the bridge first: when that fails, nothing has changed */
	if ((r = netns_bridge_delete(ret->bridge, err)) < 0)
		return err_wrap(err, "network '%s'", ret->name);
	if (d->dns)
		dns_server_unlisten(d->dns, ret->gateway);
	if ((r = store_network_delete(d->store, ret->name, err)) < 0)
		return r;
	if ((r = net_apply(d, err)) < 0)
		return err_wrap(err, "network '%s' deleted, but the ruleset", ret->name);
	log_info("network '%s' deleted", ret->name);
	return 0;
}

int
net_set_mode(struct daemon *d, const char *name, const char *mode, struct net *ret, struct err *err)
{
	int r = mode_check(mode, err);

	if (r < 0)
		return r;
	if (!name || !*name || streq(name, "default") || streq(name, d->bridge))
		return err_set(err, ERR_PRECONDITION, "name", EPERM,
			       "the default network's mode is bridge; set a machine's own mode "
			       "with 'sistemo machine policy NAME --network-mode MODE'");
	if ((r = store_network_set_mode(d->store, name, mode, err)) < 0)
		return r;
	return net_resolve(d, name, ret, err);
}

/* ---- the ruleset -------------------------------------------------------------------------- */

/* A growable array of T. */
#define VEC(T)                                                                                     \
	struct {                                                                                   \
		T *v;                                                                              \
		size_t n, cap;                                                                     \
	}

static void *
vec_push(void **v, size_t *n, size_t *cap, size_t size)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		void *grown = realloc(*v, c * size);
		if (!grown)
			return NULL;
		*v = grown;
		*cap = c;
	}
	void *slot = (char *)*v + (*n)++ * size;
	memset(slot, 0, size);
	return slot;
}
#define PUSH(vec)                                                                                  \
	((__typeof__((vec).v))vec_push((void **)&(vec).v, &(vec).n, &(vec).cap, sizeof(*(vec).v)))

/* Everything a model points into, freed at once. */
struct model_buf {
	struct nft_model m;
	struct net_list nets;
	VEC(struct nft_network) networks;
	VEC(struct nft_machine) machines;
	VEC(struct nft_port) ports;
	VEC(struct nft_cidr) cidrs; /* allow_from and egress_allow lists, per machine in order */
	VEC(char *) strings;
	struct daemon *d;
	struct err *err;
	uint16_t guarded[2];
};

static void
model_free(struct model_buf *b)
{
	for (size_t i = 0; i < b->strings.n; i++)
		free(b->strings.v[i]);
	free(b->strings.v);
	free(b->nets.nets);
	free(b->networks.v);
	free(b->machines.v);
	free(b->ports.v);
	free(b->cidrs.v);
}

static const char *
model_strdup(struct model_buf *b, const char *s)
{
	char **slot = PUSH(b->strings);

	return slot ? (*slot = strdup(s)) : NULL;
}

static enum nft_mode
mode_of(const char *mode)
{
	if (streq(mode, "none"))
		return NFT_MODE_NONE;
	return streq(mode, "isolated") ? NFT_MODE_ISOLATED : NFT_MODE_BRIDGE;
}

static const struct net *
model_net(const struct model_buf *b, const char *name)
{
	for (size_t i = 0; i < b->nets.n; i++)
		if (streq(b->nets.nets[i].name, name))
			return &b->nets.nets[i];
	return NULL;
}

/* "ADDR[/PREFIX][:PORT]" */
static int
egress_parse(const char *s, struct nft_cidr *ret)
{
	char buf[64];
	char *colon, *slash, *end;
	unsigned long v;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	ret->prefix = 32;
	ret->port = 0;
	if ((colon = strchr(buf, ':'))) {
		*colon++ = '\0';
		errno = 0;
		v = strtoul(colon, &end, 10);
		if (errno || *end || end == colon || v < 1 || v > 65535)
			return -EINVAL;
		ret->port = (uint16_t)v;
	}
	if ((slash = strchr(buf, '/'))) {
		*slash++ = '\0';
		errno = 0;
		v = strtoul(slash, &end, 10);
		if (errno || *end || end == slash || v > 32)
			return -EINVAL;
		ret->prefix = (unsigned)v;
	}
	if (ip_parse(buf, &ret->addr) < 0)
		return -EINVAL;
	ret->addr &= mask_of(ret->prefix);
	return 0;
}

struct name_ip {
	const char *name;
	uint32_t ip;
	bool found;
};

static int
find_machine_ip(void *ud, const struct machine_rec *m)
{
	struct name_ip *x = ud;

	if (!streq(m->name, x->name) || ip_parse(m->ip, &x->ip) < 0)
		return 0;
	x->found = true;
	return 1;
}

/* One allow_from name: a network's subnet, or a machine's address. */
static int
allow_resolve(struct model_buf *b, const char *name, struct nft_cidr *ret)
{
	const struct net *n = model_net(b, name);
	struct name_ip x = {.name = name};

	if (n) {
		*ret = (struct nft_cidr){.addr = n->subnet, .prefix = n->prefix};
		return 1;
	}
	if (store_machine_list(b->d->store, NULL, find_machine_ip, &x, b->err) < 0)
		return -EIO;
	if (!x.found)
		return 0;
	*ret = (struct nft_cidr){.addr = x.ip, .prefix = 32};
	return 1;
}

/* Splits a comma list and calls fn on each non-empty item. */
static int
each_item(const char *list, int (*fn)(void *ud, const char *item), void *ud)
{
	char item[256];

	for (const char *p = list; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len && len < sizeof(item)) {
			memcpy(item, p, len);
			item[len] = '\0';
			int r = fn(ud, item);
			if (r < 0)
				return r;
		}
		p += len + (p[len] == ',');
	}
	return 0;
}

struct cidr_ctx {
	struct model_buf *b;
	size_t added;
	bool allow; /* allow_from names, else egress entries */
};

static int
cidr_one(void *ud, const char *item)
{
	struct cidr_ctx *x = ud;
	struct nft_cidr c;
	int r = x->allow ? allow_resolve(x->b, item, &c) : (egress_parse(item, &c) == 0);

	if (r <= 0) {
		if (r == 0)
			log_warn("policy: '%s' no longer names a machine, network or address: "
				 "skipped",
				 item);
		return r < 0 ? r : 0;
	}
	struct nft_cidr *slot = PUSH(x->b->cidrs);
	if (!slot)
		return -ENOMEM;
	*slot = c;
	x->added++;
	return 0;
}

/* Appends the list's entries to b->cidrs; *ret_n gets how many. A list whose every name is
 * gone still restricts: it becomes one entry no packet matches (0.0.0.0/32). */
static int
cidrs_add(struct model_buf *b, const char *list, bool allow, size_t *ret_n)
{
	struct cidr_ctx x = {.b = b, .allow = allow};
	int r = each_item(list, cidr_one, &x);

	if (r < 0)
		return r;
	if (x.added == 0 && list && *list) {
		struct nft_cidr *slot = PUSH(b->cidrs);
		if (!slot)
			return -ENOMEM;
		*slot = (struct nft_cidr){.addr = 0, .prefix = 32};
		x.added = 1;
	}
	*ret_n = x.added;
	return 0;
}

/* The stricter of the machine's own mode and its network's. */
static enum nft_mode
effective_mode(const char *machine_mode, const struct net *n)
{
	enum nft_mode a = mode_of(machine_mode), b = n ? mode_of(n->mode) : NFT_MODE_BRIDGE;

	return a > b ? a : b;
}

/* Machines stay in SQLite order; their list entries are placed in b->cidrs and pointed to
 * once every list is in (the array moves while it grows). */
struct list_span {
	size_t allow_at, n_allow, egress_at, n_egress;
};

struct machines_ctx {
	struct model_buf *b;
	VEC(struct list_span) spans;
};

static int
machine_one(void *ud, const struct machine_rec *m)
{
	struct machines_ctx *x = ud;
	struct model_buf *b = x->b;
	struct netns_names nn;
	const struct net *n = model_net(b, m->network);
	uint32_t ip;
	int r;

	if (!streq(m->state, "running") || !n || ip_parse(m->ip, &ip) < 0)
		return 0;
	netns_names_for(m->id, &nn);
	struct nft_machine *o = PUSH(b->machines);
	struct list_span *span = PUSH(x->spans);
	if (!o || !span)
		return -ENOMEM;
	o->name = model_strdup(b, m->name);
	o->veth_host = model_strdup(b, nn.veth_host);
	o->bridge = model_strdup(b, n->bridge);
	o->ip = ip;
	o->mode = effective_mode(m->network_mode, n);
	/* a machine switched to none while it runs still has its NIC until its next start: it
	 * is kept to its own network until then */
	if (o->mode == NFT_MODE_NONE)
		o->mode = NFT_MODE_ISOLATED;
	span->allow_at = b->cidrs.n;
	if ((r = cidrs_add(b, m->allow_from, true, &span->n_allow)) < 0)
		return r;
	span->egress_at = b->cidrs.n;
	if ((r = cidrs_add(b, m->egress_allow, false, &span->n_egress)) < 0)
		return r;
	return o->name && o->veth_host && o->bridge ? 0 : -ENOMEM;
}

static int
port_fill(struct nft_port *o, const struct port_rec *p)
{
	o->host_port = (uint16_t)p->host_port;
	o->machine_port = (uint16_t)p->machine_port;
	o->proto = streq(p->protocol, "udp") ? IPPROTO_UDP : IPPROTO_TCP;
	if (*p->host_ip && ip_parse(p->host_ip, &o->host_ip) < 0)
		return -EINVAL;
	return ip_parse(p->machine_ip, &o->machine_ip);
}

static int
port_one(void *ud, const struct port_rec *p)
{
	struct model_buf *b = ud;

	if (!streq(p->state, "running"))
		return 0;
	struct nft_port *o = PUSH(b->ports);
	if (!o)
		return -ENOMEM;
	if (port_fill(o, p) < 0) {
		log_warn("port %u/%s of '%s': bad address, skipped", p->host_port, p->protocol,
			 p->machine);
		b->ports.n--;
	}
	return 0;
}

static uint16_t
port_of_listen(const char *listen)
{
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	long v = colon ? strtol(colon + 1, NULL, 10) : 0;

	return v > 0 && v < 65536 ? (uint16_t)v : 0;
}

static int
model_build(struct daemon *d, struct model_buf *b, struct err *err)
{
	struct machines_ctx x = {.b = b};
	int r;

	memset(b, 0, sizeof(*b));
	b->d = d;
	b->err = err;
	if ((r = net_list_all(d, &b->nets, err)) < 0)
		return r;
	for (size_t i = 0; i < b->nets.n; i++) {
		const struct net *n = &b->nets.nets[i];
		struct nft_network *o = PUSH(b->networks);
		if (!o)
			return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
		*o = (struct nft_network){.name = n->name,
					  .bridge = n->bridge,
					  .subnet = n->subnet,
					  .prefix = n->prefix,
					  .gateway = n->gateway};
	}
	r = store_machine_list(d->store, NULL, machine_one, &x, err);
	for (size_t i = 0; r >= 0 && i < b->machines.n; i++) {
		b->machines.v[i].allow_from = b->cidrs.v + x.spans.v[i].allow_at;
		b->machines.v[i].n_allow_from = x.spans.v[i].n_allow;
		b->machines.v[i].egress_allow = b->cidrs.v + x.spans.v[i].egress_at;
		b->machines.v[i].n_egress_allow = x.spans.v[i].n_egress;
	}
	free(x.spans.v);
	if (r >= 0)
		r = store_port_list(d->store, NULL, NULL, port_one, b, err);
	if (r == -ENOMEM)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (r < 0)
		return r;
	size_t g = 0;
	if (d->cfg.port)
		b->guarded[g++] = (uint16_t)d->cfg.port;
	if (port_of_listen(d->cfg.remote_listen))
		b->guarded[g++] = port_of_listen(d->cfg.remote_listen);
	b->m = (struct nft_model){
		.networks = b->networks.v,
		.n_networks = b->networks.n,
		.machines = b->machines.v,
		.n_machines = b->machines.n,
		.ports = b->ports.v,
		.n_ports = b->ports.n,
		.guarded_ports = b->guarded,
		.n_guarded = g,
		.allow_smtp = !d->cfg.block_smtp,
	};
	return 0;
}

int
net_apply(struct daemon *d, struct err *err)
{
	struct model_buf b;
	int r;

	pthread_mutex_lock(&apply_lock);
	r = model_build(d, &b, err);
	if (r >= 0)
		r = nft_apply(&b.m, err);
	pthread_mutex_unlock(&apply_lock);
	model_free(&b);
	return r;
}

int
net_rules_text(struct daemon *d, struct strbuf *out, struct err *err)
{
	(void)d;
	return nft_render(out, err);
}

/* ---- exposed ports ------------------------------------------------------------------------ */

static bool
host_has_address(uint32_t ip)
{
	struct ifaddrs *ifa = NULL;
	bool found = false;

	if ((ip >> 24) == 127)
		return true;
	if (getifaddrs(&ifa) < 0)
		return false;
	for (struct ifaddrs *i = ifa; i && !found; i = i->ifa_next)
		found = i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
			ntohl(((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr.s_addr) == ip;
	freeifaddrs(ifa);
	return found;
}

int
net_port_check(const struct net_port *p, struct err *err)
{
	uint32_t ip;

	if (p->host_port < 1 || p->host_port > 65535)
		return err_set(err, ERR_INVALID, "port", EINVAL,
			       "host port %u is out of range: 1-65535", p->host_port);
	if (p->machine_port < 1 || p->machine_port > 65535)
		return err_set(err, ERR_INVALID, "port", EINVAL,
			       "machine port %u is out of range: 1-65535", p->machine_port);
	if (!streq(p->protocol, "tcp") && !streq(p->protocol, "udp"))
		return err_set(err, ERR_INVALID, "port", EINVAL,
			       "unknown protocol '%s': use tcp or udp", p->protocol);
	if (!*p->host_ip)
		return 0;
	if (ip_parse(p->host_ip, &ip) < 0)
		return err_set(err, ERR_INVALID, "port", EINVAL,
			       "host address '%s' is not an IPv4 address", p->host_ip);
	if (!host_has_address(ip))
		return err_set(err, ERR_INVALID, "port", EADDRNOTAVAIL,
			       "host address '%s' is not an address of this host", p->host_ip);
	return 0;
}

/* A host service listening on the port (any address, or the given one) makes binding it fail:
 * exposing it would take that service's traffic away. */
static int
host_port_free(const struct net_port *p, struct err *err)
{
	bool tcp = streq(p->protocol, "tcp");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->host_port)};
	cleanup_close int fd = socket(AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	int one = 1;
	uint32_t ip = 0;

	if (fd < 0)
		return 0;
	if (*p->host_ip)
		ip_parse(p->host_ip, &ip);
	sa.sin_addr.s_addr = htonl(ip);
	/* TCP: sockets in TIME_WAIT are no service */
	if (tcp)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != EADDRINUSE)
		return 0;
	return err_set(err, ERR_EXISTS, "port", EADDRINUSE,
		       "host port %u/%s is in use by a service on this host: choose another",
		       p->host_port, p->protocol);
}

struct holder {
	const struct net_port *p;
	char name[64];
};

static int
holder_one(void *ud, const struct port_rec *r)
{
	struct holder *h = ud;

	if (r->host_port != h->p->host_port || !streq(r->protocol, h->p->protocol))
		return 0;
	snprintf(h->name, sizeof(h->name), "%s", r->machine);
	return 1;
}

int
net_port_available(struct daemon *d, const struct net_port *p, struct err *err)
{
	struct holder h = {.p = p};
	int r = net_port_check(p, err);

	if (r < 0 || (r = store_port_list(d->store, NULL, NULL, holder_one, &h, err)) < 0)
		return r;
	if (h.name[0])
		return err_set(err, ERR_EXISTS, "port", EEXIST,
			       "host port %u/%s is already exposed by machine '%s'", p->host_port,
			       p->protocol, h.name);
	return host_port_free(p, err);
}

static int
nft_port_of(const struct machine_info *m, const struct net_port *p, struct nft_port *ret)
{
	struct port_rec rec = {.host_ip = p->host_ip,
			       .host_port = p->host_port,
			       .machine_port = p->machine_port,
			       .protocol = p->protocol,
			       .machine_ip = m->ip};

	memset(ret, 0, sizeof(*ret));
	return port_fill(ret, &rec);
}

int
net_expose(struct daemon *d, const struct machine_info *m, const struct net_port *p,
	   struct err *err)
{
	struct nft_port np;
	int r;

	if ((r = net_port_check(p, err)) < 0 || (r = host_port_free(p, err)) < 0)
		return r;
	if (nft_port_of(m, p, &np) < 0)
		return err_set(err, ERR_PRECONDITION, "machine", EINVAL,
			       "machine '%s' has no address", m->name);
	pthread_mutex_lock(&apply_lock);
	r = store_port_add(d->store, m->id, p->host_ip, p->host_port, p->machine_port, p->protocol,
			   err);
	if (r >= 0 && streq(m->state, "running") && (r = nft_port_add(&np, err)) < 0)
		store_port_del(d->store, m->id, p->host_port, p->protocol, NULL);
	pthread_mutex_unlock(&apply_lock);
	return r;
}

struct port_find {
	unsigned host_port;
	const char *protocol;
	struct net_port found;
	bool ok;
};

static int
port_find_one(void *ud, const struct port_rec *p)
{
	struct port_find *x = ud;

	if (p->host_port != x->host_port || !streq(p->protocol, x->protocol))
		return 0;
	snprintf(x->found.host_ip, sizeof(x->found.host_ip), "%s", p->host_ip);
	snprintf(x->found.protocol, sizeof(x->found.protocol), "%s", p->protocol);
	x->found.host_port = p->host_port;
	x->found.machine_port = p->machine_port;
	x->ok = true;
	return 1;
}

int
net_unexpose(struct daemon *d, const struct machine_info *m, unsigned host_port,
	     const char *protocol, struct err *err)
{
	struct port_find x = {.host_port = host_port, .protocol = protocol};
	struct nft_port np;
	int r = store_port_list(d->store, m->id, NULL, port_find_one, &x, err);

	if (r < 0)
		return r;
	if (!x.ok)
		return err_set(err, ERR_NOT_FOUND, "port", ENOENT,
			       "machine '%s' does not expose host port %u/%s", m->name, host_port,
			       protocol);
	pthread_mutex_lock(&apply_lock);
	if (streq(m->state, "running") && nft_port_of(m, &x.found, &np) == 0 &&
	    (r = nft_port_del(&np, err)) < 0 && err->code != ERR_NOT_FOUND) {
		pthread_mutex_unlock(&apply_lock);
		return r;
	}
	err_clear(err);
	r = store_port_del(d->store, m->id, host_port, protocol, err);
	pthread_mutex_unlock(&apply_lock);
	return r;
}

/* ---- policies ----------------------------------------------------------------------------- */

struct policy_ctx {
	struct daemon *d;
	struct err *err;
};

static int
allow_check_one(void *ud, const char *item)
{
	struct policy_ctx *x = ud;
	struct network_info n;
	struct machine_info *m = malloc(sizeof(*m));
	struct err probe = {0};
	int r = 0;

	if (!m)
		return err_set(x->err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if (!streq(item, "default") && store_network_get(x->d->store, item, &n, &probe) < 0 &&
	    store_machine_get(x->d->store, item, m, &probe) < 0)
		r = err_set(x->err, ERR_INVALID, "allow-from", ENOENT,
			    "--allow-from: '%s' is neither a machine nor a network", item);
	free(m);
	return r;
}

static int
egress_check_one(void *ud, const char *item)
{
	struct policy_ctx *x = ud;
	struct nft_cidr c;

	if (egress_parse(item, &c) < 0)
		return err_set(x->err, ERR_INVALID, "egress-allow", EINVAL,
			       "--egress-allow: '%s' is not ADDRESS[/PREFIX][:PORT] (e.g. "
			       "198.51.100.7:443 or 10.0.0.0/8:5432)",
			       item);
	return 0;
}

int
net_policy_check(struct daemon *d, const struct net_policy *p, struct err *err)
{
	struct policy_ctx x = {d, err};
	int r = mode_check(p->mode, err);

	if (r < 0 || (r = each_item(p->allow_from, allow_check_one, &x)) < 0)
		return r;
	return each_item(p->egress_allow, egress_check_one, &x);
}

int
net_set_policy(struct daemon *d, const struct machine_info *m, const struct net_policy *p,
	       struct err *err)
{
	int r = net_policy_check(d, p, err);

	if (r < 0)
		return r;
	r = store_machine_set_policy(d->store, m->id, p->mode && *p->mode ? p->mode : "bridge",
				     p->allow_from ? p->allow_from : "",
				     p->egress_allow ? p->egress_allow : "", err);
	return r < 0 ? r : net_apply(d, err);
}

/* ---- machines coming and going ------------------------------------------------------------ */

int
net_machine_up(struct daemon *d, const struct machine_info *m, struct err *err)
{
	(void)m;
	return net_apply(d, err);
}

void
net_machine_down(struct daemon *d, const struct machine_info *m)
{
	struct err err = {0};

	if (net_apply(d, &err) < 0)
		log_warn("machine '%s' stopped, but its rules stay: %s", m->name, err.msg);
}

bool
net_machine_has_nic(struct daemon *d, const struct machine_info *m)
{
	struct net n;
	bool found = net_resolve(d, m->network, &n, NULL) == 0;

	return effective_mode(m->network_mode, found ? &n : NULL) != NFT_MODE_NONE;
}

void
net_boot_arg(const struct net *net, const char *ip, const char *name, char *buf, size_t size)
{
	char gw[16], mask[16];

	ip_text(net->gateway, gw);
	ip_text(mask_of(net->prefix), mask);
	snprintf(buf, size, "ip=%s::%s:%s:%s:eth0:off", ip, gw, mask, name);
}

/* ---- DNS names ---------------------------------------------------------------------------- */

struct dns_ctx {
	struct daemon *d;
	const char *name;    /* machine */
	const char *network; /* its network, or NULL: the asker's */
	uint32_t client;
	char client_net[32];
	uint32_t ip;
	bool found;
};

static int
dns_client_net(void *ud, const struct machine_rec *m)
{
	struct dns_ctx *x = ud;
	uint32_t ip;

	if (ip_parse(m->ip, &ip) == 0 && ip == x->client) {
		snprintf(x->client_net, sizeof(x->client_net), "%s", m->network);
		return 1;
	}
	return 0;
}

static int
dns_find(void *ud, const struct machine_rec *m)
{
	struct dns_ctx *x = ud;

	if (strcasecmp(m->name, x->name) != 0 || ip_parse(m->ip, &x->ip) < 0)
		return 0;
	x->found = true;
	return 1;
}

/* <machine> (on the asker's network) and <machine>.<network>.sistemo. */
static int
dns_lookup(void *ud, const char *qname, uint32_t client, uint32_t *ret)
{
	struct dns_ctx x = {.d = ud, .client = client};
	char name[256], *dot;
	size_t len = strlen(qname);

	if (len >= sizeof(name))
		return -1;
	memcpy(name, qname, len + 1);
	bool ours = len > 8 && strcasecmp(name + len - 8, ".sistemo") == 0;
	if (ours) {
		name[len - 8] = '\0';
		if (!(dot = strchr(name, '.')) || strchr(dot + 1, '.'))
			return 0;
		*dot = '\0';
		x.network = dot + 1;
	} else if (strchr(name, '.')) {
		return -1;
	} else {
		if (store_machine_list(x.d->store, NULL, dns_client_net, &x, NULL) < 0 ||
		    !x.client_net[0])
			return -1;
		x.network = x.client_net;
	}
	x.name = name;
	if (store_machine_list(x.d->store, x.network, dns_find, &x, NULL) < 0)
		return ours ? 0 : -1;
	if (!x.found)
		return ours ? 0 : -1;
	*ret = x.ip;
	return 1;
}

static void
dns_start(struct daemon *d, const struct net_list *l)
{
	uint32_t up[8];
	int n = dns_upstreams_from_resolv_conf("/etc/resolv.conf", up, ARRAY_SIZE(up));
	struct err err = {0};

	if (dns_server_new(dns_lookup, d, &d->dns, &err) < 0) {
		log_warn("DNS names are off: %s", err.msg);
		return;
	}
	dns_server_set_upstreams(d->dns, up, n > 0 ? (size_t)n : 0);
	for (size_t i = 0; i < l->n; i++)
		if (dns_server_listen(d->dns, l->nets[i].gateway, DNS_PORT, &err) < 0) {
			log_warn("network '%s': no DNS names: %s", l->nets[i].name, err.msg);
			err_clear(&err);
		}
}

int
net_host_start(struct daemon *d, struct err *err)
{
	struct net_list l;
	int r = net_list_all(d, &l, err);

	for (size_t i = 0; r >= 0 && i < l.n; i++) {
		const struct net *n = &l.nets[i];
		if ((r = netns_bridge_ensure(n->bridge, n->gateway, n->prefix, err)) < 0 ||
		    (r = bridge_sysctls(n->bridge, err)) < 0)
			err_wrap(err, "network '%s'", n->name);
	}
	if (r >= 0 && (r = net_apply(d, err)) < 0)
		err_wrap(err, "nftables");
	if (r >= 0)
		dns_start(d, &l);
	free(l.nets);
	/* spare namespaces on the default bridge: a deploy takes one (netns.h). Optional: without
	 * them a deploy builds its namespace whole */
	struct err serr = {0};
	if (r >= 0 && netns_spares_start(NET_SPARES, d->bridge, &serr) < 0) {
		log_warn("spare namespaces: %s", serr.msg);
		err_clear(&serr);
	}
	return r;
}

void
net_host_stop(struct daemon *d)
{
	netns_spares_stop();
	dns_server_free(d->dns);
	d->dns = NULL;
}
