from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from okuru.accounts import jobs
from okuru.accounts.models import LoginSource


@task
def run_job(job_id: int) -> None:
    jobs.run(job_id)


@db_periodic_task(crontab(hour="4", minute="23"))
def prune_login_sources() -> None:
    LoginSource.prune()
