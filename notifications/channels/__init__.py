"""One module per channel: ``base`` (the interface, console, file), ``slack``, ``email``,
``webhook``."""
