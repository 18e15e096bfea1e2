"""The console's WSGI application with one more path, /bench/bare: a bare WSGI answer (304, no
Django), served by the same gunicorn workers. P1 reports the pull API's rate against it too,
which shows how far the pull is from what this machine and gunicorn can do at all."""

from sso_admin.wsgi import application as console


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/bench/bare":
        start_response("304 Not Modified", [("ETag", '"bench"')])
        return []
    return console(environ, start_response)
