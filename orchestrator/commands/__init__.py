"""One module per ``spectral-sweep`` sub-command; each has ``register(subparsers)``."""
