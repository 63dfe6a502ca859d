"""What the tests and the benchmarks share: the real parts a run is made of
(``harness``: nginx, `paas up`, a git remote, a load client) and the sample
app they deploy (``sample_app``). It may import paas, never tests; it is not
shipped in the wheel."""
