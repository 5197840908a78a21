"""Mails, deliveries, the per-recipient ledger, sending, reports, extraction and re-delivery.

The modules import downwards only (``tests/test_layers.py`` holds the rules)::

    models                      the tables
    rendering, messages         templates under a cost budget; MIME and addresses
    audiences, targeting        who a delivery goes to (filter kinds for customers' engine)
    extraction                  lists frozen from report counts
    ledger                      the store: delivery state changes that the worker and the
                                operator both make (start, pause for an error, complete),
                                counts, reaping; ``ledger.kick`` to get a worker
    relays                      relay actions and lookups (default relay, what a refusal means)
    sending                     the worker: lease, screen, render, SMTP, flush
    actions                     the operator's named writes (mails, delivery states)
    redelivery, reports, chart  re-delivery audiences and plans; results; the report's SVG
    serializers                 a mail and a delivery as JSON (the API and the CLI print these)
    tasks                       the background tasks; registers its kick with the ledger
    views, forms, commands      the screens and the CLI, on top of the actions

Tracking knows mailings and registers its inbox drain with ``reports.register_catch_up``;
mailings never imports tracking. The REST API (``okuru.api``) sits above all of it.
"""
