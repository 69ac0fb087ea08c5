"""The command-line verbs, one module each: ``optimize`` (and ``resume``), ``runs``, ``approve``,
``evaluate``, ``report``, ``sweep`` and ``store``. Each module adds its own parser (with only the
flags that command reads) and holds the handler that prints its results; :mod:`graph.cli` gathers
them."""
