from django.urls import path

from okuru.customers import views

app_name = "customers"
urlpatterns = [
    path("", views.customer_list, name="list"),
    path("views/", views.customer_list, name="views"),
    path("design/", views.customer_list, name="design"),
    path("import/", views.customer_list, name="import"),
    path("export/", views.customer_list, name="export"),
]
