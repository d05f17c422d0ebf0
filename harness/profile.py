"""The deployment profile: the situation a user decides for (query volume, document updates, machine price,
latency limit). It is the task YAML's `decision:` block and `harness run --profile k=v,...`; the run turns
each system's measured costs into machine-hours (and money, when `usd_per_hour` is given) with it
(harness.cost).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, ValidationError

from harness.dataspec import Strict
from harness.errors import HarnessError, did_you_mean


class Profile(Strict):
    """Deployment profile: turns each system's measured costs into machine-hours (and money) per month and
    picks the system to deploy (the report's Decision section). `--profile k=v,...` overrides it for one run."""

    example: ClassVar[str] = """\
decision: {queries_per_day: 5000, updates_per_month: 4, usd_per_hour: 0.9, p95_latency_s: 2}"""

    queries_per_day: float = Field(1000, ge=0, description="Questions the deployed system answers per day.")
    updates_per_month: float = Field(
        1, ge=0, description="Times per month the documents change (each refreshes the index and/or the adapter)."
    )
    docs_per_update: int = Field(1, ge=1, description="Documents that change at each update (re-indexed ones).")
    usd_per_hour: float | None = Field(
        None,
        gt=0,
        description="What one machine-hour costs you, in USD. Unset: costs are shown in machine-hours only.",
    )
    p95_latency_s: float | None = Field(
        None, gt=0, description="Latency limit: a system whose 95th-percentile latency is above it is not chosen."
    )


def profile_fields() -> list[str]:
    return list(Profile.model_fields)


def parse_profile(text: str, base: Profile | None = None) -> Profile:
    """`k=v,k=v` (the `--profile` option) over `base`: an unknown key or a bad value is one HarnessError line
    naming it. `usd_per_hour=none` unsets an optional key."""
    values = (base or Profile()).model_dump()
    given = [p.strip() for p in text.split(",") if p.strip()]
    if not given:
        raise HarnessError("--profile is empty; e.g. --profile queries_per_day=5000,updates_per_month=4")
    for item in given:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise HarnessError(f"--profile: '{item}' is not key=value; e.g. queries_per_day=5000")
        if key not in Profile.model_fields:
            raise HarnessError(
                f"--profile: unknown key '{key}'{did_you_mean(key, profile_fields())}; "
                f"keys: {', '.join(profile_fields())}"
            )
        values[key] = None if value.lower() in ("none", "null", "") else value
    try:
        return Profile.model_validate(values)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise HarnessError(f"--profile: {key}={values.get(key)!s}: {err['msg']}") from None


def defaults_used(profile: Profile) -> list[str]:
    """The profile's keys that still hold their default value (the report states them as defaults)."""
    return [k for k, f in Profile.model_fields.items() if getattr(profile, k) == f.default]
