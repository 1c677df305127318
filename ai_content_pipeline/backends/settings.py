"""A backend's settings as plain data: the one description its options model, its CLI flags,
its chain step keys and the service's request check are derived from.

A backend lists its settings as :class:`Setting` objects (``BackendInfo.settings``); this
module imports neither pydantic nor click, so the commands can build their flags from it
for ``--help`` without loading an engine. :func:`options_model` turns the list into the
pydantic model that checks values (built on first use).

Each setting is, at once:

- a keyword argument of the backend's adapter (:attr:`Setting.name`: ``n_threads``);
- a key of a chain step of the stage kind that uses the backend (:attr:`Setting.key`:
  ``threads``), checked against the chosen backend's settings;
- a flag of the command of that stage kind (:attr:`Setting.flag`: ``--threads``; default
  ``--BACKEND-KEY``, e.g. ``--sine-frequency``); ``flag=""`` keeps it off the command line.
  Backends that declare the same flag share it: its value goes to whichever one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..limits import Limit

SettingType = Literal["str", "int", "float", "bool", "path", "folder", "hosts"]


@dataclass(frozen=True)
class Setting:
    """One backend setting (see the module docstring).

    :ivar name: the adapter's keyword argument.
    :ivar type: ``str``, ``int``, ``float``, ``bool``, ``path`` (a file), ``folder`` or
        ``hosts`` (URLs: a list, a comma list or one; the flag may be repeated).
    :ivar help: one phrase for ``--help`` (the backend's name is put in front).
    :ivar default: the value when unset (``None``: the backend's own default).
    :ivar limit: the allowed range of a number (:class:`~ai_content_pipeline.limits.Limit`).
    :ivar choices: the allowed values of a text setting.
    :ivar unset: a value that means "unset" (``auto`` for a device): passed as ``None``.
    :ivar key: the chain step key (default :attr:`name`).
    :ivar flag: the command's flag; ``None``: ``--BACKEND-KEY``; ``""``: no flag.
    :ivar metavar: the flag's value name in ``--help``.
    :ivar show_default: whether ``--help`` shows :attr:`default`.
    :ivar operator: only the operator may set it (a file, a folder, a server): a service
        request that sets it is refused.
    """

    name: str
    type: SettingType = "str"
    help: str = ""
    default: Any = None
    limit: Limit | None = None
    choices: tuple[str, ...] = ()
    unset: str | None = None
    key: str = ""
    flag: str | None = None
    metavar: str | None = None
    show_default: bool = False
    operator: bool = False

    @property
    def step_key(self) -> str:
        """The chain step key: :attr:`key`, else :attr:`name`."""
        return self.key or self.name

    def flag_of(self, backend: str) -> str:
        """The command flag (``""``: none): :attr:`flag`, else ``--BACKEND-KEY``."""
        if self.flag is not None:
            return self.flag
        return f"--{backend}-{self.step_key}".replace("_", "-")

    def value(self, given: Any) -> Any:
        """``given`` as the adapter takes it: :attr:`unset` → ``None``."""
        return None if self.unset is not None and given == self.unset else given


def _annotation(setting: Setting) -> Any:
    from pathlib import Path
    from typing import Annotated
    from typing import Literal as Lit

    base: Any = {"str": str, "int": int, "float": float, "bool": bool, "path": str | Path, "folder": str | Path,
                 "hosts": str | list[str]}[setting.type]
    if setting.choices:
        base = Lit[tuple(setting.choices)]
    if setting.limit is not None:
        marks = [m for m in (setting.limit.lower(), setting.limit.upper()) if m is not None]
        for mark in marks:
            base = Annotated[base, mark]
    return base | None


_models: dict[tuple[str, tuple[Setting, ...], str], Any] = {}


def options_model(backend: str, settings: tuple[Setting, ...] | list[Setting], by: str = "name") -> Any:
    """The pydantic model of ``settings`` (built once): one optional field per setting, named
    by adapter keyword (``by="name"``) or by chain step key (``by="key"``); unknown fields and
    non-finite numbers are refused.

    :returns: a ``pydantic.BaseModel`` subclass named ``BACKEND settings``.
    """
    cache = (backend, tuple(settings), by)
    if cache not in _models:
        from pydantic import ConfigDict, create_model

        fields = {(s.name if by == "name" else s.step_key): (_annotation(s), None) for s in settings}
        _models[cache] = create_model(  # type: ignore[call-overload]
            f"{backend} settings", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields)
    return _models[cache]


__all__ = ["Setting", "SettingType", "options_model"]
