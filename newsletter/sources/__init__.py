"""Sources: feed documents in, plain `Paper` records out, merged into the papers store.

Fetching (network) is kept apart from parsing (pure: bytes in, records out), so tests feed files."""
