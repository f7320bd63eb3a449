# SPDX-License-Identifier: Apache-2.0
"""The smallest Django project that serves a view: no database, no apps."""

SECRET_KEY = "forkpool-wsgi-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {}
USE_TZ = True
