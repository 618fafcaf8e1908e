"""Admin inlines shared by the apps."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.http import HttpRequest


class ReadOnlyPartInline(admin.TabularInline):
    """An inline that is part of its parent's record (a transcript, a revision history): whoever
    may view or change the parent sees it, and nobody adds, edits or deletes a row of it."""

    extra = 0
    max_num = 0
    can_delete = False

    def has_view_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        opts = self.parent_model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False
