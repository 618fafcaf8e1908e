from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Chatbot review"
admin.site.site_title = "Chatbot review"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/learning/", include("learning.urls")),
    path("", include("conversations.urls")),
]
