"""Settings for the Diffgram SSO admin console.

Everything a deployment changes comes from the environment (12-factor, django-environ), optionally
through a `.env` file next to manage.py. The defaults are for local development; with DEBUG=false
the variables that protect production data are required and start-up stops without them.
"""

from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django_guid.integrations import CeleryIntegration

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)

# Local development only: clearly insecure placeholders that `check --deploy` flags and that
# production (DEBUG=false) refuses to start with.
DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"
DEVELOPMENT_FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQta2V5LW5vdC1mb3ItcHJvZCE="  # a Fernet key


def _required_in_production(name, dev_default):
    value = env(name, default=None)
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} must be set when DEBUG=false (see docs/CONFIGURATION.md). "
        f"Refusing to start with a development default."
    )


SECRET_KEY = _required_in_production("SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation without downtime).
FIELD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_in_production(
        "FIELD_ENCRYPTION_KEYS", DEVELOPMENT_FIELD_ENCRYPTION_KEY
    ).split(",")
    if key.strip()
]
ALLOWED_HOSTS = [host for host in env.list("ALLOWED_HOSTS", default=[]) if host]
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS must be set when DEBUG=false, e.g. ALLOWED_HOSTS=sso.example.com"
        )
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
CSRF_TRUSTED_ORIGINS = [url for url in env.list("CSRF_TRUSTED_ORIGINS", default=[]) if url]

# Outbound requests to loopback/private addresses (and http:// loopback issuers) are refused
# unless this is on: it exists for development and tests against a local OpenID Provider.
SSO_ADMIN_ALLOW_PRIVATE_URLS = env.bool("SSO_ADMIN_ALLOW_PRIVATE_URLS", default=False)

# Cognito's discovery document is read from AWS_ENDPOINT_URL_COGNITO_IDP or AWS_ENDPOINT_URL when
# set (the variables boto3 reads too), e.g. a moto server in tests; empty means real AWS.
AWS_ENDPOINT_URL = env("AWS_ENDPOINT_URL", default="")
AWS_ENDPOINT_URL_COGNITO_IDP = env("AWS_ENDPOINT_URL_COGNITO_IDP", default="")

# The Diffgram release the instances run: its known defects (console/diffgram_releases.py) are
# shown with every Cognito and Keycloak provider.
DIFFGRAM_VERSION = env("DIFFGRAM_VERSION", default="56f04d8")
# Set by `make demo` (demo/__main__.py): every page says that nothing behind it is real.
CONSOLE_DEMO = env.bool("CONSOLE_DEMO", default=False)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "django_guid",
    "console",
]

MIDDLEWARE = [
    # First: every later middleware's log lines carry the request id.
    "console.log_context.RequestContextMiddleware",
    "django_guid.middleware.guid_middleware",
    # Every error under /api/ in the API's one JSON shape, whoever answered it.
    "console.api.errors.ApiErrorsMiddleware",
    "console.metrics.RequestTimer",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "console.session_recheck.SessionRecheck",
    "console.roles.RoleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]
# The fleet's polls and reports (sso_admin/wsgi.py): token-authenticated, never HTML, so none of
# sessions, sign-in, CSRF, roles, messages or the HTML headers; the rest as above.
MACHINE_API_MIDDLEWARE = [
    "console.log_context.RequestContextMiddleware",
    "django_guid.middleware.guid_middleware",
    "console.api.errors.ApiErrorsMiddleware",
    "console.metrics.RequestTimer",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "sso_admin.urls"
WSGI_APPLICATION = "sso_admin.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.roles.role_context",
                "console.context_processors.demo",
            ],
        },
    },
]

# SQLite under var/ by default, so `make run` needs no database server. WAL and IMMEDIATE
# transactions let the web process and the Celery worker write the same file without
# "database is locked" errors.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'console.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
    # A file, not :memory:, so that a real Celery worker process in the tests sees the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-console.sqlite3")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep connections between requests (a new PostgreSQL connection per request costs more than
# a whole pull), checked before reuse.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Rate-limit counters and cached JWKS. Local memory is per process: use Redis in production.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
# The pull API keeps each instance's state in the web processes' memory, invalidated over Redis
# pub/sub (console/pull_state.py): on whenever the cache is Redis, as production requires.
PULL_STATE_REDIS_URL = (
    CACHES["default"]["LOCATION"] if CACHES["default"]["BACKEND"].endswith(".RedisCache") else ""
)
# Failed sign-ins only (console/ratelimits.py: login_verdict): per client address, per username
# from one address (both refuse), and per username from every address (slows down instead).
RATE_LIMIT_LOGIN = env("RATE_LIMIT_LOGIN", default="10/5m")
RATE_LIMIT_LOGIN_PER_USERNAME = env("RATE_LIMIT_LOGIN_PER_USERNAME", default="5/15m")
LOGIN_SLOWDOWN_PER_USERNAME = env("LOGIN_SLOWDOWN_PER_USERNAME", default="100/h")
LOGIN_SLOWDOWN_SECONDS = env.float("LOGIN_SLOWDOWN_SECONDS", default=3.0)
RATE_LIMIT_PULL_PER_INSTANCE = env("RATE_LIMIT_PULL_PER_INSTANCE", default="120/m")
RATE_LIMIT_PULL_PER_IP = env("RATE_LIMIT_PULL_PER_IP", default="3000/m")
RATELIMIT_IP_META_KEY = "console.audit.client_ip"  # honours BEHIND_REVERSE_PROXY

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- Console sign-in ---------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # local break-glass accounts
    "console.auth.ConsoleOIDCBackend",  # single sign-on (a provider marked "console login")
]
# Bootstrap single sign-on before any provider is marked "console login" in the console.
CONSOLE_OIDC_ISSUER = env("CONSOLE_OIDC_ISSUER", default="")
CONSOLE_OIDC_CLIENT_ID = env("CONSOLE_OIDC_CLIENT_ID", default="")
CONSOLE_OIDC_CLIENT_SECRET = env("CONSOLE_OIDC_CLIENT_SECRET", default="")
CONSOLE_OIDC_SCOPES = env("CONSOLE_OIDC_SCOPES", default="openid email profile")
CONSOLE_OIDC_GROUPS_CLAIM = env("CONSOLE_OIDC_GROUPS_CLAIM", default="groups")
CONSOLE_ADMIN_GROUPS = [g for g in env.list("CONSOLE_ADMIN_GROUPS", default=[]) if g]
CONSOLE_AUDITOR_GROUPS = [g for g in env.list("CONSOLE_AUDITOR_GROUPS", default=[]) if g]
CONSOLE_LOCAL_LOGIN = env.bool("CONSOLE_LOCAL_LOGIN", default=True)
# A personal API token of an SSO user acts only this long after the IdP last confirmed the
# account (a sign-in or a silent re-check), so it cannot outlive the account at the IdP.
API_TOKEN_SSO_RECHECK_HOURS = env.int("API_TOKEN_SSO_RECHECK_HOURS", default=24)
# mozilla-django-oidc: PKCE, nonce and RS256. Its HTTP settings are unused: the console's backend
# talks to the provider through console/outbound.py (timeouts, size cap, SSRF guard).
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_EXEMPT_URLS = ["healthz", "logout"]
LOGIN_REDIRECT_URL_FAILURE = "login"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "providers"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The console stores no uploads; set anyway, because with none Django's test server serves
# every file under the working directory at "/" (its media handler), hiding real URLs.
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Security headers -------------------------------------------------------------------------
# Nothing may load from another host: every script and stylesheet is served by the console.
CSRF_FAILURE_VIEW = "console.views.site.csrf_failure"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
# Behind exactly one reverse proxy that terminates TLS, overwrites X-Forwarded-Proto and appends
# the client address to X-Forwarded-For. Never on when clients can reach the console directly.
BEHIND_REVERSE_PROXY = env.bool("BEHIND_REVERSE_PROXY", default=False)
if BEHIND_REVERSE_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Celery ------------------------------------------------------------------------------------
# Default: kombu's filesystem transport under var/, a real broker that needs no server, so that
# `make run` starts a real worker process. Production: redis://.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _control_dir = VAR_DIR / "celery" / "control"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # An unacknowledged task (its worker died) is delivered again after this many seconds.
    # Keep it above the longest retry countdown (300 s), or retries would run twice.
    _visibility = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        # Look for such tasks every minute at most (kombu's default is every ~100 s).
        "unacked_restore_interval": max(1, min(60, _visibility // 2)),
        "unacked_restore_throttle": 1,
    }
    # A worker takes no message it cannot start at once: a killed worker leaves none behind
    # unacknowledged, to come back when the visibility timeout ends (Redis brokers only).
    CELERY_WORKER_DISABLE_PREFETCH = True
# Several consoles (or a test run) can share one broker with a queue each.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="celery")
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
# Every task is idempotent (it takes primary keys and re-reads state), so a message is
# acknowledged only after the task ran and is redelivered if the worker dies mid-task.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

PROVIDER_REVALIDATE_MINUTES = env.int("PROVIDER_REVALIDATE_MINUTES", default=60)
# Synthetic sign-ins of every instance the console signs in to (0: only after an apply and on
# "Verify now").
SIGNIN_CHECK_MINUTES = env.int("SIGNIN_CHECK_MINUTES", default=60)
# Audit checkpoints: the chain's end, signed with AUDIT_SIGNING_KEY (never stored in the
# database), appended to a file and/or an S3 prefix the database cannot reach.
AUDIT_SIGNING_KEY = env("AUDIT_SIGNING_KEY", default="")
AUDIT_CHECKPOINT_FILE = env("AUDIT_CHECKPOINT_FILE", default="")
AUDIT_CHECKPOINT_S3 = env("AUDIT_CHECKPOINT_S3", default="")
AUDIT_CHECKPOINT_MINUTES = env.int("AUDIT_CHECKPOINT_MINUTES", default=15)

CELERY_BEAT_SCHEDULE = {
    # Every console.delivery.SWEEP_EVERY seconds: retries and lost batches are the sweeper's.
    "sweep-push-outbox": {"task": "console.tasks.sweep_outbox", "schedule": 20.0},
    "halt-overdue-rollouts": {"task": "console.tasks.halt_overdue_rollouts", "schedule": 60.0},
    "alert-on-fleet": {"task": "console.tasks.check_fleet", "schedule": 300.0},
    "alert-on-audit-chain": {"task": "console.tasks.check_audit_chain", "schedule": 86400.0},
    "revalidate-providers": {
        "task": "console.tasks.revalidate_providers",
        "schedule": PROVIDER_REVALIDATE_MINUTES * 60.0,
    },
}
if SIGNIN_CHECK_MINUTES > 0:
    CELERY_BEAT_SCHEDULE["synthetic-signins"] = {
        "task": "console.tasks.run_signin_checks",
        "schedule": SIGNIN_CHECK_MINUTES * 60.0,
    }
if AUDIT_SIGNING_KEY and (AUDIT_CHECKPOINT_FILE or AUDIT_CHECKPOINT_S3):
    CELERY_BEAT_SCHEDULE["audit-checkpoint"] = {
        "task": "console.tasks.audit_checkpoint",
        "schedule": AUDIT_CHECKPOINT_MINUTES * 60.0,
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Rollout -----------------------------------------------------------------------------------
PUSH_MAX_ATTEMPTS = env.int("PUSH_MAX_ATTEMPTS", default=90)  # about a day (delivery.retry_delay)
PUSH_RETRY_BACKOFF_SECONDS = env.int("PUSH_RETRY_BACKOFF_SECONDS", default=2)
PUSH_SWEEP_AFTER_SECONDS = env.int("PUSH_SWEEP_AFTER_SECONDS", default=30)
INSTANCE_STALE_AFTER_MINUTES = env.int("INSTANCE_STALE_AFTER_MINUTES", default=60)
# A rollout that halts by itself halts when its first group has not verified it by then.
ROLLOUT_VERIFY_TIMEOUT_MINUTES = env.int("ROLLOUT_VERIFY_TIMEOUT_MINUTES", default=15)

# --- Alerts (console/alerts.py) -----------------------------------------------------------------
# Email goes out through Django's mail settings from EMAIL_URL: smtp://user:password@host:587
# (add ?ssl=True or use smtp+tls://); the default prints mails on the worker's console.
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL")) or _email.get("OPTIONS", {}).get("SSL") == "True"
ALERTS_FROM_EMAIL = env("ALERTS_FROM_EMAIL", default="diffgram-sso@localhost")
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=6)
ALERT_RETRY_SECONDS = env.int("ALERT_RETRY_SECONDS", default=30)  # doubles with each try

# GET /metrics answers only a scraper sending "Authorization: Bearer <METRICS_TOKEN>"; unset,
# it is refused. A short token can be guessed: the console does not start with one.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_TOKEN_MIN_LENGTH = 32
if METRICS_TOKEN and len(METRICS_TOKEN) < METRICS_TOKEN_MIN_LENGTH:
    raise ImproperlyConfigured(
        f"METRICS_TOKEN must be at least {METRICS_TOKEN_MIN_LENGTH} characters (it has "
        f"{len(METRICS_TOKEN)}): generate one, e.g. python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'."
    )

# Every request carries an id: the proxy's X-Request-ID when it is a UUID, else a new one,
# returned in the answer's X-Request-ID, carried into the Celery tasks it queues, and written
# into its log lines and audit events (console/log_context.py).
DJANGO_GUID = {
    "GUID_HEADER_NAME": "X-Request-ID",
    "VALIDATE_GUID": True,  # anything else from outside could forge or garble log lines
    "INTEGRATIONS": [CeleryIntegration()],
}
LOG_FORMAT = env("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_context": {"()": "console.log_context.RequestContext"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        # One JSON object per line (python-json-logger); ISO 8601 time in UTC.
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s %(request_id)s %(user)s %(instance_id)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django gives its own loggers a handler in DEBUG; they reach the root handler anyway,
        # so without this every line of theirs (runserver's, for one) would be printed twice.
        "django": {"handlers": []},
        # One line per request about the id it found or made is noise.
        "django_guid": {"level": "WARNING"},
        # botocore logs every request's body at DEBUG, secrets included (a Cognito test
        # account's password, a federated provider's client secret): never below WARNING,
        # whatever LOG_LEVEL says. Its INFO lines ("Found credentials...") are noise too.
        "botocore": {"level": "WARNING"},
        "boto3": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
