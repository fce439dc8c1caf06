# shellcheck shell=bash
# Sourced by .ci/run: exports TALOS_TEST_ADDRESS_BASE (test/addresses.ts), the second octet of the
# engine tests' loopback addresses, 127.<base>.x.x, as a base no other run on this machine holds:
# the lowest from 1 to 255 whose lock this shell can take. The lock is held on an open file
# descriptor, so it ends with the shell, however that ends. Base 0 is left to tests run by hand; a
# base already set is kept. The Go tests stay on 127.0.x.x.
if [ -z "${TALOS_TEST_ADDRESS_BASE:-}" ]; then
  for base in $(seq 1 255); do
    exec {address_lock}>"${TMPDIR:-/tmp}/talos-cluster-test-addresses-$base.lock"
    if flock -n "$address_lock"; then
      export TALOS_TEST_ADDRESS_BASE=$base
      break
    fi
    exec {address_lock}>&-
  done
  [ -n "${TALOS_TEST_ADDRESS_BASE:-}" ] || {
    echo "every test address base from 1 to 255 is held by another run (locks in ${TMPDIR:-/tmp}): set TALOS_TEST_ADDRESS_BASE yourself" >&2
    exit 1
  }
fi
