"""Redis: the keys, the store and one module per record, the webhook inbox and the replicas' heartbeats."""
