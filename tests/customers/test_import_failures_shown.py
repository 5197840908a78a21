"""A failed import or dry run shows why on its job page: every header problem listed, and a
file that is not CSV text told so."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from okuru.accounts.models import Job
from okuru.customers import design
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "files"


def start(client, content: bytes, capture, name: str = "people.csv", **data) -> Job:
    upload = SimpleUploadedFile(name, content, content_type="text/csv")
    form = {"file": upload, "mode": "upsert", "key": "customer_id", "encoding": "auto", **data}
    with capture(execute=True):
        client.post("/import/", form)
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED
    return job


@pytest.mark.parametrize("dry_run", ["on", ""])
def test_a_failed_import_lists_every_header_problem(
    member_client, django_capture_on_commit_callbacks, dry_run
):
    design.add_field("name", "Name", "text")
    job = start(
        member_client,
        b"Nickname,Name,Name,Shoe size\nx,y,z,1\n",
        django_capture_on_commit_callbacks,
        dry_run=dry_run,
    )
    assert [tuple(e) for e in job.result["errors"]] == [
        (1, "Customer ID", "The key column is missing: the file needs a column Customer ID."),
        (1, "Nickname", "Unknown column: no field has this key or label."),
        (1, "Name", "The column appears twice (column 2 is the same field)."),
        (1, "Shoe size", "Unknown column: no field has this key or label."),
    ]
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    stopped = "The dry run stopped" if dry_run else "The import stopped"
    assert f"{stopped}: the file cannot be imported as it is. Nothing was changed." in page
    assert "This is what the import would do." not in page
    assert "Problems in the file" in page
    assert page.count("Unknown column: no field has this key or label.") >= 2
    assert "<td>Shoe size</td>" in page


def test_a_png_uploaded_as_csv_is_told_it_is_not_a_csv_file(
    member_client, django_capture_on_commit_callbacks
):
    job = start(member_client, PNG, django_capture_on_commit_callbacks, name="photo.csv")
    assert job.error.startswith("The file is not a CSV text file: it looks like a PNG image.")
    page = member_client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert "it looks like a PNG image" in page
    assert "encoding" not in job.error.lower().split("save the customer list")[0]


def test_a_png_is_named_in_japanese_too(member, django_capture_on_commit_callbacks):
    member.language = "ja"
    member.save(update_fields=["language"])
    client = client_for(member, "ja")
    job = start(client, PNG, django_capture_on_commit_callbacks)
    assert job.error.startswith(
        "このファイルはCSV(テキスト)ファイルではありません。PNG画像のようです。"
    )
    page = client.get(f"/accounts/jobs/{job.pk}/").content.decode()
    assert "PNG画像のようです" in page
