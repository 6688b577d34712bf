"""The recovery providers, by name: how a platform gets a database back to a point in time
(the questions each answers are :class:`pgrunbook.workflows.pitr.provider.Provider`'s)."""

from __future__ import annotations

from typing import Any

from pgrunbook.domain.errors import ConfigError
from pgrunbook.settings.model import Settings
from pgrunbook.settings.options import option
from pgrunbook.workflows.pitr.provider import Provider

PROVIDERS = option("pitr_provider").choices


def get_provider(name: str, settings: Settings, **kwargs: Any) -> Provider:
    if name == "logical":
        from pgrunbook.workflows.pitr.logical import LogicalProvider

        return LogicalProvider(settings, **kwargs)
    if name == "supabase":
        from pgrunbook.workflows.pitr.supabase import SupabaseProvider

        return SupabaseProvider(settings, **kwargs)
    if name == "rds":
        from pgrunbook.workflows.pitr.rds import RdsProvider

        return RdsProvider(settings, **kwargs)
    raise ConfigError(f"unknown recovery provider {name!r}; choose from {', '.join(PROVIDERS)}")
