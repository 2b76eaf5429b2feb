"""Test helpers users can run too: fake upstreams that speak the providers' wire protocols."""
