"""cmemc's config.ini: one section per connection, ``[DEFAULT]`` as the fallback."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import NamedTuple

from .errors import ConfigError
from .settings import Layer, Setting, first

CMEMC_CONFIG_FILE = "CMEMC_CONFIG_FILE"
CMEMC_CONNECTION = "CMEMC_CONNECTION"
CMEM_BASE_URI = "CMEM_BASE_URI"

ENV_KEYS = (
    "SSL_VERIFY",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    CMEM_BASE_URI,
)
"""Environment variables that take part in resolution (others are not shown or logged)."""


def default_config_file(environ: Mapping[str, str]) -> str:
    """Returns where cmemc looks for config.ini on this platform (as click.get_app_dir)."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = environ.get("APPDATA") or os.path.join(home, "AppData", "Roaming")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Application Support")
    else:
        base = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    return os.path.join(base, "cmemc", "config.ini")


def connection_name(connection: str | None, environ: Mapping[str, str]) -> str | None:
    """Returns the connection (config.ini section) to use: `connection`, else
    ``CMEMC_CONNECTION``, else None."""
    return connection or environ.get(CMEMC_CONNECTION, "").strip() or None


class CmemcConfig(NamedTuple):
    """The sections of one config.ini file, keys upper-cased, ``[DEFAULT]`` not merged in."""

    path: str | None
    """The file read, or None when the default file does not exist."""
    sections: Mapping[str, Mapping[str, str]] = {}

    @classmethod
    def load(
        cls, config_file: str | os.PathLike[str] | None, environ: Mapping[str, str]
    ) -> CmemcConfig:
        """Returns the parsed file: `config_file`, else ``CMEMC_CONFIG_FILE``, else cmemc's default.

        A missing default file is an empty config; a file named explicitly must exist.
        """
        if config_file is not None:
            path, named_by = os.path.abspath(os.fspath(config_file)), "the config_file argument"
        elif environ.get(CMEMC_CONFIG_FILE, "").strip():
            path = os.path.abspath(environ[CMEMC_CONFIG_FILE].strip())
            named_by = f"{CMEMC_CONFIG_FILE} set by env"
        else:
            path, named_by = default_config_file(environ), ""
            if not os.path.exists(path):
                return cls(None)
        import configparser  # here: it costs about 1 ms to import, and most users have no file

        # A default_section no file can name: [DEFAULT] is read as a plain section, so that
        # its values are not merged into every other section and keep their own origin.
        parser = configparser.ConfigParser(interpolation=None, default_section="\0")
        try:
            with open(path, encoding="utf-8-sig") as f:  # -sig: a BOM, as Notepad writes, is fine
                parser.read_file(f)
        except OSError as e:
            by = f" ({named_by})" if named_by else ""
            raise ConfigError(
                f"config file {path}{by}: cannot be read ({e.strerror}). Fix: point"
                f" {CMEMC_CONFIG_FILE} or --config-file at cmemc's config.ini"
            ) from None
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"config file {path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset"
                f" {e.start}). Fix: save it as UTF-8"
            ) from None
        except configparser.Error as e:
            raise ConfigError(
                f"config file {path}: cannot be parsed: {' '.join(str(e).split())}."
                " Fix: correct the line named, in INI syntax ([section] and KEY=value lines)"
            ) from None
        sections = {
            name: {key.upper(): value for key, value in parser.items(name, raw=True)}
            for name in parser.sections()
        }
        return cls(path, sections)

    def layers(self, connection: str | None, environ: Mapping[str, str]) -> list[Layer]:
        """Returns the layers in precedence order: the section, the environment, ``[DEFAULT]``.

        `connection` defaults to ``CMEMC_CONNECTION``; none at all means no section layer.
        Raises `ConfigError` for a connection the file does not have, listing those it has.
        """
        env = Layer("env", environ)
        name = connection_name(connection, environ)
        layers = []
        if name is not None:
            if name not in self.sections or name == "DEFAULT":
                known = ", ".join(n for n in self.sections if n != "DEFAULT") or "none"
                where = self.path or f"{default_config_file(environ)} (which does not exist)"
                raise ConfigError(
                    f"connection {name!r}: no such section in {where} (connections: {known})."
                    f" Fix: use one of them with -c/{CMEMC_CONNECTION}, or add a [{name}] section"
                )
            layers.append(self._layer(name))
        layers.append(env)
        if "DEFAULT" in self.sections:
            layers.append(self._layer("DEFAULT"))
        return layers

    def _layer(self, section: str) -> Layer:
        assert self.path is not None
        where = f"[{section}] in {self.path}"
        return Layer("config", self.sections[section], where, os.path.dirname(self.path))

    def settings(self, connection: str | None, environ: Mapping[str, str]) -> list[Setting]:
        """Returns every key the section, ``[DEFAULT]`` or the environment sets, as resolved."""
        layers = self.layers(connection, environ)
        keys = dict.fromkeys(ENV_KEYS)
        for layer in layers:
            if layer.origin == "config":
                keys.update(dict.fromkeys(layer.values))
        found = (first(layers, key) for key in keys)
        return [setting for setting in found if setting is not None]
