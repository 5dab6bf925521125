"""The ledger's SQL backends: SQLite (one machine) and PostgreSQL (many machines), the same tables and methods."""
