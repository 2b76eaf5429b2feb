"""Storage: async engine, tables and migrations for keys, budgets and spend."""
