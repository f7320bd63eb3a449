# SPDX-License-Identifier: Apache-2.0
from django.http import HttpResponse, JsonResponse


def index(request):
    return HttpResponse("Hello from Django\n", content_type="text/plain")


def hello(request, name):
    return JsonResponse({"hello": name, "method": request.method, "host": request.get_host()})
