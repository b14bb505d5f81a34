#!/usr/bin/env bash
# Starts one e2e server on 127.0.0.1:PORT over the store named by the remaining arguments
# (`--data-dir DIR` or `--firestore-project P`), after creating the e2e accounts and an admin
# API token (written to target/e2e-token-PORT) in that store. Run from the repository root.
set -euo pipefail
set -f
port=$1
shift
# The release build (./dev test builds it as ./dev run does); APX_E2E_BIN for another.
bin=${APX_E2E_BIN:-./target/release/apx-canary}
password='e2e password 1234'
for account in "e2e-admin --admin" "e2e-viewer --role viewer" "e2e-ops --role operator --policies payments-*"; do
  printf '%s\n' "$password" | $bin user add $account "$@"
done
$bin token add e2e-api --role admin "$@" >"target/e2e-token-$port"
exec $bin --addr "127.0.0.1:$port" --demo --traffic-flush-secs 1 --plan-secs 1 "$@"
