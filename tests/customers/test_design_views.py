import pytest

from okuru.accounts.models import OperationLog
from okuru.customers.models import Customer, Field, Topic

pytestmark = pytest.mark.django_db

URLS = ["/design/", "/design/fields/new/", "/design/fields/name/", "/design/fields/name/delete/"]


@pytest.fixture
def name_field():
    return Field.objects.create(key="name", label="Name", type="text")


@pytest.mark.parametrize("url", URLS)
def test_it_redirects_anonymous_to_login(client, name_field, url):
    r = client.get(url)
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("url", URLS)
def test_it_forbids_outsiders_and_members(outsider_client, member_client, name_field, url):
    # Members hold marketing rights but not database design.
    assert outsider_client.get(url).status_code == 403
    assert member_client.get(url).status_code == 403


def test_members_cannot_add_fields(member_client):
    r = member_client.post("/design/fields/new/", {"key": "x", "label": "X", "type": "text"})
    assert r.status_code == 403
    assert not Field.objects.exists()


def test_the_owner_sees_fields_and_topics(owner_client, name_field):
    Topic.objects.create(key="news", name="Weekly news")
    r = owner_client.get("/design/")
    assert r.status_code == 200
    assert b"Name" in r.content
    assert b"Weekly news" in r.content


def test_it_adds_a_select_field(owner_client):
    r = owner_client.post(
        "/design/fields/new/",
        {
            "key": "shop",
            "label": "Shop",
            "type": "select",
            "choices": "Tokyo\nOsaka\n\nTokyo\n",
            "required": "on",
        },
    )
    assert r.status_code == 302
    field = Field.objects.get(key="shop")
    assert field.choices == ["Tokyo", "Osaka"]
    assert field.required is True
    assert field.unique is False
    log = OperationLog.objects.get(action="field_add")
    assert log.target == "shop"
    assert log.operator_name == "owner"


@pytest.mark.parametrize(
    "data, errors",
    [
        (
            {"key": "Bad Key", "label": "X", "type": "text"},
            {"key": ["Use lower-case letters, digits and _ ; start with a letter."]},
        ),
        ({"key": "ok", "label": "", "type": "text"}, {"label": ["This field is required."]}),
        (
            {"key": "ok", "label": "X", "type": "colour"},
            {"type": ["Select a valid choice. colour is not one of the available choices."]},
        ),
    ],
)
def test_it_rejects_bad_fields(owner_client, data, errors):
    r = owner_client.post("/design/fields/new/", data)
    assert r.status_code == 200
    assert r.context["form"].errors == errors
    assert not Field.objects.exists()


def test_it_shows_the_design_error_for_a_select_without_choices(owner_client):
    r = owner_client.post("/design/fields/new/", {"key": "shop", "label": "Shop", "type": "select"})
    assert r.status_code == 200
    assert r.context["form"].non_field_errors() == [
        "choices: A select field needs at least one choice."
    ]
    assert b"A select field needs at least one choice." in r.content
    assert not Field.objects.exists()


def test_it_refuses_a_reserved_key(owner_client):
    r = owner_client.post("/design/fields/new/", {"key": "email", "label": "E", "type": "text"})
    assert r.context["form"].non_field_errors() == [
        "key: This key is reserved for a standard field."
    ]


def test_it_renames_a_field_and_changes_options(owner_client, name_field):
    r = owner_client.post("/design/fields/name/", {"label": "Full name", "required": "on"})
    assert r.status_code == 302
    name_field.refresh_from_db()
    assert name_field.label == "Full name"
    assert name_field.required is True
    assert OperationLog.objects.get(action="field_rename").detail == {
        "from": "Name",
        "to": "Full name",
    }
    assert OperationLog.objects.filter(action="field_change").count() == 1


def test_it_refuses_unique_when_values_repeat_and_keeps_the_label(owner_client, name_field):
    Customer.objects.create(data={"name": "Same"})
    Customer.objects.create(data={"name": "Same"})
    r = owner_client.post("/design/fields/name/", {"label": "Renamed", "unique": "on"})
    assert r.status_code == 200
    assert r.context["form"].non_field_errors() == [
        "Name cannot be made unique: some customers share a value. Make the values unique first."
    ]
    name_field.refresh_from_db()
    # Rename and options are one change: the failed option change rolls the rename back.
    assert (name_field.label, name_field.unique) == ("Name", False)
    assert not OperationLog.objects.filter(action="field_rename").exists()


def test_it_confirms_before_deleting_a_field_and_says_its_data_goes(owner_client, name_field):
    Customer.objects.create(data={"name": "Aoki"})
    Customer.objects.create(data={"name": "Baba"})
    r = owner_client.get("/design/fields/name/delete/")
    assert r.status_code == 200
    assert (
        "The field “Name” (name) and its data will be deleted: 2 customers have a value in it."
        in r.content.decode()
    )
    assert Field.objects.filter(key="name").exists()


def test_it_deletes_a_field_and_its_data(owner_client, name_field):
    c = Customer.objects.create(data={"name": "Aoki", "other": 1})
    r = owner_client.post("/design/fields/name/delete/")
    assert r.status_code == 302
    assert not Field.objects.filter(key="name").exists()
    c.refresh_from_db()
    assert c.data == {"other": 1}
    assert OperationLog.objects.get(action="field_delete").target == "name"


def test_it_404s_for_a_missing_field(owner_client):
    assert owner_client.get("/design/fields/nope/").status_code == 404
    assert owner_client.post("/design/fields/nope/delete/").status_code == 404


# --- newsletter topics -------------------------------------------------------------------------


def test_it_adds_a_topic(owner_client):
    r = owner_client.post("/design/topics/new/", {"key": "news", "name": "Weekly news"})
    assert r.status_code == 302
    assert Topic.objects.get(key="news").name == "Weekly news"
    assert OperationLog.objects.get(action="topic_add").target == "news"


def test_it_rejects_a_duplicate_topic_key(owner_client):
    Topic.objects.create(key="news", name="News")
    r = owner_client.post("/design/topics/new/", {"key": "news", "name": "Other"})
    assert r.status_code == 200
    assert r.context["topic_form"].errors == {"key": ["A topic with this key already exists."]}
    assert Topic.objects.count() == 1


def test_it_renames_a_topic(owner_client):
    t = Topic.objects.create(key="news", name="News")
    r = owner_client.post(f"/design/topics/{t.pk}/", {"name": "Newsletter", "key": "hack"})
    assert r.status_code == 302
    t.refresh_from_db()
    assert (t.key, t.name) == ("news", "Newsletter")
    assert OperationLog.objects.get(action="topic_rename").detail == {
        "from": "News",
        "to": "Newsletter",
    }


def test_it_refuses_to_delete_a_topic_someone_unsubscribed_from(owner_client):
    t = Topic.objects.create(key="news", name="News")
    Customer.objects.create(email="a@example.com", unsubscribed=["news"])
    r = owner_client.post(f"/design/topics/{t.pk}/delete/")
    assert r.status_code == 200
    assert "This topic cannot be deleted: 1 customer is unsubscribed from it." in r.content.decode()
    assert Topic.objects.filter(pk=t.pk).exists()
    assert not OperationLog.objects.filter(action="topic_delete").exists()


def test_it_deletes_an_unused_topic(owner_client):
    t = Topic.objects.create(key="news", name="News")
    r = owner_client.post(f"/design/topics/{t.pk}/delete/")
    assert r.status_code == 302
    assert not Topic.objects.exists()
    assert OperationLog.objects.get(action="topic_delete").target == "news"


def test_members_cannot_touch_topics(member_client):
    t = Topic.objects.create(key="news", name="News")
    assert member_client.post("/design/topics/new/", {"key": "x", "name": "X"}).status_code == 403
    assert member_client.post(f"/design/topics/{t.pk}/delete/").status_code == 403
    assert list(Topic.objects.values_list("key", flat=True)) == ["news"]
