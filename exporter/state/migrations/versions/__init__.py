"""One module per revision of the state database schema, in order."""
