"""Fewer indexes on the customer table, for faster imports.

* ``updated_at`` loses its index: every imported row rewrites the column, so the index cost every
  row an index insert (and ruled out HOT updates on PostgreSQL), and nothing looks customers up
  by it.
* ``email`` and ``mobile_email`` keep a plain index, declared in ``Meta.indexes``. With
  ``db_index=True`` Django also made a ``varchar_pattern_ops`` index per column on PostgreSQL,
  for ``LIKE 'x%'``; the filters use ILIKE, which cannot use it.

The database side is written by hand: Django would carry out the field changes on SQLite by
rebuilding the whole table, which takes long on a large table and drops the expression indexes
that make user fields unique (``sql.create_unique_index``), which Django does not know about.
"""

import django.utils.timezone
from django.db import migrations, models

OLD_EMAIL = "customers_customer_email_300e404b"
OLD_MOBILE = "customers_customer_mobile_email_3b50c8f3"
OLD_UPDATED = "customers_customer_updated_at_3ada91f5"


def forwards(apps, schema_editor):
    run = schema_editor.execute
    run(f'DROP INDEX IF EXISTS "{OLD_UPDATED}"')
    if schema_editor.connection.vendor == "postgresql":
        run(f'DROP INDEX IF EXISTS "{OLD_EMAIL}_like"')
        run(f'DROP INDEX IF EXISTS "{OLD_MOBILE}_like"')
        # Same columns, same kind of index: a rename keeps it without building it again.
        run(f'ALTER INDEX IF EXISTS "{OLD_EMAIL}" RENAME TO "customer_email_idx"')
        run(f'ALTER INDEX IF EXISTS "{OLD_MOBILE}" RENAME TO "customer_mobile_email_idx"')
    else:
        run(f'DROP INDEX IF EXISTS "{OLD_EMAIL}"')
        run(f'DROP INDEX IF EXISTS "{OLD_MOBILE}"')
    run('CREATE INDEX IF NOT EXISTS "customer_email_idx" ON "customers_customer" ("email")')
    run(
        'CREATE INDEX IF NOT EXISTS "customer_mobile_email_idx" ON "customers_customer"'
        ' ("mobile_email")'
    )


def backwards(apps, schema_editor):
    run = schema_editor.execute
    run('DROP INDEX IF EXISTS "customer_email_idx"')
    run('DROP INDEX IF EXISTS "customer_mobile_email_idx"')
    run(f'CREATE INDEX "{OLD_EMAIL}" ON "customers_customer" ("email")')
    run(f'CREATE INDEX "{OLD_MOBILE}" ON "customers_customer" ("mobile_email")')
    run(f'CREATE INDEX "{OLD_UPDATED}" ON "customers_customer" ("updated_at")')
    if schema_editor.connection.vendor == "postgresql":
        run(
            f'CREATE INDEX "{OLD_EMAIL}_like" ON "customers_customer" ("email" varchar_pattern_ops)'
        )
        run(
            f'CREATE INDEX "{OLD_MOBILE}_like" ON "customers_customer"'
            ' ("mobile_email" varchar_pattern_ops)'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="customer",
                    name="email",
                    field=models.CharField(
                        blank=True, default="", max_length=254, verbose_name="PC e-mail"
                    ),
                ),
                migrations.AlterField(
                    model_name="customer",
                    name="mobile_email",
                    field=models.CharField(
                        blank=True, default="", max_length=254, verbose_name="mobile e-mail"
                    ),
                ),
                migrations.AlterField(
                    model_name="customer",
                    name="updated_at",
                    field=models.DateTimeField(
                        default=django.utils.timezone.now,
                        verbose_name="updated",
                    ),
                ),
                migrations.AddIndex(
                    model_name="customer",
                    index=models.Index(fields=["email"], name="customer_email_idx"),
                ),
                migrations.AddIndex(
                    model_name="customer",
                    index=models.Index(fields=["mobile_email"], name="customer_mobile_email_idx"),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
