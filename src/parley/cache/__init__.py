"""The response cache: exact-match replies for repeated requests (see `hook`)."""
