"""The business profile: edited in the admin, read by every text that names the business."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from knowledge.demo.corpus import PROFILE_PATH
from knowledge.models import BusinessProfile, KnowledgeArticle, ThresholdCalibration
from knowledge.profile import current_profile, do_fill_profile
from knowledge.prompt import grounded_turns
from knowledge.services import do_save_article

pytestmark = pytest.mark.django_db

LIST = reverse("admin:knowledge_businessprofile_changelist")
RECALIBRATE = reverse("admin:knowledge_businessprofile_recalibrate")


@pytest.fixture
def staff_client(staff_user) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


def test_blank_fields_fall_back_to_the_settings_then_to_neutral_words(settings):
    settings.BUSINESS_NAME = "Spokes & Chains"
    BusinessProfile.objects.create(pk=1, contact="0800 555")

    profile = current_profile()

    assert (profile.business_name, profile.contact) == ("Spokes & Chains", "0800 555")
    assert profile.hours == "our opening hours" and profile.helps_with == ""


def test_the_prompt_names_the_profiles_business():
    BusinessProfile.objects.create(pk=1, business_name="Finch Bank")

    turns = grounded_turns(
        [{"role": "user", "content": "card?"}], [{"title": "Cards", "text": "Cards arrive."}]
    )

    assert turns[0]["content"].startswith("You are the customer-service assistant of Finch Bank.")


def test_the_admin_list_is_the_one_profiles_page_and_saves_it(staff_client, staff_user):
    page = staff_client.get(LIST, follow=True)
    profile = BusinessProfile.objects.get()
    assert page.redirect_chain[-1][0] == reverse(
        "admin:knowledge_businessprofile_change", args=[profile.pk]
    )
    assert b"Not calibrated yet." in page.content
    assert b'placeholder="our company"' in page.content  # what a blank name falls back to

    response = staff_client.post(
        reverse("admin:knowledge_businessprofile_change", args=[profile.pk]),
        {
            "business_name": "Finch Bank",
            "assistant_name": "Finchy",
            "contact": "the app",
            "hours": "",
            "greeting": "Hi",
            "helps_with": "",
            "colour": "#0b6e4f",
            "min_score_override": "",
        },
    )

    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.business_name, profile.colour, profile.updated_by) == (
        "Finch Bank",
        "#0b6e4f",
        staff_user,
    )
    assert current_profile().assistant_name == "Finchy"
    assert not staff_client.get(reverse("admin:knowledge_businessprofile_add")).status_code == 200


def test_a_colour_that_is_not_one_is_refused(staff_client):
    profile = BusinessProfile.objects.create(pk=1)
    response = staff_client.post(
        reverse("admin:knowledge_businessprofile_change", args=[profile.pk]),
        {"colour": "#12345z", "min_score_override": ""},
    )
    assert response.status_code == 200
    assert b"A colour as #rrggbb" in response.content


def test_calibrate_again_from_the_admin_shows_the_tradeoff(staff_client, tiny_encoder):
    for title, question in (("Cards", "where is my card"), ("Top up", "how do i top up")):
        do_save_article(
            KnowledgeArticle(title=title, text=f"{title} text.", example_questions=question)
        )

    staff_client.post(RECALIBRATE)
    page = staff_client.get(LIST, follow=True)

    calibration = ThresholdCalibration.objects.get()
    assert f"the threshold is now {calibration.threshold:.3f}".encode() in page.content
    assert b"Decline threshold: what it trades off" in page.content  # the chart
    assert f"{calibration.threshold:.3f} (calibrated".encode() in page.content


def test_the_demo_seed_fills_blank_fields_only_and_only_with_its_articles(tiny_encoder):
    demo = json.loads(PROFILE_PATH.read_text())
    BusinessProfile.objects.create(pk=1, business_name="Finch Bank")

    call_command("seed_knowledge_base", stdout=StringIO())

    profile = BusinessProfile.objects.get()
    assert profile.business_name == "Finch Bank"  # staff's value stays
    assert ThresholdCalibration.objects.count() == 1  # calibrated on the demo's articles
    assert profile.contact == demo["contact"]
    BusinessProfile.objects.update(contact="")
    call_command("seed_knowledge_base", stdout=StringIO())  # articles exist: no seeding
    assert BusinessProfile.objects.get().contact == ""
    assert ThresholdCalibration.objects.count() == 1
    assert do_fill_profile({"contact": "x", "unknown": "y"}) is True
