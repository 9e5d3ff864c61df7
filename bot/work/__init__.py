"""Durable work: jobs on SAQ that survive restarts and replicas."""
