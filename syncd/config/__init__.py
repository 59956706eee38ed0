"""The config: its schema (``model``) and how a marketer's YAML becomes it (``loading``)."""

from syncd.config.loading import load_config
from syncd.config.model import (
    DEFAULT_KINDS,
    Config,
    ConfigError,
    ListConfig,
    MailchimpProvider,
    Schedule,
    Segment,
    TagRule,
    UnknownList,
    parse_duration,
)

__all__ = [
    "DEFAULT_KINDS",
    "Config",
    "ConfigError",
    "ListConfig",
    "MailchimpProvider",
    "Schedule",
    "Segment",
    "TagRule",
    "UnknownList",
    "load_config",
    "parse_duration",
]
