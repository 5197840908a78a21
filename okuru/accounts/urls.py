from django.urls import path

from okuru.accounts import views

app_name = "accounts"
urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("profile/", views.profile, name="profile"),
    path("profile/password/", views.password_change, name="password_change"),
    path("profile/tokens/", views.token_create, name="token_create"),
    path("profile/tokens/<int:token_id>/revoke/", views.token_revoke, name="token_revoke"),
    path("operators/", views.operators, name="operators"),
    path("operators/new/", views.operator_create, name="operator_create"),
    path("operators/<int:operator_id>/", views.operator_edit, name="operator"),
    path(
        "operators/<int:operator_id>/password/",
        views.operator_password,
        name="operator_password",
    ),
    path("operators/<int:operator_id>/active/", views.operator_active, name="operator_active"),
    path("operators/<int:operator_id>/unlock/", views.operator_unlock, name="operator_unlock"),
    path("groups/", views.groups, name="groups"),
    path("groups/new/", views.group_create, name="group_create"),
    path("groups/<int:group_id>/", views.group_edit, name="group"),
    path("groups/<int:group_id>/delete/", views.group_delete, name="group_delete"),
    path("log/", views.operation_log, name="log"),
    path("jobs/", views.job_list, name="jobs"),
    path("jobs/<int:job_id>/", views.job_detail, name="job"),
    path("notices/", views.notices, name="notices"),
    path("notices/read/", views.notices_read, name="notices_read"),
    path("notices/<int:notice_id>/", views.notice_open, name="notice"),
]
