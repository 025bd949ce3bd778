"""Fault-injection simulation support: an in-process DynamoDB (see store.py)."""
