"""The business the bot speaks for: its name and how customers reach its team.

Read from settings (BUSINESS_NAME, BUSINESS_CONTACT, BUSINESS_HOURS), whose defaults are the
demo shop's. Every text that names the business (the grounded prompt, declines, handoff
messages) asks here, so that a profile edited elsewhere later changes one module.
"""

from __future__ import annotations

from django.conf import settings


def business_name() -> str:
    """The business's name, as the prompt and the pages give it."""
    return settings.BUSINESS_NAME


def business_contact() -> str:
    """How customers reach a person: e-mail, phone, hours."""
    return settings.BUSINESS_CONTACT


def business_hours() -> str:
    """When the team answers, told to a customer waiting while no agent is on duty."""
    return settings.BUSINESS_HOURS
