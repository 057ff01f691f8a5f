"""The orchestrator: the only modules that chain stages (discover -> decrypt -> ingest -> scrub;
list -> download -> import -> ledger). See docs/architecture.md."""
