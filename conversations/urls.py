from django.urls import path

from conversations import views, widget_views

app_name = "conversations"

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("inbox/", views.inbox_page, name="inbox"),
    path("widget/", widget_views.embedded_chat, name="widget"),
    path("widget/config.json", widget_views.widget_config, name="widget-config"),
    path("widget/install/", widget_views.widget_install_page, name="widget-install"),
]
