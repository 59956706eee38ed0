"""The config's schema: what a marketer's YAML may say, validated by pydantic.

Loading (YAML, ``${VAR}`` substitution, secrets, errors naming file, line and key) is in
``syncd.config.loading``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from connectors.contract import Target
from syncd.db import Timeouts
from syncd.netaddr import IPNetwork, parse_networks


class ConfigError(Exception):
    """A config problem a marketer can act on: where it is, and what was expected."""

    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


# --- values ---------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError("expected a duration such as 30m, 2h, 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_EVERY = re.compile(r"^\s*every\s+(\d+)?\s*(second|minute|hour|day)s?\s*$", re.I)


@dataclass(frozen=True)
class Schedule:
    """``every 15 minutes`` (interval) or ``cron: */15 * * * *``."""

    every: timedelta | None = None
    cron: str | None = None


def parse_schedule(value: Any) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, dict) and set(value) == {"cron"}:
        fields = str(value["cron"]).split()
        if len(fields) != 5:
            raise ValueError("expected a cron line of 5 fields, e.g. {cron: '*/15 * * * *'}")
        return Schedule(cron=" ".join(fields))
    m = _EVERY.match(str(value))
    if not m:
        raise ValueError("expected 'every N minutes|hours|days' or {cron: '*/15 * * * *'}")
    n = int(m.group(1) or 1)
    return Schedule(every=timedelta(**{m.group(2).lower() + "s": n}))


ScheduleField = Annotated[Schedule, BeforeValidator(parse_schedule)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | int | float) else value


StrList = Annotated[list[str], BeforeValidator(_as_list)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the file's sections --------------------------------------------------------------------


# How many API calls a connector may have in flight at once, per provider.
# Mailchimp allows 10 simultaneous connections per account and refuses more with 429
# (https://mailchimp.com/developer/marketing/docs/fundamentals/#api-limits).
MAILCHIMP_MAX_CONCURRENCY = 10
MAILCHIMP_DEFAULT_CONCURRENCY = MAILCHIMP_MAX_CONCURRENCY
# Brevo caps calls per second, not connections (https://developers.brevo.com/docs/api-limits): the
# /v3/contacts endpoints allow 10 requests/s on every plan, 20 on Professional, 60 on Enterprise.
# A contacts call takes some 0.3-0.5 s, so 4 in flight make about 10 requests/s: the general limit,
# without the 429s (and their waits) that more would bring. 60 in flight reach the highest plan's
# limit even at a second a call; more could only be refused.
BREVO_MAX_CONCURRENCY = 60
BREVO_DEFAULT_CONCURRENCY = 4


def _concurrency_check(provider: str, limit: int, why: str) -> Any:
    """A validator of ``concurrency``: a whole number from 1 to the provider's limit."""

    def check(value: Any) -> Any:
        expected = f"expected a whole number from 1 to {limit} simultaneous API calls ({provider}: {why})"
        if isinstance(value, bool):  # YAML's yes/no: never a count
            raise ValueError(expected)
        try:
            number = int(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(expected) from None
        if isinstance(number, int) and not 1 <= number <= limit:
            raise ValueError(expected)
        return number

    return field_validator("concurrency", mode="before")(check)


# The margin a read's cursor keeps below the provider's time, and the wait after syncd's writes
# before the read that follows them (margin + the Date header's 2 s; connectors.clock).
DEFAULT_CURSOR_MARGIN_S = 3.0
DEFAULT_SETTLE_S = 5.0


class BrevoProvider(Strict):
    api_key: str
    base_url: str | None = None  # default: the real service; a simulator's URL for trials and tests
    webhook_secret: str | None = None
    webhook_token: str | None = None  # a bearer token Brevo sends, when configured there
    # "bearer": a delivery needs webhook_token; "url_secret": the URL's secret alone (weaker)
    webhook_auth: Literal["bearer", "url_secret"] = "bearer"
    api_key_name: str | None = None  # the name of syncd's key: its own writes echo back with it
    concurrency: int = BREVO_DEFAULT_CONCURRENCY  # API calls in flight at once (pages read ahead, writes)
    # A read's cursor is Brevo's time when it began minus this margin (Brevo's own lag).
    cursor_margin_s: float = Field(default=DEFAULT_CURSOR_MARGIN_S, ge=0)
    # A read after syncd's writes waits this long after the last one, so that the next run does
    # not read them back: at least the margin plus the Date header's 2 s.
    settle_s: float = Field(default=DEFAULT_SETTLE_S, ge=0, le=60)

    _concurrency = _concurrency_check(
        "Brevo",
        BREVO_MAX_CONCURRENCY,
        f"its contacts API takes {BREVO_MAX_CONCURRENCY} requests/s on its highest plan",
    )


class MailchimpProvider(Strict):
    api_key: str
    base_url: str | None = None
    webhook_secret: str | None = None
    signing_secret: str | None = None
    concurrency: int = MAILCHIMP_DEFAULT_CONCURRENCY  # simultaneous connections to the API
    cursor_margin_s: float = Field(default=DEFAULT_CURSOR_MARGIN_S, ge=0)  # as for Brevo
    settle_s: float = Field(default=DEFAULT_SETTLE_S, ge=0, le=60)  # as for Brevo

    _concurrency = _concurrency_check(
        "Mailchimp",
        MAILCHIMP_MAX_CONCURRENCY,
        f"it allows {MAILCHIMP_MAX_CONCURRENCY} simultaneous connections per account",
    )


class Providers(Strict):
    brevo: BrevoProvider | None = None
    mailchimp: MailchimpProvider | None = None


class Smtp(Strict):
    host: str = "127.0.0.1"
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False


class Sender(Strict):
    email: str
    name: str | None = None


class RenewalLimit(Strict):
    """New links a contact may ask for from an expired one: at most ``max`` confirmation mails to
    one address within ``per`` (every link mailed to it counts, whatever the list)."""

    max: int = Field(default=3, ge=1)
    per: Duration = timedelta(days=1)


class DeliveryRetries(Strict):
    """A confirmation mail that could not be sent goes again after ``first_after``, then after
    twice as long each time; after ``attempts`` failures (or at once, when the address can never
    be sent to) syncd gives up: the request is dead, listed by ``syncd doi status``."""

    attempts: int = Field(default=8, ge=1)
    first_after: Duration = timedelta(minutes=5)


class DoubleOptIn(Strict):
    transport: Literal["brevo", "smtp"] = "smtp"
    smtp: Smtp = Smtp()
    sender: Sender = Sender(email="no-reply@example.invalid")
    public_url: str = "http://127.0.0.1:8080"
    template: str | None = None
    language: Literal["fr", "en"] = "fr"
    secret: str | None = None  # signs confirmation and preference links
    expires_after: Duration = timedelta(days=7)
    remind_after: Duration = timedelta(days=2)
    renewals: RenewalLimit = RenewalLimit()
    retries: DeliveryRetries = DeliveryRetries()


class Unsubscribe(Strict):
    scope: Literal["list", "global"] = "list"


class DatabaseTimeouts(Strict):
    """How long the master base may keep a caller waiting (see ``syncd.db.Timeouts``)."""

    connect: Duration = timedelta(seconds=Timeouts.connect)
    statement: Duration = timedelta(seconds=Timeouts.statement)
    pool_checkout: Duration = timedelta(seconds=Timeouts.pool_checkout)

    def seconds(self) -> Timeouts:
        return Timeouts(
            connect=self.connect.total_seconds(),
            statement=self.statement.total_seconds(),
            pool_checkout=self.pool_checkout.total_seconds(),
        )


def _networks(value: Any) -> Any:
    # One ${VAR} may hold several, comma-separated: "10.0.0.0/8, 192.0.2.10".
    return parse_networks(value) if value is None or isinstance(value, str | list | tuple) else value


Networks = Annotated[tuple[IPNetwork, ...], BeforeValidator(_networks)]


class Inbox(Strict):
    # Applied webhook deliveries keep their raw body this long (to replay a misparsed event), then
    # only the row (status, dedupe key, times) stays: the body is personal data.
    retention: Duration = timedelta(days=30)


class SyncSettings(Strict):
    # Lists one process syncs at once: each `syncd run` replica, and `syncd sync` without --jobs.
    # Each list mostly waits on its providers (and, after its writes, for them to settle), so
    # lists synced at once overlap their waits; calls to a provider stay within its concurrency.
    jobs: int = Field(default=1, ge=1, le=16)


class Server(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR networks); none by default.
    trusted_proxies: Networks = ()


class Qualification(Strict):
    default_region: str = Field(default="FR", min_length=2, max_length=2)
    check_deliverability: bool = False  # DNS look-ups: off by default


class TagRule(Strict):
    any: StrList | None = None
    all: StrList | None = None
    none: StrList | None = None


class Segment(Strict):
    kind: StrList | None = None
    stage: StrList | None = None
    tags: TagRule | None = None
    country: StrList | None = None
    region: StrList | None = None
    city: StrList | None = None
    email_status: StrList | None = None
    attributes: dict[str, StrList] | None = None
    not_: Segment | None = Field(default=None, alias="not")


class BrevoTarget(Strict):
    list_id: int = Field(gt=0)


def _id_text(value: Any) -> Any:
    """An audience id is text, though YAML reads an id of digits only (``1772420684``) as a number."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class MailchimpTarget(Strict):
    audience: Annotated[str, BeforeValidator(_id_text)] = Field(min_length=1)
    tag: str | None = None


class TargetConfig(Strict):
    brevo: BrevoTarget | None = None
    mailchimp: MailchimpTarget | None = None

    @model_validator(mode="after")
    def _one_provider(self) -> TargetConfig:
        if (self.brevo is None) == (self.mailchimp is None):
            raise ValueError("expected exactly one of 'brevo: {list_id: N}' or 'mailchimp: {audience: ID}'")
        return self

    @property
    def target(self) -> Target:
        if self.brevo:
            return Target("brevo", str(self.brevo.list_id))
        assert self.mailchimp
        return Target("mailchimp", self.mailchimp.audience, self.mailchimp.tag)


class ListConfig(Strict):
    # What contacts read (confirmation mail subject and text, confirmation page, preference
    # centre); the list's name when not set. The description is for the team only, never shown.
    title: str | None = None
    description: str | None = None
    consent: Literal["double_opt_in", "single_opt_in", "legitimate_interest"] = "single_opt_in"
    segment: Segment | None = None
    auto_enroll: bool = False
    exclusive_with: StrList = []
    targets: list[TargetConfig] = []
    schedule: ScheduleField | None = None
    on_violation: Literal["flag", "remove"] = "flag"


DEFAULT_KINDS = ["client", "prospect", "vendor", "partner", "employee", "other"]
DEFAULT_STAGES = ["suspect", "cold", "warm", "hot", "active", "dormant", "ambassador", "detractor"]


class Config(Strict):
    version: Literal[1]
    database: str = "sqlite:///syncd.db"
    database_timeouts: DatabaseTimeouts = DatabaseTimeouts()
    providers: Providers = Providers()
    double_opt_in: DoubleOptIn = DoubleOptIn()
    unsubscribe: Unsubscribe = Unsubscribe()
    server: Server = Server()
    sync: SyncSettings = SyncSettings()
    inbox: Inbox = Inbox()
    qualification: Qualification = Qualification()
    kinds: StrList = DEFAULT_KINDS
    stages: StrList = DEFAULT_STAGES
    lists: dict[str, ListConfig] = {}

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        for name, lst in self.lists.items():
            for other in lst.exclusive_with:
                if other not in self.lists:
                    raise Located(("lists", name, "exclusive_with"), f"unknown list {other!r}")
            for i, t in enumerate(lst.targets):
                provider = t.target.provider
                if getattr(self.providers, provider) is None:
                    raise Located(
                        ("lists", name, "targets", i, provider), f"no 'providers.{provider}' section"
                    )
            seg, where = lst.segment, ("lists", name, "segment")
            while seg is not None:
                for field, allowed in (("kind", self.kinds), ("stage", self.stages)):
                    for value in getattr(seg, field) or []:
                        if value not in allowed:
                            raise Located(
                                (*where, field),
                                f"unknown {field} {value!r}; expected one of {', '.join(allowed)}",
                            )
                seg, where = seg.not_, (*where, "not")
        if self.double_opt_in.transport == "brevo" and self.providers.brevo is None:
            raise Located(
                ("double_opt_in", "transport"), "transport 'brevo' needs a 'providers.brevo' section"
            )
        return self

    def list_title(self, name: str) -> str:
        """The list's public title: its ``title``, else its name (never the internal description)."""
        lst = self.lists.get(name)
        return (lst.title if lst else None) or name

    def list(self, name: str) -> ListConfig:
        try:
            return self.lists[name]
        except KeyError:
            raise UnknownList(
                f"unknown list {name!r}; the config has: {', '.join(self.lists) or 'none'}"
            ) from None


class UnknownList(KeyError):
    """A list name the config does not declare (a KeyError, for the callers that catch one)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Located(ValueError):
    """A model check that knows which key is wrong (``loc``); the loader adds file and line."""

    def __init__(self, loc: tuple[Any, ...], message: str):
        super().__init__(message)
        self.loc = loc
