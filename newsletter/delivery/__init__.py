"""Delivery: an edition's readers in, one sent message per reader out, each recorded in the delivery ledger.

Ledger fill (campaign), MIME once per variant spliced per reader, DKIM, the SMTP pool, send runs, preview."""
