"""Benchmarks: each module has a ``main()`` that prints JSON lines (``make bench``)."""
