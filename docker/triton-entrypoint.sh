#!/bin/sh
# Runs the given tritonserver command; on SIGTERM (or SIGINT) first drains, then stops it.
#
# tritonserver 2.51's own shutdown drops a BLS video in flight (its calls to the parts are refused once the
# server stops), so the stop goes through `i2v drain` first: the BLS refuses new requests (retryably) and the
# ones in flight finish, for up to I2V_DRAIN_TIMEOUT seconds (unset: `i2v drain`'s default, the grace period of
# i2v/endpoints.py, 300 s, within compose's stop_grace_period and Kubernetes' terminationGracePeriodSeconds of
# 330). docker-compose.yml and the Kubernetes Deployment use it as the Triton container's entrypoint;
# tests/test_recovery.py runs it around a real tritonserver.
# Once drained, tritonserver only unloads its models (seconds); 2.51 now and then never finishes unloading the BLS
# model and would wait out its whole --exit-timeout-secs, so it is killed after I2V_UNLOAD_TIMEOUT seconds (15,
# as `i2v serve`'s UNLOAD_TIMEOUT_S in i2v/serving/triton_server.py).
# A drain's marker file stays in a container restarted after it (compose's restart policy): ended first.
set -u
i2v drain --end
"$@" &
server=$!
# I2V_DRAIN_TIMEOUT and I2V_METRICS_URL are passed on where set: unset, `i2v drain`'s own defaults apply
trap 'i2v drain ${I2V_DRAIN_TIMEOUT:+--timeout "$I2V_DRAIN_TIMEOUT"} ${I2V_METRICS_URL:+--metrics-url "$I2V_METRICS_URL"}; kill -TERM "$server"; (sleep "${I2V_UNLOAD_TIMEOUT:-15}"; kill -KILL "$server" 2>/dev/null) &' TERM INT
status=0
while kill -0 "$server" 2>/dev/null; do
  wait "$server"
  status=$?
done
exit "$status"
