"""One module per ``diffgates`` subcommand (see ``diffgates.cli``)."""
