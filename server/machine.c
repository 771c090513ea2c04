#include "machine.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "daemon.h"
#include "host.h"
#include "image.h"
#include "image_resolve.h"
#include "kit.h"
#include "log.h"
#include "macro.h"
#include "netns.h"
#include "network.h"
#include "ops.h"
#include "ssh.h"
#include "uuid.h"
#include "vmm.h"
#include "volume.h"

#define STOP_GRACE_MS 30000
#define TCG_BOOT_FACTOR 3

static void
progress(struct op *op, const char *step, unsigned percent, const char *msg)
{
	if (op)
		op_progress(op, step, percent, "%s", msg);
}

static int
check_name(const char *name, struct err *err)
{
	size_t n = strlen(name);
	bool ok = n > 0 && n <= 63 && isalnum((unsigned char)name[0]);

	for (size_t i = 0; ok && i < n; i++)
		ok = islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) ||
		     name[i] == '-';
	if (!ok)
		return err_set(
			err, ERR_INVALID, "name", EINVAL,
			"invalid machine name '%.80s': use 1 to 63 lowercase letters, digits "
			"and '-', starting with a letter or digit",
			name);
	return 0;
}

/* "tiny" -> "tiny"; "/srv/images/My_App.ext4" -> "my-app". */
static void
name_from_image(const char *image, char *buf, size_t size)
{
	const char *base = strrchr(image, '/') ? strrchr(image, '/') + 1 : image;
	size_t o = 0;

	for (size_t i = 0; base[i] && base[i] != '.' && base[i] != ':' && o + 1 < size && o < 63;
	     i++)
		buf[o++] = isalnum((unsigned char)base[i]) ? (char)tolower((unsigned char)base[i])
							   : '-';
	buf[o] = '\0';
}

static int
check_resources(const struct daemon *d, const struct machine_spec *s, struct err *err)
{
	const struct config *c = &d->cfg;

	if (s->vcpus < 1 || s->vcpus > c->max_vcpus)
		return err_set(err, ERR_INVALID, "vcpus", EINVAL,
			       "vcpus %u is out of range: 1 to %u (max_vcpus)", s->vcpus,
			       c->max_vcpus);
	if (s->memory_mb < 128 || s->memory_mb > c->max_memory_mb)
		return err_set(err, ERR_INVALID, "memory_mb", EINVAL,
			       "memory %llu MB is out of range: 128 to %llu MB (max_memory_mb)",
			       (unsigned long long)s->memory_mb,
			       (unsigned long long)c->max_memory_mb);
	if (s->storage_mb < 64 || s->storage_mb > c->max_storage_mb)
		return err_set(err, ERR_INVALID, "storage_mb", EINVAL,
			       "storage %llu MB is out of range: 64 to %llu MB (max_storage_mb)",
			       (unsigned long long)s->storage_mb,
			       (unsigned long long)c->max_storage_mb);
	return 0;
}

static int
check_image(const struct daemon *d, const char *image, struct err *err)
{
	return image_check_ref(d, image, err);
}

int
machine_spec_check(const struct daemon *d, struct machine_spec *spec, char *name_buf,
		   size_t name_size, struct err *err)
{
	bool from_volume = spec->volume && *spec->volume;

	if (from_volume && spec->image && *spec->image)
		return err_set(err, ERR_INVALID, "volume", EINVAL,
			       "give an image or a volume to boot from (--volume), not both");
	if (!from_volume && (!spec->image || !*spec->image))
		return err_set(err, ERR_INVALID, "image", EINVAL,
			       "an image is required (built-in: tiny, debian)");
	if (!from_volume && check_image(d, spec->image, err) < 0)
		return -ENOENT;
	if (!spec->name || !*spec->name) {
		name_from_image(from_volume ? spec->volume : spec->image, name_buf, name_size);
		spec->name = name_buf;
	}
	int r = check_name(spec->name, err);
	return r < 0 ? r : check_resources(d, spec, err);
}

/* The image build's share of a deploy: 5% to 29%. */
static void
image_progress(void *ud, const char *step, unsigned percent, const char *message)
{
	progress(ud, step, 5 + percent * 24 / 100, message);
}

static bool
op_asks_cancel(void *ud)
{
	return ud && op_cancelled(ud);
}

/* The image file to clone (docs/images.md: path, URL, store, built-in, registry). */
static int
resolve_image(struct daemon *d, const char *image, struct op *op, struct image_info *ret,
	      struct err *err)
{
	struct image_progress p = {image_progress, op_asks_cancel, op};

	progress(op, "image", 5, "resolving the image");
	return image_resolve(d, image, &p, ret, err);
}

/* The image's OCI command, when it has one, as /etc/sistemo/entrypoint of the root disk. */
static int
inject_entrypoint(const struct image_info *im, const char *rootfs, struct err *err)
{
	cleanup_strbuf struct strbuf script = {0};
	int r = image_entrypoint_script(im->meta, &script);

	if (r < 0)
		return err_set(err, ERR_INTERNAL, NULL, -r, "entrypoint: %s", strerror(-r));
	return r == 0 ? 0 : kit_rootfs_inject_entrypoint(rootfs, script.data, err);
}

static int
find_kernel(struct daemon *d, struct op *op, struct kit_kernel *k, struct err *err)
{
	struct err probe = {0};

	if (kit_kernel_find(d->paths.data_dir, k, &probe) == 0)
		return 0;
	progress(op, "kernel", 3, "installing the guest kernel and initramfs");
	int r = kit_install(d->paths.data_dir, false, NULL, NULL, err);
	return r < 0 ? r : kit_kernel_find(d->paths.data_dir, k, err);
}

/* The kernel command line: its address, gateway and netmask derive from its network; volumes
 * ("sistemo.volumes=..." or "") names its data volumes for the sistemo init. */
static int
cmdline_for(struct daemon *d, const struct machine_info *m, const char *volumes, char *buf,
	    size_t size, struct err *err)
{
	char ip[96];
	struct net net;
	int n;

	if (net_resolve(d, m->network, &net, err) < 0)
		return -ENOENT;
	/* without a NIC (mode none) there is no ip=: the inits then leave the network alone */
	if (net_machine_has_nic(d, m))
		net_boot_arg(&net, m->ip, m->name, ip, sizeof(ip));
	else
		ip[0] = '\0';
	n = snprintf(buf, size,
		     "console=ttyS0 reboot=k panic=-1 root=/dev/vda rw rootfstype=ext4 "
		     "net.ifnames=0 %s init=/sbin/sistemo-init sistemo.name=%s%s%s",
		     ip, m->name, *volumes ? " " : "", volumes);
	if (!d->kvm && d->tsc_khz && n > 0 && (size_t)n < size)
		snprintf(buf + n, size - (size_t)n, " tsc_early_khz=%u", d->tsc_khz);
	return 0;
}

/* How long a guest may take to be ready: ssh_timeout_sec assumes a guest at native speed
 * (KVM). Under TCG it runs several times slower: the debian image's systemd boot took 50 to
 * 160 s on a busy 2-core host, where KVM boots it in seconds. */
static unsigned
boot_timeout_ms(const struct daemon *d)
{
	return d->cfg.ssh_timeout_sec * 1000u * (d->kvm ? 1 : TCG_BOOT_FACTOR);
}

/* Boots the machine's VMM in its namespace and waits for the guest; pid and boot time out. */
static int
boot(struct daemon *d, const struct machine_info *m, struct op *op, pid_t *ret_pid,
     uint64_t *ret_boot_ms, struct err *err)
{
	struct netns_names nn;
	struct kit_kernel k;
	char run_dir[PATH_MAX], cmdline[2048];
	cleanup_free struct volume_disks *disks = NULL;
	const struct vmm_driver *drv = vmm_driver_find(m->driver);
	int r;

	if (!drv)
		return err_set(err, ERR_PRECONDITION, NULL, ENOENT, "unknown VMM driver '%s'",
			       m->driver);
	if ((r = find_kernel(d, op, &k, err)) < 0)
		return r;
	netns_names_for(m->id, &nn);
	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	if ((r = volume_machine_disks(d, m, &disks, err)) < 0 ||
	    (r = cmdline_for(d, m, disks->cmdline, cmdline, sizeof(cmdline), err)) < 0)
		return r;
	struct vmm_config cfg = {
		.id = m->id,
		.name = m->name,
		.vcpus = m->vcpus,
		.memory_mb = m->memory_mb,
		.kernel = streq(drv->name, "firecracker") ? k.vmlinux : k.kernel,
		.initrd = k.initrd,
		.cmdline = cmdline,
		.rootfs = disks->root,
		.disks = disks->data_paths,
		.n_disks = disks->n_data,
		.tap = net_machine_has_nic(d, m) ? nn.tap : NULL,
		.mac = m->mac,
		.netns_path = nn.ns_path,
		.run_dir = run_dir,
		.kvm = d->kvm,
	};
	struct timespec t0, t1;
	struct cgroup_machine cg;
	struct err cgerr = {0};
	if (cgroup_machine_create(m->id, m->vcpus, m->memory_mb, &cg, &cgerr) == 0)
		cfg.cgroup = cg.cpu;
	else
		log_warn("machine '%s' runs without CPU and memory limits: %s", m->name, cgerr.msg);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	progress(op, "boot", 70, "starting the VMM");
	if ((r = drv->start(&cfg, ret_pid, err)) < 0) {
		cgroup_machine_delete(m->id);
		return err_wrap(err, "start %s", drv->name);
	}
	if (cfg.cgroup && cgroup_machine_attach(&cg, *ret_pid, &cgerr) < 0)
		log_warn("machine '%s': memory limit not applied: %s", m->name, cgerr.msg);
	progress(op, "boot", 80, "waiting for the guest");
	if ((r = vmm_wait_ready(run_dir, *ret_pid, boot_timeout_ms(d), err)) < 0) {
		bool clean;
		vmm_stop(drv, run_dir, *ret_pid, 0, &clean, NULL);
		cgroup_machine_delete(m->id);
		return err_wrap(err, "boot");
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ret_boot_ms =
		(uint64_t)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void
remove_tree(const char *dir)
{
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		log_warn("remove '%s': %s", dir, strerror(errno));
}

/* Root disk: clone the image, grow it, inject the init, the key and the entrypoint. */
static int
make_disk(struct daemon *d, const struct machine_spec *spec, const struct machine_info *m,
	  struct op *op, struct err *err)
{
	char run_dir[PATH_MAX], rootfs[PATH_MAX + 16], key[1024];
	cleanup_free struct image_info *im = malloc(sizeof(*im));
	int r;

	if (!im)
		return err_set(err, ERR_INTERNAL, NULL, ENOMEM, "out of memory");
	if ((r = resolve_image(d, spec->image, op, im, err)) < 0 ||
	    (r = store_machine_set_image_digest(d->store, m->id, im->digest, err)) < 0)
		return r;
	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	if (mkdir(run_dir, 0700) < 0)
		return err_set(err, ERR_INTERNAL, NULL, errno, "create '%s': %s", run_dir,
			       strerror(errno));
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs.ext4", run_dir);
	progress(op, "disk", 30, "copying the root disk");
	if ((r = kit_rootfs_clone(im->path, rootfs, spec->storage_mb, err)) < 0)
		return err_wrap(err, "root disk");
	progress(op, "disk", 50, "injecting the sistemo init and SSH key");
	if ((r = ssh_key_public(d->ssh_dir, key, sizeof(key), err)) < 0 ||
	    (r = kit_rootfs_inject(rootfs, key, err)) < 0 ||
	    (r = inject_entrypoint(im, rootfs, err)) < 0)
		return err_wrap(err, "inject");
	return 0;
}

/* The host bridge of a machine's network. */
static int
machine_bridge(struct daemon *d, const struct machine_info *m, char bridge[16], struct err *err)
{
	struct net net;
	int r = net_resolve(d, m->network, &net, err);

	if (r < 0)
		return err_wrap(err, "network '%s'", m->network);
	snprintf(bridge, 16, "%s", net.bridge);
	return 0;
}

static int
record(struct daemon *d, const struct machine_spec *spec, struct machine_info *m, struct err *err)
{
	struct netns_names nn;
	struct in_addr a;
	char id[37], ip[16];
	const char *driver = d->vmms[1].is_default ? "firecracker" : "qemu";
	struct net net;
	int r;

	if ((r = net_resolve(d, spec->network, &net, err)) < 0)
		return r;
	uuid_generate_text(id);
	netns_names_for(id, &nn);
	struct machine_rec rec = {.id = id,
				  .name = spec->name,
				  .image = spec->image,
				  .driver = driver,
				  .vcpus = spec->vcpus,
				  .memory_mb = spec->memory_mb,
				  .storage_mb = spec->storage_mb,
				  .mac = "",
				  .namespace = nn.ns,
				  .network = net.name,
				  .network_mode = spec->policy.mode,
				  .allow_from = spec->policy.allow_from,
				  .egress_allow = spec->policy.egress_allow};
	if ((r = store_machine_create(d->store, &rec, net.subnet, net.prefix, ip, err)) < 0)
		return r;
	for (size_t i = 0; i < spec->n_ports; i++) {
		const struct net_port *p = &spec->ports[i];
		if ((r = store_port_add(d->store, id, p->host_ip, p->host_port, p->machine_port,
					p->protocol, err)) < 0) {
			store_machine_delete(d->store, id, NULL);
			return r;
		}
	}
	/* A MAC derived from the IP: stable across boots, so no neighbour goes stale. */
	if (inet_pton(AF_INET, ip, &a) != 1)
		return err_set(err, ERR_INTERNAL, NULL, EINVAL, "allocated a bad address '%s'", ip);
	char mac[18];
	vmm_mac_for_ip(ntohl(a.s_addr), mac);
	if ((r = store_machine_set_mac(d->store, id, mac, err)) < 0)
		return r;
	return store_machine_get(d->store, id, m, err);
}

/* Undoes a deploy from the step it reached, in reverse. */
static void
deploy_rollback(struct daemon *d, const struct machine_info *m, int reached)
{
	struct netns_names nn;
	struct err err = {0};
	char run_dir[PATH_MAX];

	netns_names_for(m->id, &nn);
	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	if (reached >= 3 && netns_machine_delete(&nn, &err) < 0)
		log_warn("rollback of '%s': %s", m->name, err.msg);
	if (reached >= 2)
		remove_tree(run_dir);
	if (reached >= 1 && store_machine_delete(d->store, m->id, &err) < 0)
		log_warn("rollback of '%s': %s", m->name, err.msg);
}

static int
cancelled(struct op *op, struct err *err)
{
	if (op && op_cancelled(op))
		return err_set(err, ERR_CANCELLED, NULL, ECANCELED, "cancelled");
	return 0;
}

int
machine_deploy(struct daemon *d, const struct machine_spec *spec, struct op *op,
	       struct machine_info *ret, struct err *err)
{
	struct netns_names nn;
	char bridge[16];
	int reached = 0, r;
	pid_t pid = 0;
	uint64_t boot_ms = 0;
	struct volume_deploy vd = {spec->volume, spec->attach, spec->n_attach};

	progress(op, "record", 1, "recording the machine");
	if ((r = record(d, spec, ret, err)) < 0)
		return r;
	reached = 1;
	netns_names_for(ret->id, &nn);
	if ((r = cancelled(op, err)) < 0 || (r = volume_deploy_claim(d, ret, &vd, err)) < 0 ||
	    (reached = 2, r = vd.boot && *vd.boot ? volume_deploy_disk(d, ret, op, err)
						  : make_disk(d, spec, ret, op, err)) < 0)
		goto fail;
	progress(op, "network", 60, "creating the network namespace");
	if ((r = cancelled(op, err)) < 0 || (r = machine_bridge(d, ret, bridge, err)) < 0 ||
	    (reached = 3, r = netns_machine_create(&nn, bridge, err)) < 0)
		goto fail;
	if ((r = cancelled(op, err)) < 0 || (r = boot(d, ret, op, &pid, &boot_ms, err)) < 0)
		goto fail;
	if ((r = store_machine_set_state(d->store, ret->id, "running", pid, boot_ms, "", err)) < 0)
		goto fail;
	progress(op, "network", 95, "opening its ports and applying its policy");
	if ((r = net_machine_up(d, ret, err)) < 0) {
		store_machine_set_state(d->store, ret->id, "creating", pid, 0, "", NULL);
		err_wrap(err, "rules");
		goto fail;
	}
	progress(op, "ready", 100, "running");
	return store_machine_get(d->store, ret->id, ret, err);
fail:
	if (pid > 0) {
		char run_dir[PATH_MAX];
		bool clean;
		paths_machine_dir(&d->paths, ret->id, run_dir, sizeof(run_dir));
		vmm_stop(vmm_driver_find(ret->driver), run_dir, pid, 0, &clean, NULL);
	}
	deploy_rollback(d, ret, reached);
	return r;
}

int
machine_start(struct daemon *d, const char *ref, struct op *op, struct machine_info *ret,
	      struct err *err)
{
	struct netns_names nn;
	char bridge[16];
	pid_t pid = 0;
	uint64_t boot_ms = 0;
	int r = store_machine_transition(d->store, ref, "stopped,error", "starting", ret, err);

	if (r < 0)
		return r;
	netns_names_for(ret->id, &nn);
	progress(op, "network", 20, "creating the network namespace");
	if (netns_machine_exists(&nn))
		netns_machine_delete(&nn, NULL);
	r = machine_bridge(d, ret, bridge, err);
	if (r >= 0)
		r = netns_machine_create(&nn, bridge, err);
	if (r >= 0 && (r = boot(d, ret, op, &pid, &boot_ms, err)) < 0)
		netns_machine_delete(&nn, NULL);
	if (r < 0) {
		store_machine_set_state(d->store, ret->id, "error", 0, 0, err->msg, NULL);
		return r;
	}
	r = store_machine_set_state(d->store, ret->id, "running", pid, boot_ms, "", err);
	if (r >= 0 && net_machine_up(d, ret, err) < 0) {
		log_warn("machine '%s' runs without its ports and policy: %s", ret->name, err->msg);
		err_clear(err);
	}
	progress(op, "ready", 100, "running");
	return r < 0 ? r : store_machine_get(d->store, ret->id, ret, err);
}

/* Stops the VMM (if any) and removes the namespace of a machine in a transitional state. */
static void
halt(struct daemon *d, const struct machine_info *m, unsigned grace_ms)
{
	struct netns_names nn;
	struct err err = {0};
	char run_dir[PATH_MAX];
	bool clean = false;

	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	if (m->pid > 0 && vmm_alive((pid_t)m->pid, run_dir) &&
	    vmm_stop(vmm_driver_find(m->driver), run_dir, (pid_t)m->pid, grace_ms, &clean, &err) <
		    0)
		log_warn("stop '%s': %s", m->name, err.msg);
	netns_names_for(m->id, &nn);
	if (netns_machine_delete(&nn, &err) < 0)
		log_warn("stop '%s': %s", m->name, err.msg);
	cgroup_machine_delete(m->id);
	/* not 'running' any more: its ports and policy leave the ruleset */
	net_machine_down(d, m);
	log_info("machine '%s' stopped%s", m->name, clean ? " (clean power-off)" : "");
}

int
machine_stop(struct daemon *d, const char *ref, unsigned timeout_sec, bool force,
	     struct machine_info *ret, struct err *err)
{
	int r = store_machine_transition(d->store, ref, "running", "stopping", ret, err);

	if (r < 0)
		return r;
	halt(d, ret, force ? 0 : timeout_sec ? timeout_sec * 1000 : STOP_GRACE_MS);
	r = store_machine_set_state(d->store, ret->id, "stopped", 0, 0, "", err);
	return r < 0 ? r : store_machine_get(d->store, ret->id, ret, err);
}

static int
finish_delete(struct daemon *d, const struct machine_info *m, bool preserve, struct err *err)
{
	char run_dir[PATH_MAX];

	halt(d, m, 10000);
	if (volume_machine_release(d, m, preserve, err) < 0) {
		store_machine_set_state(d->store, m->id, "error", 0, 0, err->msg, NULL);
		return err_wrap(err, "delete machine '%s'", m->name);
	}
	paths_machine_dir(&d->paths, m->id, run_dir, sizeof(run_dir));
	remove_tree(run_dir);
	return store_machine_delete(d->store, m->id, err);
}

int
machine_delete(struct daemon *d, const char *ref, bool preserve_storage, struct machine_info *ret,
	       struct err *err)
{
	int r = store_machine_transition(d->store, ref, "running,stopped,error", "deleting", ret,
					 err);

	return r < 0 ? r : finish_delete(d, ret, preserve_storage, err);
}

/* Machine ids, collected first: store callbacks hold the store's lock. */
struct id_list {
	char (*ids)[40];
	size_t n;
};

static int
collect_id(void *ud, const struct machine_rec *m)
{
	struct id_list *l = ud;
	char(*grown)[40] = realloc(l->ids, (l->n + 1) * sizeof(*l->ids));

	if (!grown)
		return -ENOMEM;
	l->ids = grown;
	snprintf(l->ids[l->n++], sizeof(l->ids[0]), "%s", m->id);
	return 0;
}

/* Recovery of one machine after a restart (see machine.h). */
static void
recover_one(struct daemon *d, const char *id)
{
	struct machine_info m;
	struct err err = {0};
	char run_dir[PATH_MAX];

	if (store_machine_get(d->store, id, &m, &err) < 0)
		return;
	paths_machine_dir(&d->paths, m.id, run_dir, sizeof(run_dir));
	bool alive = m.pid > 0 && vmm_alive((pid_t)m.pid, run_dir);
	if (streq(m.state, "creating")) {
		log_warn("machine '%s': deploy interrupted by a restart: rolling it back", m.name);
		halt(d, &m, 0);
		remove_tree(run_dir);
		store_machine_delete(d->store, m.id, &err);
	} else if (streq(m.state, "deleting")) {
		/* whether the delete was to keep the root disk is not known: it is kept */
		finish_delete(d, &m, true, &err);
	} else if (alive && (streq(m.state, "running") || streq(m.state, "starting"))) {
		store_machine_set_state(d->store, m.id, "running", m.pid, 0, "", &err);
		log_info("machine '%s': adopted its running VMM (pid %lld)", m.name,
			 (long long)m.pid);
	} else if (!streq(m.state, "stopped") && !streq(m.state, "error")) {
		halt(d, &m, 0);
		store_machine_set_state(d->store, m.id, "stopped", 0, 0, "", &err);
	}
}

struct live_ns {
	const char *ns;
	bool live;
};

static int
match_live_ns(void *ud, const struct machine_rec *m)
{
	struct live_ns *x = ud;

	if (!streq(m->namespace, x->ns) || streq(m->state, "stopped") || streq(m->state, "error"))
		return 0;
	x->live = true;
	return 1;
}

static int
remove_orphan(void *ud, const char *ns)
{
	struct daemon *d = ud;
	struct live_ns x = {.ns = ns};
	struct netns_names nn = {0};
	struct err err = {0};

	if (store_machine_list(d->store, NULL, match_live_ns, &x, &err) < 0 || x.live)
		return 0;
	snprintf(nn.ns, sizeof(nn.ns), "%s", ns);
	snprintf(nn.ns_path, sizeof(nn.ns_path), "/run/netns/%s", ns);
	snprintf(nn.veth_host, sizeof(nn.veth_host), "vh-%.8s", ns + strlen("sistemo-"));
	log_info("removing orphaned namespace '%s'", ns);
	if (netns_machine_delete(&nn, &err) < 0)
		log_warn("remove '%s': %s", ns, err.msg);
	return 0;
}

/* A host veth end whose namespace is gone stays while a record still claims that namespace
 * (a machine in the middle of an operation, or running: its VMM may hold the namespace). */
static int
keep_host_end(void *ud, const char *ns)
{
	struct daemon *d = ud;
	struct live_ns x = {.ns = ns};
	struct err err = {0};

	return store_machine_list(d->store, NULL, match_live_ns, &x, &err) < 0 || x.live;
}

static int
for_each_machine(struct daemon *d, void (*fn)(struct daemon *d, const char *id), struct err *err)
{
	struct id_list l = {0};
	int r = store_machine_list(d->store, NULL, collect_id, &l, err);

	for (size_t i = 0; r >= 0 && i < l.n; i++)
		fn(d, l.ids[i]);
	free(l.ids);
	return r;
}

int
machine_recover(struct daemon *d, struct err *err)
{
	int r = volume_recover(d, err);

	if (r >= 0)
		r = for_each_machine(d, recover_one, err);
	return r < 0 ? r : netns_list(remove_orphan, d, err);
}

/* A running machine whose VMM is gone becomes stopped; its zombie, if ours, is reaped. */
static void
reconcile_one(struct daemon *d, const char *id)
{
	struct machine_info m;
	struct err err = {0};
	char run_dir[PATH_MAX];

	if (store_machine_get(d->store, id, &m, &err) < 0 || !streq(m.state, "running"))
		return;
	paths_machine_dir(&d->paths, m.id, run_dir, sizeof(run_dir));
	if (m.pid <= 0 || vmm_alive((pid_t)m.pid, run_dir))
		return;
	waitpid((pid_t)m.pid, NULL, WNOHANG);
	log_warn("machine '%s': its VMM (pid %lld) exited: marking it stopped", m.name,
		 (long long)m.pid);
	if (store_machine_transition(d->store, m.id, "running", "stopping", &m, &err) < 0)
		return;
	halt(d, &m, 0);
	store_machine_set_state(d->store, m.id, "stopped", 0, 0, "the VMM exited", &err);
}

void
machine_reconcile(struct daemon *d)
{
	struct err err = {0};

	if (for_each_machine(d, reconcile_one, &err) < 0 ||
	    netns_list(remove_orphan, d, &err) < 0 ||
	    netns_orphan_links(keep_host_end, d, &err) < 0)
		log_warn("reconciler: %s", err.msg);
}
