"""The ``torchssc`` subcommands, one module each, named after the command (``check-data`` ->
``check_data``): argument parsing over the library's functions, ``add_arguments(parser)`` and
``run(args) -> int``. Errors are turned into one line by :func:`torchssc.cli.main`."""
