# /etc/tetherd/tetherd.hcl: tetherd's settings (tetherd --config FILE, or
# TETHERD_CONFIG=FILE). Each key is a flag's name with _ for -; a repeatable
# flag takes a list. A flag on the command line beats a TETHERD_<FLAG>
# environment variable, which beats this file, which beats the default.
# tetherd logs the settings it runs with, and where each came from, as its
# first line (tetherd.config). An unknown key or a bad value stops it (exit 2)
# with one line naming the key.

# Identity and trust bundles from the SPIRE agent on this node, at the
# agent's default socket_path. tetherd serves as exactly this SPIFFE ID,
# picked among the SVIDs the agent hands out; while the agent offers none
# with it, tetherd is not ready.
workload_api = "unix:///tmp/spire-agent/public/api.sock"
spiffe_id    = "spiffe://example.org/tetherd"

# The API (mTLS, TLS 1.3) for admins on the network; health and metrics for
# the local probes and the Prometheus agent only.
listen        = "0.0.0.0:8443"
health_listen = "127.0.0.1:8080"

# Who may log in, and who may introspect tokens (resource servers).
admin        = ["spiffe://example.org/admin/*"]
introspector = ["spiffe://example.org/gateway"]

# Sessions.
session_ttl               = "8h"
idle_timeout              = "15m"
max_sessions              = 10000
max_sessions_per_identity = 16
login_rate                = 1
login_burst               = 10

log_level  = "info"
log_format = "json"

# How long to wait for the first SVID before giving up (exit 1).
startup_timeout = "30s"

# Replicas (README "Running replicas"): every tetherd with this SPIFFE ID
# and prefix shares its sessions through etcd, reached over mTLS with this
# tetherd's own SVID. Leave these out for one process with sessions in its
# memory (store = "memory", the default).
# store          = "etcd"
# etcd_endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]
# etcd_prefix    = "/tether/"
# max_staleness  = "1s"
