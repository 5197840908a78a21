"""Okuru settings: one file, driven by environment variables.

Embedded default: SQLite (WAL) in ``var/``, SqliteHuey for background work, a local capture
SMTP server. ``DATABASE_URL`` switches to PostgreSQL, ``REDIS_URL`` to RedisHuey.
"""

import os
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default)
    if value not in ("True", "False"):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value == "True"


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {value!r}") from None


DATA_DIR = Path(os.getenv("OKURU_DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.getenv("SECRET_KEY", "")
if not SECRET_KEY:
    # A fresh clone runs without configuration: keep a generated key beside the data.
    _key_file = DATA_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

DEBUG = envbool("DEBUG", "False")
ALLOWED_HOSTS = os.getenv("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
SITE_ROOT = os.getenv("SITE_ROOT", "http://localhost:8000")
CSRF_TRUSTED_ORIGINS = [SITE_ROOT]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "huey.contrib.djhuey",
    # Django Ninja as an app so that /api/docs uses its bundled Swagger UI, not a CDN.
    "ninja",
    "okuru.accounts",
    "okuru.customers",
    "okuru.capture",
    "okuru.mailings",
    "okuru.tracking",
    "okuru.bounces",
]

MIDDLEWARE = [
    # First: answers the open pixel and click redirects without the rest (see its docstring).
    "okuru.tracking.middleware.tracking_shortcut",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "okuru.urls"
WSGI_APPLICATION = "okuru.wsgi.application"
AUTH_USER_MODEL = "accounts.Operator"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "customers:list"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "okuru" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "okuru.accounts.context.nav",
            ]
        },
    }
]

_sqlite_path = DATA_DIR / "okuru.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{_sqlite_path}"),
        # Persistent connections: reopening per request costs ~3 ms of CPU on SQLite (the last
        # close checkpoints the WAL), which tracking endpoints cannot afford.
        conn_max_age=envint("CONN_MAX_AGE", "600"),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes; IMMEDIATE avoids the
        # "database is locked" upgrade deadlock between two writers.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
            " PRAGMA temp_store=MEMORY; PRAGMA cache_size=-65536;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["TEST"] = (
        {"NAME": os.getenv("OKURU_TEST_SQLITE", "")} if os.getenv("OKURU_TEST_SQLITE") else {}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": envint("PASSWORD_MIN_LENGTH", "10")},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "okuru.accounts.passwords.WeakPatternValidator"},
]
if os.getenv("PYTEST_VERSION"):
    # Tests create and log in operators by the hundred; PBKDF2 costs ~0.4 s a hash here.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_MAX_FAILURES = envint("LOGIN_MAX_FAILURES", "5")
LOGIN_LOCKOUT_MINUTES = envint("LOGIN_LOCKOUT_MINUTES", "15")
# Per source address (IPv4 address or IPv6 /64), across user names: one address trying many
# accounts is stopped even though no single account reaches its own limit.
LOGIN_IP_MAX_FAILURES = envint("LOGIN_IP_MAX_FAILURES", "20")
LOGIN_IP_WINDOW_MINUTES = envint("LOGIN_IP_WINDOW_MINUTES", "15")
LOGIN_IP_LOCKOUT_MINUTES = envint("LOGIN_IP_LOCKOUT_MINUTES", "15")

LANGUAGE_CODE = os.getenv("LANGUAGE_CODE", "ja")
LANGUAGES = [("ja", _("Japanese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "okuru" / "locale"]
TIME_ZONE = os.getenv("TIME_ZONE", "Asia/Tokyo")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "okuru" / "static"]
MEDIA_ROOT = DATA_DIR / "files"

# Uploaded import files go to disk, never to memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = SITE_ROOT.startswith("https://")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
# Every page's scripts and styles are files of this site: no inline script, style element or
# style attribute, no plug-ins, no framing. A page that must do otherwise sets its own policy
# (a mail's HTML in a preview frame: okuru.lib.mailframe; "view in browser": tracking.views).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Background work: Django's Tasks API on Huey.
REDIS_URL = os.getenv("REDIS_URL", "")
# Under pytest (which sets PYTEST_VERSION) tasks run inline unless told otherwise.
HUEY_IMMEDIATE = envbool("HUEY_IMMEDIATE", "True" if os.getenv("PYTEST_VERSION") else "False")
if REDIS_URL:
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": "okuru",
        "url": REDIS_URL,
        "immediate": HUEY_IMMEDIATE,
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "okuru",
        "filename": str(DATA_DIR / "huey.sqlite3"),
        "immediate": HUEY_IMMEDIATE,
    }
HUEY["consumer"] = {"workers": envint("WORKERS", "2"), "worker_type": "thread"}
TASKS = {
    "default": {
        "BACKEND": "huey.contrib.djhuey.tasks_backend.HueyBackend",
        "ENQUEUE_ON_COMMIT": not HUEY_IMMEDIATE,
    }
}

# Outgoing mail to operators (job notices). Deliveries have their own relay settings.
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": os.getenv("EMAIL_HOST", "127.0.0.1"),
            "port": envint("EMAIL_PORT", "2525"),
            "username": os.getenv("EMAIL_HOST_USER", "") or None,
            "password": os.getenv("EMAIL_HOST_PASSWORD", "") or None,
            "use_tls": envbool("EMAIL_USE_TLS", "False"),
            "timeout": 10,
        },
    }
}
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "okuru@localhost")
# The sender of notices about an operator's own work (an extraction's "ready" e-mail).
OKURU_SUPPORT_FROM = os.getenv("OKURU_SUPPORT_FROM", DEFAULT_FROM_EMAIL)
# Job-completion e-mails to operators: on by default in the embedded set-up.
NOTIFY_BY_EMAIL = envbool("NOTIFY_BY_EMAIL", "True")
CAPTURE_SMTP_PORT = envint("CAPTURE_SMTP_PORT", "2525")
# The bounce SMTP receiver (okuru bounce-smtp; okuru run starts it unless the port is 0). On a
# server that receives bounces from the internet: BOUNCE_SMTP_HOST=0.0.0.0, port 25 (or a
# redirect to it), and the return-path domain's MX pointing here.
BOUNCE_SMTP_HOST = os.getenv("BOUNCE_SMTP_HOST", "127.0.0.1")
BOUNCE_SMTP_PORT = envint("BOUNCE_SMTP_PORT", "2526")
# The addresses the receiver takes mail for. "*" (the default): every address, so nothing sent
# to the bounce domain is refused, and what cannot be read waits for a human. A list of local
# parts (say "postmaster,abuse,fbl"): those and the per-recipient return paths (bounce+...)
# only, any other address refused at RCPT TO, so spam to made-up addresses of an
# internet-facing receiver never fills the queue kept for a human.
BOUNCE_SMTP_ACCEPT = [
    p.strip().lower() for p in os.getenv("BOUNCE_SMTP_ACCEPT", "*").split(",") if p.strip()
]
# Amazon SES event notifications by Amazon SNS (POST /bounces/sns/): the topic ARNs whose
# signed notifications are accepted, comma-separated. Empty: the endpoint does not exist (404).
OKURU_SNS_TOPIC_ARNS = [
    arn.strip() for arn in os.getenv("OKURU_SNS_TOPIC_ARNS", "").split(",") if arn.strip()
]
# Per-recipient delivery detail (ledger rows, events) is purged after this many days (3 months
# + 1 month); the summary counts stay on each delivery.
MAILINGS_RETENTION_DAYS = envint("MAILINGS_RETENTION_DAYS", "122")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(asctime)s] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "WARNING")},
    "loggers": {
        # run_huey adds a handler of its own to a "huey" logger that has none, and the record
        # then reached the root's handler too: every worker line was printed twice.
        "huey": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
