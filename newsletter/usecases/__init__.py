"""Use cases: the pipeline's steps as library calls, above every stage.

fetch (sources → store → matches), campaign (build an edition → fill the ledger), send (→ SMTP), preview and
test copies, subscribe. The CLI, the web pages and the scheduler call these; no stage imports them."""
