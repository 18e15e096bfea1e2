from django.shortcuts import render


def instances(request):
    return render(request, "console/instances.html")
