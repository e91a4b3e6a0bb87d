from django.urls import include, path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.checkout, name="checkout"),
    path("orders/<str:number>/", views.order_page, name="order"),
    path("orders/<str:number>/pay/", views.order_pay, name="order_pay"),
    path("orders/<str:number>/status/", views.order_status, name="order_status"),
    # The language switcher posts to Django's set_language (shop:set_language).
    path("i18n/", include("django.conf.urls.i18n")),
]
