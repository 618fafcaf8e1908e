"""The business profile in the admin: one page, with the decline threshold and what it trades off.

Registered from ``knowledge.admin``. The list of profiles is the one profile's page; it cannot
be added twice or deleted. A blank field shows, greyed, the value it falls back to.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from admin_parts.charts import threshold_tradeoff_svg
from knowledge.calibration import (
    CalibrationError,
    do_calibrate_threshold,
    latest_calibration,
    min_score,
)
from knowledge.models import BusinessProfile
from knowledge.profile import SETTINGS, default_value, forget_profile, stored_profile

PROFILE_FIELDS = list(SETTINGS)


class BusinessProfileForm(forms.ModelForm):
    class Meta:
        model = BusinessProfile
        fields = [*PROFILE_FIELDS, "min_score_override"]
        widgets = {"greeting": forms.Textarea(attrs={"rows": 3, "cols": 80})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in PROFILE_FIELDS:
            self.fields[name].widget.attrs["placeholder"] = default_value(name)
        self.fields["colour"].widget = forms.TextInput(
            attrs={"type": "color", "value": self.initial.get("colour") or default_value("colour")}
        )


class BusinessProfileAdmin(admin.ModelAdmin):
    form = BusinessProfileForm
    fieldsets = [
        (
            None,
            {
                "fields": PROFILE_FIELDS,
                "description": "Who the bot speaks for: on the chat page and in the widget, in "
                "every prompt, in declines and in the handoff messages. A blank field uses the "
                "greyed value (its BUSINESS_ setting, or a neutral text).",
            },
        ),
        (
            "When the bot declines",
            {
                "fields": ["threshold_in_force", "calibration_chart", "min_score_override"],
                "description": "The bot declines a question whose best article scores below the "
                "threshold. It is calibrated on the knowledge base after every import; set an "
                "override to choose it yourself.",
            },
        ),
        ("History", {"fields": ["updated_by", "updated_at"]}),
    ]
    readonly_fields = ["threshold_in_force", "calibration_chart", "updated_by", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        profile = stored_profile()
        return HttpResponseRedirect(
            reverse("admin:knowledge_businessprofile_change", args=[profile.pk])
        )

    def get_urls(self) -> list[Any]:
        recalibrate = self.admin_site.admin_view(self.recalibrate_view)
        return [
            path("recalibrate/", recalibrate, name="knowledge_businessprofile_recalibrate"),
            *super().get_urls(),
        ]

    def recalibrate_view(self, request: HttpRequest) -> HttpResponse:
        target = reverse("admin:knowledge_businessprofile_changelist")
        if request.method != "POST" or not self.has_change_permission(request):
            return HttpResponseRedirect(target)
        try:
            calibration = do_calibrate_threshold()
        except CalibrationError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(
                request,
                f"Calibrated: the threshold is now {calibration.threshold:.3f}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(target)

    def save_model(
        self, request: HttpRequest, obj: BusinessProfile, form: Any, change: bool
    ) -> None:
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
        forget_profile()

    @admin.display(description="threshold in force")
    def threshold_in_force(self, profile: BusinessProfile) -> str:
        threshold = min_score()
        if profile.min_score_override is not None:
            return f"{threshold:.3f} (your override)"
        calibration = latest_calibration()
        if calibration is None:
            return f"{threshold:.3f} (KNOWLEDGE_MIN_SCORE: the knowledge base is not calibrated)"
        return f"{threshold:.3f} (calibrated {calibration.created_at:%Y-%m-%d %H:%M})"

    @admin.display(description="calibration")
    def calibration_chart(self, profile: BusinessProfile) -> SafeString:
        calibration = latest_calibration()
        button = format_html(
            '<button type="submit" form="recalibrate-form" class="button">{}</button>',
            "Calibrate again",
        )
        if calibration is None:
            return format_html('<p class="help">{}</p>{}', "Not calibrated yet.", button)
        summary = (
            f"Calibrated on {calibration.in_scope_count} example questions of "
            f"{calibration.article_count} articles (each asked as a new wording) and "
            f"{calibration.off_topic_count} off-topic questions: at {calibration.threshold:.3f} "
            f"it declines {calibration.in_scope_declined:.1%} of the example questions and "
            f"answers {calibration.off_topic_answered:.1%} of the off-topic ones."
        )
        return format_html(
            "{}<p>{}</p>{}",
            threshold_tradeoff_svg(calibration.curve, calibration.threshold),
            summary,
            button,
        )

    def render_change_form(self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any):
        # The recalibrate button's form sits outside the profile's form (forms cannot nest).
        context["recalibrate_url"] = reverse("admin:knowledge_businessprofile_recalibrate")
        return super().render_change_form(request, context, *args, **kwargs)
