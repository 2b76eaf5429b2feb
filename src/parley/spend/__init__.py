"""Spend: prices, the cost of a call, and the background spend-log writer."""
