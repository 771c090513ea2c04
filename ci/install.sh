#!/usr/bin/env bash
# Installs everything sistemo needs on Debian 12, from Debian's packages only. Idempotent: a
# second run installs nothing and takes about a second.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "ci/install.sh: run as root (apt-get)" >&2; exit 1; }

build=(build-essential cmake pkg-config clang-format clang-tidy
	libprotobuf-c-dev protobuf-c-compiler libnng-dev libsqlite3-dev
	libnl-3-dev libnl-route-3-dev libnftnl-dev libmnl-dev libnftables-dev libssh2-1-dev
	libmbedtls-dev libcrypt-dev libyaml-dev libcmocka-dev libarchive-dev libjansson-dev
	libcurl4-openssl-dev zlib1g-dev liblzma-dev libzstd-dev)
runtime=(nftables libnftables1 iproute2 e2fsprogs openssh-client sqlite3 procps util-linux
	libcurl4 zlib1g liblzma5 libzstd1 libarchive13 libjansson4)
test=(jq zsh fish iputils-ping python3 nftables curl socat)
guest=(qemu-system-x86 busybox-static dropbear-bin debootstrap kmod cpio)
# `sistemo kernel build`: the kernel source and what compiling it needs beyond build-essential
kernel=(linux-source-6.1 flex bison libelf-dev bc)
web=(chromium chromium-driver)

missing=()
for p in "${build[@]}" "${runtime[@]}" "${test[@]}" "${guest[@]}" "${kernel[@]}" "${web[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The guest kernel is Debian's cloud kernel. It is fetched as a package file, never installed
# on the host: `sistemo install` unpacks it into the data directory.
if ! ls /var/cache/apt/archives/linux-image-*-cloud-amd64_*.deb >/dev/null 2>&1; then
	[ ${#missing[@]} -gt 0 ] || apt-get update -q
	apt-get install -y -q --download-only --no-install-recommends linux-image-cloud-amd64
fi
echo "ci/install.sh: all dependencies present"
