"""Several nodes on one PostgreSQL database: node identity, heartbeats, leases, wake-ups."""
