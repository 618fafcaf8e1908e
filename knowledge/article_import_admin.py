"""Importing and exporting articles from the admin's article list.

*Import articles* → upload a file → a preview of what would be created, updated and switched
off (or the file's problems, each with its line) → *Import* writes it. The views only move
requests: reading is ``knowledge.importing``, keeping the upload between the two pages
``knowledge.importing.uploads``, the import ``knowledge.imports.do_import_knowledge``. Importing
needs the permissions to add and to change articles; exporting, to view them.
"""

from __future__ import annotations

import io
import zipfile

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from knowledge.importing import FORMATS, FormatError
from knowledge.importing.exporting import (
    article_rows,
    export_csv,
    export_json,
    export_jsonl,
    markdown_files,
)
from knowledge.importing.uploads import (
    MAX_UPLOAD_BYTES,
    UPLOAD_SUFFIXES,
    Upload,
    forget_upload,
    keep_upload,
    kept_upload,
    read_upload,
)
from knowledge.imports import do_import_knowledge
from knowledge.models import KnowledgeArticle
from knowledge.services import KnowledgeError

PREVIEW_TEMPLATE = "admin/knowledge/knowledgearticle/import_preview.html"
UPLOAD_TEMPLATE = "admin/knowledge/knowledgearticle/import_upload.html"
EXPORT_TYPES = {
    "json": ("application/json", export_json),
    "jsonl": ("application/x-ndjson", export_jsonl),
    "csv": ("text/csv", export_csv),
}


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        help_text="JSON, JSON Lines or CSV of articles, a Zendesk Guide articles export "
        "(JSON), or a .zip of Markdown files; at most "
        f"{MAX_UPLOAD_BYTES // 2**20} MiB (larger: manage.py import_knowledge)."
    )
    format = forms.ChoiceField(
        choices=[("auto", "By the file's name and shape"), *((name, name) for name in FORMATS)],
        initial="auto",
        required=False,
    )
    replace = forms.BooleanField(
        required=False,
        label="Switch off the articles the file does not have",
        help_text="Active articles no row of the file matches become inactive (not deleted).",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file has {upload.size / 2**20:.1f} MiB; at most "
                f"{MAX_UPLOAD_BYTES // 2**20} MiB here (import larger files with "
                "manage.py import_knowledge)."
            )
        if not upload.name.lower().endswith(UPLOAD_SUFFIXES):
            raise forms.ValidationError(f"Upload a {', '.join(UPLOAD_SUFFIXES)} file.")
        return upload


class ArticleImportAdminMixin:
    """The import and export pages of ``KnowledgeArticleAdmin``."""

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="knowledge_knowledgearticle_import"),
            path(
                "import/confirm/",
                view(self.import_confirm_view),
                name="knowledge_knowledgearticle_import_confirm",
            ),
            path("export/", view(self.export_view), name="knowledge_knowledgearticle_export"),
            *super().get_urls(),
        ]

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request) and self.has_change_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra = {
            "can_import": self.has_import_permission(request),
            "export_formats": [*EXPORT_TYPES, "markdown"],
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """The upload form; posted, the preview of the file's changes (or its problems)."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(
            request.POST if request.method == "POST" else None,
            request.FILES if request.method == "POST" else None,
        )
        if not form.is_valid():
            return self._page(request, UPLOAD_TEMPLATE, "Import articles", {"form": form})
        file = form.cleaned_data["file"]
        upload = Upload(
            name=file.name,
            content=file.read(),
            format=form.cleaned_data["format"] or "auto",
            replace=form.cleaned_data["replace"],
        )
        forget_upload(request.session)
        return self._preview(request, upload)

    def import_confirm_view(self, request: HttpRequest) -> HttpResponse:
        """Import the previewed upload: read and checked again, as the knowledge base may have
        changed since the preview."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        import_url = reverse("admin:knowledge_knowledgearticle_import")
        upload = kept_upload(request.session)
        if request.method != "POST" or upload is None:
            return HttpResponseRedirect(import_url)
        if request.POST.get("digest") != upload.digest:
            self.message_user(
                request,
                "That preview is out of date (another file was uploaded since): check this "
                "one and import it again.",
                messages.WARNING,
            )
            return self._preview(request, upload)
        read = read_upload(upload)
        if read.problems:
            forget_upload(request.session)
            return self._preview(request, upload, read=read)
        try:
            result = do_import_knowledge(
                read.records, dry_run=False, replace=upload.replace, by=request.user
            )
        except KnowledgeError as error:
            self.message_user(request, str(error), messages.ERROR)
            return self._preview(request, upload)
        forget_upload(request.session)
        self.message_user(request, f"Imported {upload.name}: {result.summary()}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:knowledge_knowledgearticle_changelist"))

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Every article (?all=1: inactive ones too) as a download, in ?format= json, jsonl,
        csv or markdown (a zip)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        articles = KnowledgeArticle.objects.defer("embedding").order_by("topic", "title", "id")
        if request.GET.get("all") != "1":
            articles = articles.filter(is_active=True)
        return export_response(articles, request.GET.get("format", "json"))

    @admin.action(description="Export selected articles (JSON, importable)", permissions=["view"])
    def export_selected(self, request: HttpRequest, queryset) -> HttpResponse:
        return export_response(queryset.defer("embedding"), "json")

    def _preview(self, request: HttpRequest, upload: Upload, *, read=None) -> HttpResponse:
        """Read the upload and show what importing it would do; keep it for the confirmation
        only when it can be imported."""
        try:
            read = read or read_upload(upload)
        except FormatError as error:
            self.message_user(request, str(error), messages.ERROR)
            form = ImportUploadForm()
            return self._page(request, UPLOAD_TEMPLATE, "Import articles", {"form": form})
        context = {"upload": upload, "problems": read.problems, "result": None}
        if not read.problems:
            result = do_import_knowledge(read.records, dry_run=True, replace=upload.replace)
            context.update(result=result, digest=upload.digest, record_count=len(read.records))
            if result.changed:
                keep_upload(request.session, upload)
        title = f"Import {upload.name}?" if not read.problems else f"{upload.name} has problems"
        return self._page(request, PREVIEW_TEMPLATE, title, context)

    def _page(self, request: HttpRequest, template: str, title: str, context: dict):
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": title,
                "changelist_url": reverse("admin:knowledge_knowledgearticle_changelist"),
                **context,
            },
        )


def export_response(articles, format: str) -> HttpResponse:
    """The articles as an attachment named after today."""
    rows = article_rows(articles)
    stem = f"knowledge-{timezone.localdate():%Y-%m-%d}"
    if format == "markdown":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for relative, content in markdown_files(rows).items():
                archive.writestr(f"{stem}/{relative}", content)
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        filename = f"{stem}.zip"
    else:
        content_type, write = EXPORT_TYPES.get(format, EXPORT_TYPES["json"])
        response = HttpResponse(write(rows), content_type=f"{content_type}; charset=utf-8")
        filename = f"{stem}.{format if format in EXPORT_TYPES else 'json'}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
