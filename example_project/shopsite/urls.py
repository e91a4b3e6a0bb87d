from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # django-motp's REST API, for staff and back-office code (it needs view_payment); the
    # buyer's page follows an order through the shop's own status endpoint instead.
    path("motp/", include("django_motp.api.urls")),
    path("", include("shop.urls")),
]
