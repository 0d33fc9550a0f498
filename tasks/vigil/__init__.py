"""vigil: turn hours of surveillance footage into searchable person and pose evidence."""

__version__ = "0.1.0"
