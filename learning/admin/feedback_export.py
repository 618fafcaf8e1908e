"""The feedback admin's "Export as KTO JSONL" action: the chat app's admin, with learning's
export added.

The training format is learning's, and the chat app imports nothing from learning, so this
module registers a subclass of ``conversations.admin.feedback.FeedbackAdmin`` in its place
(``learning`` comes after ``conversations`` in INSTALLED_APPS, so its admin loads later).
"""

from __future__ import annotations

import io

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from conversations.admin.feedback import FeedbackAdmin
from conversations.models import Feedback
from learning.export import write_kto_jsonl
from learning.feedback import FeedbackSet, feedback_for_export


class FeedbackWithExportAdmin(FeedbackAdmin):
    actions = [*FeedbackAdmin.actions, "export_kto_jsonl"]

    @admin.action(description="Export as KTO JSONL", permissions=["view"])
    def export_kto_jsonl(self, request: HttpRequest, queryset: FeedbackSet) -> HttpResponse | None:
        """Download the selection in TRL's prompt/completion/label format (rejected left out)."""
        buffer = io.StringIO()
        count = write_kto_jsonl(feedback_for_export(queryset), buffer)
        if not count:
            self.message_user(
                request,
                "Nothing to export: rejected feedback is never exported.",
                messages.WARNING,
            )
            return None
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(buffer.getvalue(), content_type="application/jsonl; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="feedback-kto-{stamp}.jsonl"'
        return response


admin.site.unregister(Feedback)
admin.site.register(Feedback, FeedbackWithExportAdmin)
