"""The in-tree plugins, one module each, and the registry that names them (``registry``)."""
