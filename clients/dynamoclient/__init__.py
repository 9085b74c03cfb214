"""Light clients of the Dynamo daemon: standard library only (orjson if present)."""
