import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sso_admin.settings")

app = Celery("sso_admin")
# Every Celery setting lives in Django settings under the CELERY_ prefix.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
