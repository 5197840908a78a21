# The report archive moves from the tracking app to mailings, whose reports write and read it:
# the model changes app in the migration state only, and its table is renamed, rows kept.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('mailings', '0007_dkim_key'),
        ('tracking', '0002_hit_inbox'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ReportArchive',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('errors', models.JSONField(blank=True, default=dict)),
                        ('links', models.JSONField(blank=True, default=list)),
                        ('series', models.JSONField(blank=True, default=dict)),
                        ('purged_rows', models.BigIntegerField(default=0)),
                        ('purged_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('delivery', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='report_archive', to='mailings.delivery')),
                    ],
                    options={'db_table': 'tracking_reportarchive'},
                ),
            ],
        ),
        migrations.AlterModelTable(name='reportarchive', table=None),
    ]
