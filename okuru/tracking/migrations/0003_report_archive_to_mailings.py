# The report archive now belongs to mailings (mailings 0007 takes over and renames its table):
# here it only leaves the tracking app's migration state.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tracking', '0002_hit_inbox'),
        ('mailings', '0008_report_archive_from_tracking'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ReportArchive')],
        ),
    ]
