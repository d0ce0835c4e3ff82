#!/bin/sh
# tools/pgtmp.sh - a throwaway PostgreSQL for specs and benches, on a Unix
# socket in DIR (no port, no fixed name):
#   tools/pgtmp.sh start DIR   initdb + start; prints the postgresql:// URL
#   tools/pgtmp.sh stop DIR    fast shutdown (the data stays)
#   tools/pgtmp.sh restart DIR start again after a stop
# As root (initdb refuses it) the server runs as the user postgres.
set -e
cmd=$1 dir=$2
[ -n "$dir" ] || { echo "usage: $0 start|stop|restart DIR" >&2; exit 2; }
bin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$bin/pg_ctl" ] || { echo "pgtmp: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
ctl_start() {
  as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-k $dir -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
}
case $cmd in
  start)
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    chmod 755 "$dir"
    as "$bin/initdb" -D "$dir/data" -A trust -U orch >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    ctl_start
    echo "postgresql:///postgres?host=$dir&user=orch"
    ;;
  stop) as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ;;
  restart) ctl_start ;;
  *) echo "usage: $0 start|stop|restart DIR" >&2; exit 2 ;;
esac
