#!/usr/bin/env bash
# What the test suite needs beyond `npm ci`, installed or started where this machine allows it.
# Called by `npm test` (the README's second command) and by .ci/run, so both set up the same way:
#  - Debian's chromium at /usr/bin/chromium, for the browser tests of the confirmation pages
#    (playwright-core drives it);
#  - Debian's unbound, nsd and ldnsutils for the DNSSEC lab (issue 18);
#  - Debian's iproute2 (ss), to read a listener's accept queue;
#  - a PostgreSQL at 127.0.0.1:5432 (user postgres, trust auth for local TCP, database `test`)
#    for the suite's second run (CONTRACT §10), when none answers there.
# Installing needs root and apt-get; without them it says what is missing and goes on: the browser
# tests then fail with the same hint, and the PostgreSQL half reports itself skipped (unless
# DCVD_REQUIRE_POSTGRES=1, as in CI, where that is a failure).
set -uo pipefail

can_install() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
apt_updated=
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -z "$apt_updated" ]; then apt-get update -qq && apt_updated=1; fi
  apt-get install -y -qq "$@" >/dev/null
}

if [ ! -x /usr/bin/chromium ]; then
  if can_install; then
    echo "test setup: installing Debian's chromium for the browser tests"
    apt_install chromium || echo "test setup: apt-get install chromium failed; the browser tests will fail"
  else
    echo "test setup: /usr/bin/chromium is missing and this is not root with apt-get: run 'sudo apt-get install chromium' or the browser tests (confirm-browser.test.ts) fail"
  fi
fi

# Debian's unbound (validating resolver), nsd (authoritative) and ldnsutils (zone signing) for the
# DNSSEC lab of test/dnssec.test.ts (issue 18); their own services are not used.
if [ ! -x /usr/sbin/unbound ] || [ ! -x /usr/sbin/nsd ] || [ ! -x /usr/bin/ldns-signzone ]; then
  if can_install; then
    echo "test setup: installing Debian's unbound, nsd and ldnsutils for the DNSSEC tests"
    apt_install unbound nsd ldnsutils || echo "test setup: apt-get install unbound nsd ldnsutils failed; the DNSSEC lab tests will skip"
  else
    echo "test setup: unbound, nsd or ldns-signzone is missing and this is not root with apt-get: the DNSSEC lab tests (dnssec.test.ts) skip"
  fi
fi

# iproute2's ss, for the test of the listeners' accept queue (slow-clients.test.ts).
if ! command -v ss >/dev/null 2>&1; then
  if can_install; then
    echo "test setup: installing Debian's iproute2 (ss) for the listener test"
    apt_install iproute2 || echo "test setup: apt-get install iproute2 failed; the accept-queue test will fail"
  else
    echo "test setup: ss is missing and this is not root with apt-get: run 'sudo apt-get install iproute2' or the accept-queue test (slow-clients.test.ts) fails"
  fi
fi

pg_answers() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! pg_answers; then
  if can_install; then
    echo "test setup: no PostgreSQL answers at 127.0.0.1:5432; starting Debian's"
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql postgresql-client
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
      for _ in $(seq 1 30); do pg_answers && break; sleep 1; done
      # Trust auth for local TCP connections, and the test database, as on the standard machines.
      hba="/etc/postgresql/$version/main/pg_hba.conf"
      if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
      fi
      su postgres -c "psql -tAc \"select 1 from pg_database where datname = 'test'\"" | grep -q 1 ||
        su postgres -c "createdb test"
    fi
    pg_answers || echo "test setup: PostgreSQL did not start; the PostgreSQL half of the suite will report itself skipped"
  else
    echo "test setup: no PostgreSQL at 127.0.0.1:5432 and this is not root with apt-get: start one (user postgres, trust, database test) or set DCVD_TEST_DATABASE_URL, else the PostgreSQL half is skipped"
  fi
fi
exit 0
