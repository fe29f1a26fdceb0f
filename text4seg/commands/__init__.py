"""One module per ``text4seg`` subcommand (see :mod:`text4seg.cli`)."""
