#!/usr/bin/env bash
# make demo: a throwaway local PostgreSQL with a small schema and a light
# workload, a demo config, and btfu's TUI watching it. Everything it starts
# stops when the TUI exits. Files live in .demo/ (removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.demo"
bin="${BTFU_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
if [ ! -x "$bin/initdb" ]; then
	bin="$(dirname "$(command -v initdb 2>/dev/null || true)")"
fi
if [ ! -x "$bin/initdb" ]; then
	echo "demo: initdb not found; install PostgreSQL (Debian: apt-get install postgresql) or set BTFU_PG_BIN" >&2
	exit 1
fi
rm -rf "$root"; mkdir -p "$root"
as_pg=()
if [ "$(id -u)" = 0 ]; then
	chown postgres: "$root"
	as_pg=(runuser -u postgres --)
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 54329)"
"${as_pg[@]}" "$bin/initdb" -D "$root/pg" -U postgres -A trust --no-sync >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$root/pg" -l "$root/pg.log" -w -o "-p $port -k $root -c listen_addresses=127.0.0.1 -c wal_level=logical" start >/dev/null
workload=
cleanup() {
	[ -n "$workload" ] && kill "$workload" 2>/dev/null || true
	"${as_pg[@]}" "$bin/pg_ctl" -D "$root/pg" -m fast stop >/dev/null 2>&1 || true
	rm -rf "$root"
}
trap cleanup EXIT
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres)
"${psql[@]}" -c "CREATE DATABASE shop"
"${psql[@]}" -c "CREATE DATABASE shop_restore"
target="postgres://postgres@127.0.0.1:$port/shop_restore?sslmode=disable"
"${psql[@]}" -d shop -c "CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, total numeric(10,2), created_at timestamptz DEFAULT now())"
( while sleep 1; do "${psql[@]}" -d shop -c "INSERT INTO orders (customer, total) VALUES ('c' || (random()*100)::int, (random()*500)::numeric(10,2))" 2>/dev/null || exit 0; done ) &
workload=$!
cat > "$root/config.toml" <<TOML
[metadata]
path = "$root/btfu.db"
[storage]
path = "$root/data"
[log]
file = "$root/btfu.log"
[[source]]
name = "shop"
dsn = "postgres://postgres@127.0.0.1:$port/shop?sslmode=disable"
restore_target = "$target"     # the wizard (press R) offers it
TOML
echo "demo: press R in the TUI, type 2m ago, and the wizard restores shop into"
echo "      $target (the source's restore_target)"
echo "      (q quits and stops everything). Starting in 3 s..."
sleep 3
./bin/btfu --config "$root/config.toml"
