"""What the model registry announces: a version is about to answer customers, and one does.

Which version answers is a fact of the database (``ModelVersion.status``); the registry
(``learning.versions``) changes it and announces it, and whoever serves the models reacts
(``serving.activation``), so the registry imports no serving code.

- ``version_activating(version)``: sent before the activation's transaction, so that a server
  can load the version while nothing is locked and no web process can name it yet. A receiver
  returns a remark for the version's activation note ("" when it has none); a failure is a
  remark, never an exception: the activation goes on (promoting or rolling back is the gate's
  or an operator's decision, and a server that is down must not block a rollback).
- ``version_activated(version, retired, was_retired)``: sent once the activation has
  committed; ``retired`` is the version it replaced (None at the first activation),
  ``was_retired`` whether ``version`` had answered before (a rollback).
"""

from django.dispatch import Signal

version_activating = Signal()
version_activated = Signal()
