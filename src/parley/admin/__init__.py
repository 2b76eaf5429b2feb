"""The admin API (LiteLLM-compatible field names): keys, users, teams, customers, spend."""
