"""Developer tools run as ``python -m diffgates.tools.NAME`` (``gpu_aot``: compile the Triton kernels for a GPU
without one)."""
