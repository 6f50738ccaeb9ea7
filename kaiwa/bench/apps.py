from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "kaiwa.bench"
    label = "bench"
    verbose_name = "Benchmark"
