from django.tasks import task

from okuru.accounts import jobs


@task
def run_job(job_id: int) -> None:
    jobs.run(job_id)
