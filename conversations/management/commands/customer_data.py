"""`manage.py customer_data`: a customer's data exported as JSON, or erased, on request."""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.privacy import Customer, customer_data, customer_of_conversation, erase_customer


class Command(BaseCommand):
    help = (
        "Export (as JSON) or erase everything the chat stored about one customer: their "
        "conversations, messages and ratings, found by user name, browser session or any of "
        "their conversations. An erasure lists the model versions trained on their ratings, "
        "to retrain without them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["export", "erase"])
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", help="a logged-in customer's user name")
        who.add_argument("--session", help="an anonymous customer's session key")
        who.add_argument("--conversation", help="the id of any of the customer's conversations")
        parser.add_argument("--output", help="export: write the JSON here (default: stdout)")
        parser.add_argument("--yes", action="store_true", help="erase: do not ask for confirmation")

    def handle(self, *args: object, **options: object) -> None:
        customer = _customer(options)
        if options["action"] == "export":
            text = json.dumps(customer_data(customer), indent=2, ensure_ascii=False)
            if options["output"]:
                Path(str(options["output"])).write_text(text + "\n")
                self.stdout.write(f"Wrote the data of {customer} to {options['output']}.")
            else:
                self.stdout.write(text)
            return
        count = customer.conversations().count()
        if not options["yes"]:
            answer = input(f"Erase {count} conversation(s) of {customer} for good? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Nothing erased.")
        erasure = erase_customer(customer)
        self.stdout.write(
            f"Erased {customer}: {erasure.conversations} conversation(s), {erasure.messages} "
            f"message(s), {erasure.ratings} rating(s), {erasure.proposals} article proposal(s)."
        )
        if erasure.trained_versions:
            self.stdout.write(
                "Model versions trained on their ratings (retrain or roll back without them): "
                + ", ".join(erasure.trained_versions)
            )


def _customer(options: dict) -> Customer:
    if options["user"]:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named {options['user']!r}.")
        return Customer(user_id=user.pk)
    if options["session"]:
        return Customer(session_key=str(options["session"]))
    try:
        customer = customer_of_conversation(str(options["conversation"]))
    except (ValueError, ValidationError) as error:  # not a UUID
        raise CommandError(f"No conversation {options['conversation']!r}.") from error
    if customer is None:
        raise CommandError(f"No conversation {options['conversation']!r}.")
    return customer
