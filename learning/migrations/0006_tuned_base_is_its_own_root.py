"""The base tuned for the task becomes a root version, the learning loop's θ₀.

It used to be registered with the pretrained model as parent and anchor, so every run pulled
the model toward SmolLM2 as downloaded and undid the tuning. Its runs' versions are anchored on
it instead, so the next run from them is pulled toward the tuned weights.
"""

import re

from django.db import migrations

TUNED_NAME = re.compile(r"-grounded-[0-9a-f]{10}$")


def tuned_bases_become_roots(apps, schema_editor):
    ModelVersion = apps.get_model("learning", "ModelVersion")
    for tuned in ModelVersion.objects.filter(
        source="trained", parent__source="pretrained", name__contains="-grounded-"
    ):
        if not TUNED_NAME.search(tuned.name):
            continue
        pretrained = tuned.parent_id
        ModelVersion.objects.filter(anchor_id=pretrained, source="trained").exclude(
            pk=tuned.pk
        ).update(anchor=tuned)
        ModelVersion.objects.filter(pk=tuned.pk).update(parent=None, anchor=None)


class Migration(migrations.Migration):
    dependencies = [("learning", "0005_model_version_adapter_base")]

    operations = [migrations.RunPython(tuned_bases_become_roots, migrations.RunPython.noop)]
