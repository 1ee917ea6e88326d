"""The ``atriumseg`` command line: one module per command, a thin layer over the Python API.

Layout:

- :mod:`.app`: ``main()`` (the console script ``atriumseg = "atriumseg.cli:main"``), the exit codes, the
  :class:`~.app.UsageError` that ends a command with exit 2, and ``COMMANDS``, the registry of commands;
- :mod:`.options`: the option groups several commands share (``--model``/``--device``/``--batch-size``,
  ``--assume-orientation``, ``--quiet``), argument types, and :func:`~.options.load_segmenter`;
- one module per command: :mod:`.segment`, :mod:`.report`, :mod:`.measure`, :mod:`.evaluate`, :mod:`.demo`,
  :mod:`.info`, :mod:`.train`, :mod:`.assemble`, :mod:`.export`, :mod:`.serve`, :mod:`.status`.

Adding a command is one new module plus one line: write ``atriumseg/cli/NAME.py`` with

.. code-block:: python

    def register(commands: argparse._SubParsersAction) -> None:
        parser = commands.add_parser("NAME", parents=[options.model_options()], help="...")
        parser.add_argument(...)
        parser.set_defaults(run=run)

    def run(args: argparse.Namespace) -> int:  # returns an exit code of .app
        from atriumseg.... import ...  # heavy imports (torch, MONAI) here, so --help stays instant
        ...

and add ``"NAME"`` to ``COMMANDS`` in :mod:`.app`. ``run`` raises :class:`~.app.UsageError` for bad
usage found before any work; ``main`` turns it, Ctrl-C, a closed pipe and failures into the exit codes.
Defaults are read from the one place that owns them (a dataclass's fields, :mod:`atriumseg.defaults`),
never typed again in a command.
"""

from atriumseg.cli.app import (
    COMMANDS,
    EXIT_CASE_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    build_parser,
    main,
)

__all__ = [
    "COMMANDS", "EXIT_CASE_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main",
]
