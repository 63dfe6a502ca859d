"""Benchmarks of paas against the floors Docker and a bare process set
(issue 17); not part of the tests. Run with scripts/bench.sh."""
