"""Prometheus metrics: the metric families, the METRICS-phase filter, the multi-process directory."""
