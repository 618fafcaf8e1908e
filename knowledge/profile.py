"""The business the bot speaks for: its name, its assistant's name, how customers reach its team.

Staff edit it in the admin (one ``BusinessProfile`` row); a field left blank there falls back to
its setting (BUSINESS_NAME, BUSINESS_ASSISTANT_NAME, BUSINESS_CONTACT, BUSINESS_HOURS,
BUSINESS_GREETING, BUSINESS_HELPS_WITH, BUSINESS_COLOUR), and a setting left blank to a neutral
text. Every text that names the business asks here: the chat page and the widget, the grounded
prompt, the declines and the handoff messages.

The row is read per process at most every KNOWLEDGE_POLL_SECONDS (``knowledge.polled``; a
save in this process is seen at once). Code on an event loop never queries: it gets the row as
last read, which the retrieval threads keep fresh (``knowledge.retrieval`` reads it before each
reply), or the settings before the first read. The models are imported where they are used:
the prompt (``knowledge.prompt``) imports this module, and the serving code imports the prompt
before Django is set up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from django.conf import settings

from knowledge.polled import PolledValue

if TYPE_CHECKING:
    from knowledge.models import BusinessProfile

PROFILE_PK = 1
NEUTRAL = {
    "business_name": "our company",
    "assistant_name": "Assistant",
    "contact": "our customer-service team",
    "hours": "our opening hours",
    "greeting": "Hello! Ask me a question and I'll answer from our help articles.",
    "helps_with": "",
    "colour": "#1f6feb",
}
SETTINGS = {
    "business_name": "BUSINESS_NAME",
    "assistant_name": "BUSINESS_ASSISTANT_NAME",
    "contact": "BUSINESS_CONTACT",
    "hours": "BUSINESS_HOURS",
    "greeting": "BUSINESS_GREETING",
    "helps_with": "BUSINESS_HELPS_WITH",
    "colour": "BUSINESS_COLOUR",
}


@dataclass(frozen=True)
class Profile:
    business_name: str
    assistant_name: str
    contact: str
    hours: str
    greeting: str
    helps_with: str  # "" : the knowledge base's topics
    colour: str
    min_score_override: float | None = None

    @property
    def team_name(self) -> str:
        """Who "a person from the team" is, as the chat labels an agent's messages."""
        unnamed = self.business_name == NEUTRAL["business_name"]
        return "Our team" if unnamed else f"{self.business_name} team"


def _read_row() -> dict[str, object] | None:
    from knowledge.models import BusinessProfile

    return (
        BusinessProfile.objects.filter(pk=PROFILE_PK)
        .values(*SETTINGS, "min_score_override")
        .first()
    )


_row: PolledValue[dict[str, object] | None] = PolledValue(_read_row, lambda: None)


def default_value(field: str) -> str:
    """A field's value when the profile leaves it blank: its setting, else a neutral text."""
    return getattr(settings, SETTINGS[field], "") or NEUTRAL[field]


def current_profile() -> Profile:
    """The profile as staff left it, blanks filled from the settings."""
    row = _row.get()
    values = {}
    for field in SETTINGS:
        stored = row.get(field) if row else ""
        values[field] = str(stored) if stored else default_value(field)
    override = row.get("min_score_override") if row else None
    return Profile(**values, min_score_override=override)  # type: ignore[arg-type]


def forget_profile(**_kwargs: object) -> None:
    """This process reads the profile again at its next use."""
    _row.forget()


def business_name() -> str:
    """The business's name, as the prompt and the pages give it."""
    return current_profile().business_name


def business_contact() -> str:
    """How customers reach a person: e-mail, phone, hours."""
    return current_profile().contact


def business_hours() -> str:
    """When the team answers, told to a customer waiting while no agent is on duty."""
    return current_profile().hours


def stored_profile() -> BusinessProfile:
    """The profile's row for editing (created, blank, on first use)."""
    from knowledge.models import BusinessProfile

    profile, _ = BusinessProfile.objects.get_or_create(pk=PROFILE_PK)
    return profile


def do_fill_profile(values: dict[str, str]) -> bool:
    """Write ``values`` into the profile's blank fields only (the demo's data at start-up): a
    field staff filled in is never overwritten. Whether anything changed."""
    profile = stored_profile()
    known = {field.name for field in fields(Profile)}
    changed = [
        name for name, value in values.items() if name in known and not getattr(profile, name)
    ]
    for name in changed:
        setattr(profile, name, values[name])
    if changed:
        profile.save(update_fields=[*changed, "updated_at"])
    return bool(changed)
