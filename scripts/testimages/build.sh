#!/bin/bash
# Builds the local test images without any registry: busybox-static for a
# tiny app image, a debootstrap'ed Debian rootfs for MariaDB and PostgreSQL.
# Nothing here ever pulls: an image is either present, loaded from the
# machine-wide cache, or built from Debian packages.
#
# Usage: scripts/testimages/build.sh [app|mariadb|postgres ...]
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${TEST_IMAGE_CACHE:-/var/cache/docker-backup-test-images}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Bump when an entrypoint or package list changes, so caches are rebuilt.
REVISION=2

APP_IMAGE=localtest/app:1
MARIADB_IMAGE=localtest/mariadb:10.11
POSTGRES_IMAGE=localtest/postgres:15

log() { echo "[test-images] $*" >&2; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# load_or_build IMAGE NAME BUILD_FN: docker-load the cached tar, else build.
load_or_build() {
  local image="$1" name="$2" build_fn="$3"
  local cached="$CACHE/${name}-r${REVISION}.docker.tar"
  if have_image "$image"; then
    log "$image present"
    # Keep a copy for fresh engines on this machine (e.g. /var/lib/docker wiped).
    [ -s "$cached" ] || { docker save -o "$cached.tmp" "$image" && mv "$cached.tmp" "$cached"; }
    return
  fi
  if [ -s "$cached" ]; then
    log "loading $image from $cached"
    docker load -i "$cached" >/dev/null
  else
    "$build_fn" "$image"
    docker save -o "$cached.tmp" "$image"
    mv "$cached.tmp" "$cached"
  fi
  have_image "$image" || { log "failed to build $image"; exit 1; }
}

build_app() {
  local image="$1" root
  command -v busybox >/dev/null || apt-get install -y -q busybox-static >/dev/null
  root="$(mktemp -d)"
  mkdir -p "$root"/{bin,tmp,data,etc,proc,sys,dev}
  cp "$(command -v busybox)" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    # The list names busybox itself: linking it would replace the binary.
    [ "$applet" = busybox ] && continue
    ln -sf busybox "$root/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  echo 'root:x:0:' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  log "importing $image"
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["sleep", "infinity"]' - "$image" >/dev/null
  rm -rf "$root"
}

# base_rootfs: a minbase Debian tree, cached as a tarball so each DB image
# starts from it without running debootstrap again.
base_rootfs() {
  local tarball="$CACHE/debian-${SUITE}-minbase.tar"
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
    local root
    root="$(mktemp -d)"
    log "debootstrap $SUITE (minbase) — takes a few minutes once"
    debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { log "debootstrap failed, see $CACHE/debootstrap.log"; exit 1; }
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  echo "$tarball"
}

# build_db_image IMAGE ENTRYPOINT EXTRA_PATH CMD PACKAGES...
build_db_image() {
  local image="$1" entrypoint="$2" extra_path="$3" cmd="$4"; shift 4
  local root tarball
  tarball="$(base_rootfs)"
  root="$(mktemp -d)"
  tar -C "$root" -xf "$tarball"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # Keep services from starting inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
  chmod +x "$root/usr/sbin/policy-rc.d"
  mount -t proc proc "$root/proc"
  log "installing $* into the $image rootfs"
  chroot "$root" /bin/sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $*" \
    >"$CACHE/${image//[\/:]/_}.apt.log" 2>&1 \
    || { umount "$root/proc"; log "apt-get failed, see $CACHE"; exit 1; }
  umount "$root/proc"
  chroot "$root" /bin/sh -c 'apt-get clean; rm -rf /var/lib/apt/lists/*'
  rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
  # The image's data dir must start empty so the entrypoint initialises it.
  rm -rf "$root/var/lib/mysql"/* "$root/var/lib/postgresql"/*
  install -m 0755 "$HERE/$entrypoint" "$root/usr/local/bin/docker-entrypoint.sh"
  log "importing $image"
  tar -C "$root" -c . | docker import \
    --change "ENV PATH=${extra_path}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change "CMD [\"$cmd\"]" - "$image" >/dev/null
  rm -rf "$root"
}

build_mariadb() { build_db_image "$1" mariadb-entrypoint.sh "" mariadbd mariadb-server mariadb-client; }
build_postgres() { build_db_image "$1" postgres-entrypoint.sh "/usr/lib/postgresql/15/bin:" postgres postgresql-15 postgresql-client-15; }

main() {
  docker info >/dev/null 2>&1 || { log "Docker engine is not running (scripts/ensure_docker.sh starts it)"; exit 1; }
  mkdir -p "$CACHE"
  local targets=("$@")
  [ ${#targets[@]} -eq 0 ] && targets=(app mariadb postgres)
  for t in "${targets[@]}"; do
    case "$t" in
      app) load_or_build "$APP_IMAGE" app build_app ;;
      mariadb) load_or_build "$MARIADB_IMAGE" mariadb build_mariadb ;;
      postgres) load_or_build "$POSTGRES_IMAGE" postgres build_postgres ;;
      *) log "unknown image $t"; exit 2 ;;
    esac
  done
}
main "$@"
