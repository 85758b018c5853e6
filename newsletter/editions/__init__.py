"""Editions: papers with their matches in, one frozen edition snapshot per (frequency, date) out.

Also the per-reader selection of sections from a snapshot, and the public archive made from stored snapshots."""
