# Sourced by .ci/run: install PostgreSQL, Redis, Chromium and Prometheus (promtool) from Debian's
# packages, start the servers on loopback with throwaway data directories, export their addresses
# for the tests, and stop them when the calling shell exits. Safe to source on a machine that has
# them already.

CI_PG_PORT=${CI_PG_PORT:-55432}
CI_REDIS_PORT=${CI_REDIS_PORT:-56379}
CI_TMP=$(mktemp -d /tmp/clv-ci.XXXXXX)
chmod 755 "$CI_TMP"

ci_install() {
  local missing=()
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v promtool >/dev/null || missing+=(prometheus)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "ci: installing ${missing[*]} (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ci_start_postgres() {
  local bin
  bin=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)")
  local data="$CI_TMP/pg/data" run="$CI_TMP/pg/run"
  mkdir -p "$data" "$run" && chown -R postgres:postgres "$CI_TMP/pg"
  runuser -u postgres -- "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
  runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$run/pg.log" -w start \
    -o "-p $CI_PG_PORT -k $run -c listen_addresses=127.0.0.1 -c fsync=off" >/dev/null
  psql -q -h 127.0.0.1 -p "$CI_PG_PORT" -U postgres \
    -c "CREATE ROLE clv LOGIN PASSWORD 'clv-ci-secret' CREATEDB" >/dev/null
  export CLV_TEST_POSTGRES="postgresql+psycopg://clv:clv-ci-secret@127.0.0.1:$CI_PG_PORT"
  CI_PG_STOP="runuser -u postgres -- $bin/pg_ctl -D $data -m immediate stop"
}

ci_start_redis() {
  export CLV_TEST_REDIS_START="redis-server --port $CI_REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir $CI_TMP --logfile $CI_TMP/redis.log"
  eval "$CLV_TEST_REDIS_START"
  for _ in $(seq 50); do redis-cli -p "$CI_REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export CLV_TEST_REDIS="127.0.0.1:$CI_REDIS_PORT"
}

ci_stop() {
  redis-cli -p "$CI_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ -n "${CI_PG_STOP:-}" ] && $CI_PG_STOP >/dev/null 2>&1 || true
  rm -rf "$CI_TMP"
}

trap ci_stop EXIT
ci_install
ci_start_postgres
ci_start_redis
export CLV_TEST_CHROMIUM=$(command -v chromium)
export CLV_TEST_PROMETHEUS=$(command -v prometheus)
echo "ci: postgres on 127.0.0.1:$CI_PG_PORT, redis on $CLV_TEST_REDIS, chromium at $CLV_TEST_CHROMIUM"
