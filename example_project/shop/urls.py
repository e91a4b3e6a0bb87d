from django.urls import path

from . import views

app_name = "shop"

urlpatterns = [
    path("", views.checkout, name="checkout"),
    path("orders/<str:number>/", views.order_page, name="order"),
    path("orders/<str:number>/pay/", views.order_pay, name="order_pay"),
    path("orders/<str:number>/status/", views.order_status, name="order_status"),
]
