"""The one settings mechanism: ``rearguard.toml`` found and read once, and a base class whose
subclasses each name their environment prefix and their TOML table.

A concern is loaded with the parsed file as an argument (``load_concern``); nothing is kept
between loads, so two runs in one process can load different homes side by side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BeforeValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
)

from rearguard.models.config.files import table_of
from rearguard.models.errors import ConfigurationError

# The init keyword that carries the parsed rearguard.toml to a concern's sources; no field has
# this name, and every concern ignores extra keywords.
TOML_DOCUMENT = "rearguard_toml_document"


class TomlTableSource(PydanticBaseSettingsSource):
    """Feeds one table of ``rearguard.toml`` to a settings model."""

    def __init__(self, settings_cls: type[BaseSettings], table: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._table = table

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._table.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._table.items() if k in self.settings_cls.model_fields}


class ConcernSettings(BaseSettings):
    """Base for one concern: reads its ``[table]`` of rearguard.toml below the environment.

    The parsed file arrives as the ``TOML_DOCUMENT`` keyword (see :func:`load_concern`).
    """

    toml_table: ClassVar[str] = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        document: Any = {}
        if isinstance(init_settings, InitSettingsSource):
            document = init_settings.init_kwargs.get(TOML_DOCUMENT, {})
        table = table_of(document if isinstance(document, Mapping) else {}, cls.toml_table)
        return (init_settings, env_settings, TomlTableSource(settings_cls, table))


Concern = TypeVar("Concern", bound=ConcernSettings)


def load_concern(cls: type[Concern], document: Mapping[str, Any], **values: Any) -> Concern:
    """Load one concern: ``values`` (flags) > its environment > its table of ``document``.

    Args:
        cls: the concern's settings model.
        document: the parsed ``rearguard.toml`` (empty when there is none).
        values: explicit values, e.g. from the command line.

    Raises:
        ConfigurationError: a value is invalid; the message names the table and the field.
    """
    # The file travels as one more keyword that no field takes (see ConcernSettings).
    arguments: dict[str, Any] = {**values, TOML_DOCUMENT: document}
    try:
        return cls(**arguments)
    except ValidationError as exc:
        first = exc.errors()[0]
        # Name the table too: "security" alone does not say it is [notifications.email]'s.
        where = ".".join([cls.toml_table] * bool(cls.toml_table) + [str(p) for p in first["loc"]])
        raise ConfigurationError(f"invalid setting {where}: {first['msg']}") from exc


def comma_list(value: Any) -> Any:
    """Accept ``a,b`` as well as a JSON list from the environment."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(comma_list)]
