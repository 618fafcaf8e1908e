"""Export usable feedback as JSONL for TRL's KTO trainer and Hugging Face datasets."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from learning.export import write_kto_jsonl
from learning.feedback import EXPORTABLE_REVIEW_STATUSES, feedback_for_export


class Command(BaseCommand):
    help = (
        "Write the feedback as JSON Lines, one {prompt, completion, label} object a line "
        "(conversational format: prompt and completion are lists of {role, content}; label is "
        "true for a desirable reply). Corrections add a desirable row. Rejected feedback is "
        "never exported. Load it with datasets.load_dataset('json', data_files=...)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", default="-", help="file to write (default stdout)")
        parser.add_argument(
            "--review-status",
            choices=EXPORTABLE_REVIEW_STATUSES,
            help="only feedback with this review status",
        )
        parser.add_argument("--rating", type=int, choices=[1, -1], help="only this rating")
        parser.add_argument(
            "--include-used",
            action="store_true",
            help="also feedback that a promoted model already learned from",
        )

    def handle(self, *args: object, **options: object) -> None:
        queryset = feedback_for_export(
            review_status=options["review_status"],
            rating=options["rating"],
            include_used=bool(options["include_used"]),
        )
        if options["output"] == "-":
            count = write_kto_jsonl(queryset, self.stdout)
        else:
            with open(str(options["output"]), "w", encoding="utf-8") as handle:
                count = write_kto_jsonl(queryset, handle)
        self.stderr.write(f"Exported {count} rows.")
