"""Benchmarks of django-motp against the sandbox gateway over loopback (``make bench``)."""
