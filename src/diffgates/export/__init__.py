"""Exporters: a Circuit (or a trained model) written for other toolchains.

One module per format, each with a library function and the ``CLI_HELP`` / ``configure_cli`` /
``run_cli`` trio that ``diffgates export FORMAT MODEL OUT`` dispatches to (``diffgates.commands.export``):

* ``c``: standalone C99 (``NAME.c``/``NAME.h``, example program, Makefile): ``export_c``;
* ``verilog``: RTL with a documented port contract; ``aiger`` / ``blif``: netlists.

Modules are imported only when used, so ``import diffgates.export`` stays light.
"""
