"""
The "SSE settings" page of the Django admin.

Django adds pages to its admin through ``AdminSite.get_urls()`` and lists
them on the index through ``AdminSite.get_app_list()``, so this module
provides an ``AdminSite`` subclass that does both. To make it the default
``admin.site``, a project puts ``"sse.admin.SSEAdminConfig"`` in
``INSTALLED_APPS`` in place of ``"django.contrib.admin"``. Then
``admin.site.urls`` serves the page, with no model, table or migration.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.template.response import TemplateResponse
from django.urls import path, reverse

from .conf import get_config
from .exceptions import ConfigurationError
from .overview import live_counts, setting_rows

APP_LABEL = "sse"


class SSEAdminSite(admin.AdminSite):
    """
    The default admin site plus a read-only page of the sse configuration
    and the live counts of this process, for staff users only.
    """

    settings_template = "admin/sse/settings.html"

    def get_urls(self):
        urls = [
            # The admin's own app index pattern only matches the labels of
            # registered models, and the sse app has none.
            path(
                f"{APP_LABEL}/",
                self.admin_view(self.app_index),
                {"app_label": APP_LABEL},
                name="app_list",
            ),
            path(f"{APP_LABEL}/settings/", self.admin_view(self.sse_settings_view), name="sse_settings"),
        ]
        return urls + super().get_urls()

    def get_app_list(self, request, app_label=None):
        """Add the "Server-Sent Events" app with its settings page for staff users."""
        app_list = super().get_app_list(request, app_label)
        if app_label not in (None, APP_LABEL) or not self.has_permission(request):
            return app_list

        entry = {
            "name": "SSE settings",
            "object_name": "SSESettings",
            "perms": {"add": False, "change": False, "delete": False, "view": True},
            "admin_url": reverse("admin:sse_settings", current_app=self.name),
            "add_url": None,
            "view_only": True,
        }
        for app in app_list:
            if app["app_label"] == APP_LABEL:
                app["models"].append(entry)
                app["models"].sort(key=lambda model: model["name"])
                return app_list

        app_list.append(
            {
                "name": "Server-Sent Events",
                "app_label": APP_LABEL,
                "app_url": reverse("admin:app_list", kwargs={"app_label": APP_LABEL}, current_app=self.name),
                "has_module_perms": True,
                "models": [entry],
            }
        )
        app_list.sort(key=lambda app: app["name"].lower())
        return app_list

    def sse_settings_view(self, request):
        """Render every setting with its value and source, and the live counts."""
        try:
            config = get_config()
            error = ""
        except ConfigurationError as exception:
            # The page stays useful while the configuration is broken, because
            # it shows the message beside the defaults and variables.
            config = None
            error = str(exception)

        context = {
            **self.each_context(request),
            "title": "SSE settings",
            "subtitle": None,
            "app_label": APP_LABEL,
            "configuration_error": error,
            "settings": setting_rows(config),
            "live": live_counts(),
        }
        request.current_app = self.name
        return TemplateResponse(request, self.settings_template, context)


class SSEAdminConfig(AdminConfig):
    """The Django admin with ``SSEAdminSite`` as its default site."""

    default_site = "sse.admin.SSEAdminSite"
