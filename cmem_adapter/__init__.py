"""Explicit, per-connection TLS trust for requests: one trust source per connection, said aloud."""

from .adapter import TrustAdapter
from .errors import ConfigError
from .mounting import install, mount, mount_from_config, uninstall
from .policy import TrustPolicy

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "TrustAdapter",
    "TrustPolicy",
    "__version__",
    "install",
    "mount",
    "mount_from_config",
    "uninstall",
]
