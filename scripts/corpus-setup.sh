#!/usr/bin/env bash
# The corpus test's material: PostgreSQL's own regression suite
# (src/test/regress of the installed major's Debian source package) and the
# C modules its .sql files load (regress.so, contrib/spi autoinc.so and
# refint.so), built against the installed server's headers.
#
#   scripts/corpus-setup.sh            prints the suite directory on stdout
#
# Idempotent and cached in $BTFU_CORPUS_CACHE (default /var/tmp/btfu-corpus):
# a second run with the same server version only prints the path. Needs root
# the first time (apt: a deb-src entry, dpkg-dev, postgresql-server-dev-N,
# gcc, make); no stdin, runs the same under CI=true.
set -euo pipefail

CACHE=${BTFU_CORPUS_CACHE:-/var/tmp/btfu-corpus}
MAJOR=${BTFU_CORPUS_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$MAJOR/bin
export DEBIAN_FRONTEND=noninteractive

log() { printf '[corpus-setup] %s\n' "$*" >&2; }
die() { printf 'corpus-setup: %s\n' "$*" >&2; exit 1; }

[ -x "$PGBIN/postgres" ] || die "no PostgreSQL $MAJOR server in $PGBIN (Debian: apt-get install postgresql-$MAJOR)"
PKGVER=$(dpkg-query -W -f='${Version}' "postgresql-$MAJOR" 2>/dev/null) ||
	die "package postgresql-$MAJOR is not installed"
DIR=$CACHE/$PKGVER
SUITE=$DIR/regress

if [ -e "$DIR/.ready" ]; then
	echo "$SUITE"
	exit 0
fi

[ "$(id -u)" = 0 ] || die "the first run needs root (apt-get); nothing is cached in $DIR yet"

apt_updated=
apt_update() {
	if [ -z "$apt_updated" ]; then
		apt-get update -qq </dev/null
		apt_updated=1
	fi
}
apt_install() {
	apt_update
	apt-get install -y -qq "$@" </dev/null >/dev/null
}

# A deb-src entry for every deb entry of the system's Debian sources, so
# apt-get source finds the package of the installed version (which may be
# in bookworm-security rather than bookworm).
SRCLIST=/etc/apt/sources.list.d/btfu-corpus-src.sources
if [ ! -e "$SRCLIST" ] && ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
	if [ -e /etc/apt/sources.list.d/debian.sources ]; then
		# Same stanzas, Types: deb-src; comments dropped.
		awk '/^#/ { next } /^Types:/ { print "Types: deb-src"; next } { print }' \
			/etc/apt/sources.list.d/debian.sources >"$SRCLIST.tmp"
	elif grep -qsE '^deb ' /etc/apt/sources.list; then
		SRCLIST=${SRCLIST%.sources}.list
		sed -n -E 's/^deb (.*)$/deb-src \1/p' /etc/apt/sources.list >"$SRCLIST.tmp"
	else
		die "no Debian apt source found to add a deb-src entry for (/etc/apt/sources.list.d/debian.sources or deb lines in /etc/apt/sources.list)"
	fi
	mv "$SRCLIST.tmp" "$SRCLIST"
	log "added $SRCLIST"
	apt_updated=
fi

# apt-get source unpacks with dpkg-source (dpkg-dev); the modules build
# against the server headers (postgresql-server-dev-N) with gcc.
need=()
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v make >/dev/null || need+=(make)
dpkg-query -W -f='${Status}' "postgresql-server-dev-$MAJOR" 2>/dev/null | grep -q 'install ok installed' ||
	need+=("postgresql-server-dev-$MAJOR=$PKGVER")
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt_install "${need[@]}"
fi
PGCONFIG=$PGBIN/pg_config
[ -x "$PGCONFIG" ] || PGCONFIG=/usr/lib/postgresql/$MAJOR/bin/pg_config
[ -x "$PGCONFIG" ] || PGCONFIG=$(command -v pg_config)
INCSERVER=$("$PGCONFIG" --includedir-server)
[ -e "$INCSERVER/postgres.h" ] || die "no postgres.h in $INCSERVER (postgresql-server-dev-$MAJOR)"

mkdir -p "$CACHE"
tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log "fetching the source of postgresql-$MAJOR $PKGVER into $DIR"
apt_update
(cd "$tmp" && apt-get source -qq "postgresql-$MAJOR=$PKGVER" </dev/null >"$tmp/apt-source.log" 2>&1) || {
	cat "$tmp/apt-source.log" >&2
	die "apt-get source postgresql-$MAJOR=$PKGVER failed (is a deb-src entry reachable? see $SRCLIST)"
}
src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name "postgresql-$MAJOR-*" | head -n1)
[ -n "$src" ] && [ -d "$src/src/test/regress" ] || die "no src/test/regress in the unpacked source under $tmp"

# Keep only what the suite needs: the regress directory (sql, expected,
# data, schedules, regress.c) and contrib/spi (autoinc.c, refint.c).
mkdir -p "$tmp/out/lib"
cp -a "$src/src/test/regress" "$tmp/out/regress"
cp -a "$src/contrib/spi" "$tmp/out/spi"

# The modules, the way PGXS would build them.
CFLAGS=$("$PGCONFIG" --cflags)
CFLAGS_SL=$("$PGCONFIG" --cflags_sl 2>/dev/null || echo -fPIC)
build_module() { # build_module NAME SOURCE [extra flags]
	local name=$1 source=$2
	shift 2
	log "building $name.so"
	# shellcheck disable=SC2086
	gcc $CFLAGS $CFLAGS_SL -fPIC -shared "$@" -I"$INCSERVER" -I"$("$PGCONFIG" --includedir)" \
		-o "$tmp/out/lib/$name.so" "$source" || die "building $name.so from $source failed"
}
build_module regress "$tmp/out/regress/regress.c" -I"$tmp/out/regress"
build_module autoinc "$tmp/out/spi/autoinc.c"
build_module refint "$tmp/out/spi/refint.c"

for m in regress autoinc refint; do
	[ -s "$tmp/out/lib/$m.so" ] || die "$m.so was not built"
done

echo "$PKGVER" >"$tmp/out/VERSION"
# The server (the postgres OS user under root) reads the data files and
# loads the modules.
chmod -R a+rX "$tmp/out"
chmod a+rx "$CACHE"
rm -rf "$DIR"
mv "$tmp/out" "$DIR"
touch "$DIR/.ready"
log "ready: $SUITE (modules in $DIR/lib)"
echo "$SUITE"
