"""A mail's own HTML, served for the sandboxed ``<iframe>`` of the app's mail previews.

An ``srcdoc`` frame inherits the policy of the page around it, and the app's policy
(``SECURE_CSP``: no inline styles, images from this site only) would strip a mail of its
styles and pictures. So the HTML comes from a URL of its own, with a policy of its own:
the mail's styles and remote images, no scripts, no forms, no plug-ins, framed only by this
site, and sandboxed even when opened on its own.
"""

from __future__ import annotations

from django.http import HttpResponse

MAIL_FRAME_CSP = (
    "sandbox; default-src 'none'; img-src http: https: data:; "
    "style-src 'unsafe-inline' http: https:; font-src http: https: data:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)


def mail_frame(html: str) -> HttpResponse:
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = MAIL_FRAME_CSP
    # The app's pages refuse every frame (X_FRAME_OPTIONS = "DENY"); this one is meant for
    # the app's own preview pages. Browsers that know CSP go by frame-ancestors above.
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response
