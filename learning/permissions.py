"""Who may operate the learning loop: retrain, promote and roll back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

OPERATE = "learning.operate_learning"


def can_operate(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Active staff with the `learning.operate_learning` permission."""
    return bool(user.is_active and user.is_staff and user.has_perm(OPERATE))
