#!/bin/sh
# Runs the given tritonserver command; on SIGTERM (or SIGINT) first drains, then stops it.
#
# tritonserver 2.51's own shutdown drops a BLS video in flight (its calls to the parts are refused once the
# server stops), so the stop goes through `i2v drain` first: the BLS refuses new requests (retryably) and the
# ones in flight finish, for up to I2V_DRAIN_TIMEOUT seconds (300: within compose's stop_grace_period and
# Kubernetes' terminationGracePeriodSeconds of 330). docker-compose.yml and the Kubernetes Deployment use it as
# the Triton container's entrypoint; tests/test_recovery.py runs it around a real tritonserver.
# Once drained, tritonserver only unloads its models (seconds); 2.51 now and then never finishes unloading the BLS
# model and would wait out its whole --exit-timeout-secs, so it is killed after I2V_UNLOAD_TIMEOUT seconds (15,
# as `i2v serve`'s UNLOAD_TIMEOUT_S in i2v/serving/triton_server.py).
# A drain's marker file stays in a container restarted after it (compose's restart policy): ended first.
set -u
i2v drain --end
"$@" &
server=$!
trap 'i2v drain --timeout "${I2V_DRAIN_TIMEOUT:-300}" --metrics-url "${I2V_METRICS_URL:-http://localhost:8002/metrics}"; kill -TERM "$server"; (sleep "${I2V_UNLOAD_TIMEOUT:-15}"; kill -KILL "$server" 2>/dev/null) &' TERM INT
status=0
while kill -0 "$server" 2>/dev/null; do
  wait "$server"
  status=$?
done
exit "$status"
