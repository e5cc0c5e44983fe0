"""One module per ``equiv`` subcommand; each exposes ``register(subparsers)``."""
