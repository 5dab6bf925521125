"""The ledger's schema as ordered migration functions, one module per SQL dialect."""
