from django.shortcuts import render


def providers(request):
    return render(request, "console/providers.html")


def instances(request):
    return render(request, "console/instances.html")
