"""Benchmark: the emulator against raw jupyter-client kernels, in one run on one machine.

    python -m benchmarks [--json FILE] [--quick] [--fork-only] ...     (or: make bench)

Why a benchmark and not tests: timings depend on the machine and its load, so they are measured
and printed (with a PASS/FAIL against each target), never asserted in the test suite. Every
figure is compared with a baseline measured in the same run, so a slow or busy machine shifts
both sides alike.

The baseline is jupyter-client used directly (``KernelManager`` + ``BlockingKernelClient``,
:mod:`.raw`). Raw kernels get the same transport (IPC) and the same IPython settings as the
emulator's, so a difference is the emulator's doing, not a configuration's. The emulator runs as
``tci-emulator serve`` in a child process (as users run it) and is driven over loopback HTTP
(:mod:`.client`), one keep-alive connection per client thread.

One module per kind of row (:mod:`.front_door`, :mod:`.memory`, :mod:`.in_process`,
:mod:`.sandbox`, :mod:`.fork`, :mod:`.gateway`), all measured with one harness
(:mod:`.harness`: timing, percentiles, the table and its targets, the JSON report) on one
:class:`~.run.Run`; :mod:`.suite` runs them in order. Tooling of the repository, not part of the
installed package.

Every kernel, server and directory the benchmark starts is stopped or removed before it exits,
also when it fails or is interrupted.
"""
