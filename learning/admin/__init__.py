"""Operating the learning loop from the admin: model versions, training runs, the golden set.

Rows change only through `learning.runs` (retrain) and `learning.versions` (promote, roll
back), the same functions the management commands and the JSON endpoint call; this module
dispatches, and `learning.admin.display` renders the badges, tables and charts. Operator actions
need the `learning.operate_learning` permission on top of staff status (`learning.permissions`);
everyone else gets 403. What the admin must never do is delete the version that is
answering customers, or edit a training run's record.
"""

from learning.admin import feedback_export, golden_set, model_versions, training_runs

__all__ = ["feedback_export", "golden_set", "model_versions", "training_runs"]
